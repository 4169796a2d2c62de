"""Which instance ends idle conversations.

Every instance runs the idle sweeper, but only one should end a given
conversation: the others' changes to it would be refused (harmless, but a
batch of wasted work and a warning each round). On PostgreSQL the sweeper
is whoever holds a session advisory lock, kept on a connection of its own:
the lock goes with that connection, so when the instance stops or loses
its database another one takes over at its next round. SQLite has one
process, which always sweeps.
"""

from __future__ import annotations

from typing import Any

from router.errors import Unavailable

from .engine import Engines, HeldConnection

# The advisory lock's key: "tierdesk" in ASCII, as a bigint.
SWEEP_LOCK = int.from_bytes(b"tierdesk", "big")


class SweepLease:
    def __init__(self, engines: Engines) -> None:
        self._held = HeldConnection(engines.write) if engines.dialect == "postgresql" else None
        self._locked_on: Any = None  # the connection holding the lock

    async def held(self) -> bool:
        if self._held is None:
            return True
        try:
            driver = await self._held.driver()
            if driver is self._locked_on:
                return True
            if await driver.fetchval("SELECT pg_try_advisory_lock($1)", SWEEP_LOCK):
                self._locked_on = driver
                return True
            return False
        except Unavailable:
            return False
        except Exception:  # noqa: BLE001 - whatever the driver raised, try again next round
            await self._held.drop()
            return False

    async def close(self) -> None:
        if self._held is not None:
            await self._held.drop()  # the session ends, and the lock with it

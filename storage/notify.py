"""Cross-instance events over PostgreSQL LISTEN/NOTIFY.

Several tierdesk instances behind a load balancer share one PostgreSQL; an
agent's WebSocket is on one of them while the change that concerns the
agent may happen on another. Each instance listens on one channel and
relays what it publishes to the others; its own messages come back and are
ignored by origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
import structlog
from sqlalchemy.engine import make_url

log = structlog.get_logger(__name__)

CHANNEL = "tierdesk_events"
# NOTIFY payloads must stay under 8000 bytes; a message text is at most a few
# KiB (TIERDESK_MAX_TEXT_BYTES), so pushes fit with room to spare.
MAX_PAYLOAD = 7900


def asyncpg_dsn(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class PgRelay:
    def __init__(self, database_url: str, on_message: Callable[[dict[str, Any]], None]) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._on_message = on_message
        self.origin = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # One connection runs one statement at a time: publishes take turns.
        self._sending = asyncio.Lock()
        self.relayed = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="pg-relay")

    async def _keep_listening(self) -> None:
        # Reconnect after a database restart; events sent meanwhile are lost,
        # which the REST API (the source of truth for agents) makes up for.
        while not self._closing:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                await conn.add_listener(CHANNEL, self._received)
                self._conn = conn
                closed = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c: closed.done() or closed.set_result(None))
                await closed
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying while the service runs
                log.warning("pg_relay_disconnected", error=repr(exc))
            finally:
                self._conn = None
            await asyncio.sleep(1.0)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if message.get("origin") != self.origin:
            self._on_message(message)

    async def publish(self, message: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        body = orjson.dumps({**message, "origin": self.origin}).decode()
        if len(body.encode()) > MAX_PAYLOAD:
            log.warning("pg_relay_payload_too_large", size=len(body))
            return
        try:
            async with self._sending:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, body)
            self.relayed += 1
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("pg_relay_publish_failed", error=repr(exc))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

"""Presence and the timekeeper: the edge of router/attendance.py.

Presence comes from the agents' live connections. An instance holding one
of an agent's connections keeps the agent's presence alive in the database
(``agents.present_until``, renewed every third of the grace period); when
the last one closes, presence runs out a grace period later unless a
connection (here or on another instance) renews it. The timekeeper, run by
one instance at a time (the one holding the sweep lease, storage/lease.py),
marks agents whose presence ran out and offers lapsed reservations to the
next agent: so each timeout is acted on once, whatever the number of
instances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from . import keys, monitor

log = structlog.get_logger(__name__)


class Presence:
    def __init__(self, app: web.Application) -> None:
        self.app = app

    @property
    def grace(self) -> float:
        return self.app[keys.DESK].config.attendance.presence_grace_seconds

    def _until(self) -> float:
        # Renewed every third of the grace period, so a late renewal or two
        # does not count as gone; and since a renewal never runs past the
        # last close plus the grace period, presence runs out exactly then.
        return self.app[keys.CLOCK].now() + self.grace

    async def connected(self, agent_id: str) -> None:
        await self.app[keys.STORE].keep_present([agent_id], self._until())
        await self.app[keys.DESK].presence_back(agent_id)

    async def disconnected(self, agent_id: str) -> None:
        if agent_id not in self.app[keys.SOCKETS].agents():
            # The grace period counts from the last close.
            await self.app[keys.STORE].keep_present([agent_id], self._until())

    async def renew(self) -> None:
        await self.app[keys.STORE].keep_present(self.app[keys.SOCKETS].agents(), self._until())


async def tick(app: web.Application) -> None:
    """One round of the timekeeper (tests call it directly on the fake clock)."""
    store, desk = app[keys.STORE], app[keys.DESK]
    if not await store.leads_idle_sweep():
        return
    for agent_id in await store.presence_lapsed(app[keys.CLOCK].now()):
        requeued = await desk.presence_lost(agent_id)
        log.info("agent_presence_lost", agent=agent_id, requeued=requeued)
    moved = await desk.expire_reservations()
    if moved:
        log.info("reservations_lapsed", moved=moved)
    widened = await desk.widen()
    if widened:
        log.info("handoffs_widened", assigned=widened)
    await monitor.check(app, app[keys.ALERT_RULES])


async def run(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: presence renewals and the timekeeper's rounds."""
    s = app[keys.SETTINGS]
    presence = app[keys.PRESENCE]

    async def renewing() -> None:
        while True:
            await asyncio.sleep(max(1.0, presence.grace / 3))
            try:
                await presence.renew()
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("presence_renewal_failed", error=repr(exc))

    async def keeping_time() -> None:
        while True:
            await asyncio.sleep(s.timekeeper_interval_seconds)
            try:
                await tick(app)
            except Exception as exc:  # noqa: BLE001 - try again next round
                log.warning("timekeeper_failed", error=repr(exc))

    tasks = [asyncio.create_task(renewing(), name="presence"), asyncio.create_task(keeping_time(), name="timekeeper")]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

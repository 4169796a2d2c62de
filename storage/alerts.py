"""The SLA monitor's alerts (router/alerts.py), kept so that an alert is
raised once and cleared once across restarts, written in one transaction
with the alert webhook deliveries they cause."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select, update

from router.alerts import Alert
from router.changes import OutboxItem

from . import tables as t
from .engine import Engines

CLEARED_PER_STATEMENT = 1000


class AlertStore:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def open_alerts(self) -> dict[str, Alert]:
        a = t.alerts
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(a).where(a.c.cleared_at.is_(None)).order_by(a.c.raised_at))).mappings()
            return {r["key"]: Alert(r["key"], r["kind"], r["raised_at"], r["subject"], r["data"]) for r in rows}

    async def record(self, raised: Sequence[Alert], cleared: Sequence[str], now: float,
                     deliveries: Sequence[OutboxItem] = ()) -> None:
        a = t.alerts
        async with self.engines.writing() as conn:
            if raised:
                await conn.execute(insert(a), [
                    {"key": x.key, "kind": x.kind, "subject": dict(x.subject), "data": dict(x.data),
                     "raised_at": x.raised_at} for x in raised])
            # In slices: a round may clear tens of thousands at once (alerts
            # over a lowered cap), more than one statement takes parameters.
            cleared = list(cleared)
            for i in range(0, len(cleared), CLEARED_PER_STATEMENT):
                await conn.execute(update(a).where(a.c.key.in_(cleared[i:i + CLEARED_PER_STATEMENT]),
                                                   a.c.cleared_at.is_(None)).values(cleared_at=now))
            if deliveries:
                await conn.execute(insert(t.outbox), [
                    {"idempotency_key": o.idempotency_key, "channel_id": o.channel_id,
                     "conversation_id": o.conversation_id, "kind": o.kind, "payload": o.payload, "created_at": o.at,
                     "status": "pending", "attempts": 0, "next_attempt_at": o.at} for o in deliveries])

"""The transactional outbox: deliveries written with the change that caused
them, handed to the delivery worker in order per conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import aliased

from . import tables as t
from .engine import Engines


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    idempotency_key: str
    channel_id: str
    conversation_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int
    status: str
    last_error: str | None
    created_at: float


class Outbox:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def due(self, now: float, limit: int = 100) -> list[Delivery]:
        """The oldest pending delivery of each conversation, if it is due.

        A later message never overtakes an earlier one of the same
        conversation that is still being retried."""
        o = t.outbox
        earlier = aliased(t.outbox)
        q = (
            select(o)
            .where(
                o.c.status == "pending",
                o.c.next_attempt_at <= now,
                ~exists().where(
                    and_(earlier.c.conversation_id == o.c.conversation_id, earlier.c.status == "pending",
                         earlier.c.id < o.c.id)
                ),
            )
            .order_by(o.c.id)
            .limit(limit)
        )
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [_delivery(r) for r in rows]

    async def delivered(self, delivery_id: int, now: float) -> None:
        async with self.engines.writing() as conn:
            await conn.execute(update(t.outbox).where(t.outbox.c.id == delivery_id).values(
                status="delivered", delivered_at=now, attempts=t.outbox.c.attempts + 1, last_error=None,
            ))

    async def failed(self, delivery_id: int, *, error: str, retry_at: float | None) -> None:
        """Record a failed try: retry at ``retry_at``, or dead-letter it if None."""
        values: dict[str, Any] = {"attempts": t.outbox.c.attempts + 1, "last_error": error[:2000]}
        if retry_at is None:
            values["status"] = "dead"
        else:
            values["next_attempt_at"] = retry_at
        async with self.engines.writing() as conn:
            await conn.execute(update(t.outbox).where(t.outbox.c.id == delivery_id).values(**values))

    async def list(self, status: str, limit: int = 100) -> list[Delivery]:
        q = select(t.outbox).where(t.outbox.c.status == status).order_by(t.outbox.c.id).limit(limit)
        async with self.engines.reading() as conn:
            return [_delivery(r) for r in (await conn.execute(q)).mappings().all()]

    async def replay(self, now: float, ids: list[int] | None = None) -> int:
        """Put dead letters back in line for delivery, with a fresh try count."""
        stmt = update(t.outbox).where(t.outbox.c.status == "dead")
        if ids is not None:
            stmt = stmt.where(t.outbox.c.id.in_(ids))
        async with self.engines.writing() as conn:
            result = await conn.execute(stmt.values(status="pending", attempts=0, next_attempt_at=now))
        return result.rowcount


def _delivery(r: Any) -> Delivery:
    return Delivery(
        id=r["id"], idempotency_key=r["idempotency_key"], channel_id=r["channel_id"],
        conversation_id=r["conversation_id"], kind=r["kind"], payload=r["payload"], attempts=r["attempts"],
        status=r["status"], last_error=r["last_error"], created_at=r["created_at"],
    )

"""The transactional outbox: deliveries written with the change that caused
them, handed to the delivery worker in order per conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, select, update
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

    async def claim(self, now: float, lease: float, limit: int = 100) -> list[Delivery]:
        """Take the deliveries to attempt now: the oldest undelivered item of
        each conversation, if it is due. Taking one moves its next attempt
        ``lease`` seconds on, so no other worker or instance takes it while
        this one tries (and, should this one die, it is tried again then).

        Per-conversation order holds across retries: an item waits behind
        an earlier one of its conversation that is still being retried, and
        behind a dead letter too, until that is replayed."""
        o = t.outbox
        earlier = aliased(t.outbox)
        candidates = (
            select(o.c.id)
            .where(
                o.c.status == "pending",
                o.c.next_attempt_at <= now,
                ~exists().where(
                    and_(earlier.c.conversation_id == o.c.conversation_id,
                         earlier.c.status.in_(("pending", "dead")), earlier.c.id < o.c.id)
                ),
            )
            .order_by(o.c.id)
            .limit(limit)
        )
        if self.engines.dialect == "postgresql":
            # Two instances claiming at once: each skips the rows the other
            # has locked, and a row the other has already claimed no longer
            # matches once PostgreSQL re-reads it.
            candidates = candidates.with_for_update(of=o, skip_locked=True)
        stmt = (update(o).where(o.c.id.in_(candidates.scalar_subquery()))
                .values(next_attempt_at=now + lease).returning(*o.c))
        async with self.engines.writing() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return sorted((_delivery(r) for r in rows), key=lambda d: d.id)

    async def held(self) -> int:
        """Undelivered items waiting behind a dead letter of their conversation."""
        o = t.outbox
        dead = aliased(t.outbox)
        q = select(func.count()).select_from(o).where(
            o.c.status == "pending",
            exists().where(and_(dead.c.conversation_id == o.c.conversation_id, dead.c.status == "dead",
                                dead.c.id < o.c.id)),
        )
        async with self.engines.reading() as conn:
            return int((await conn.execute(q)).scalar_one())

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

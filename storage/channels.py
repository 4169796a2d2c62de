"""What the channel adapters keep and read: a bridge's cursor (where it has
read up to), and the recent handoff history behind the waits customers are
told (router/estimates.py)."""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.dialects import postgresql, sqlite

from . import tables as t
from .engine import Engines


class ChannelData:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def cursor(self, channel_id: str, name: str) -> str | None:
        c = t.channel_cursors
        async with self.engines.reading() as conn:
            return (await conn.execute(select(c.c.value).where(c.c.channel_id == channel_id,
                                                               c.c.name == name))).scalar_one_or_none()

    async def set_cursor(self, channel_id: str, name: str, value: str, now: float) -> None:
        dialect = postgresql if self.engines.dialect == "postgresql" else sqlite
        stmt = dialect.insert(t.channel_cursors).values(channel_id=channel_id, name=name, value=value, updated_at=now)
        stmt = stmt.on_conflict_do_update(index_elements=["channel_id", "name"],
                                          set_={"value": value, "updated_at": now})
        async with self.engines.writing() as conn:
            await conn.execute(stmt)

    async def taken_from_queue(self, skill: str, since: float) -> list[float]:
        """When handoffs of ``skill`` were taken from its queue since then
        (assigned after waiting: an assignment at the moment of the handoff
        says nothing about how fast the queue moves)."""
        h = t.handoffs
        q = select(h.c.assigned_at).where(h.c.skill == skill, h.c.assigned_at >= since,
                                          h.c.assigned_at > h.c.requested_at)
        async with self.engines.reading() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    async def first_replies(self, since: float, limit: int = 5000) -> list[float]:
        """Seconds from handoff to the agent's first reply, for handoffs
        requested since then (the latest ``limit``)."""
        h = t.handoffs
        q = (select(h.c.first_reply_at - h.c.requested_at)
             .where(and_(h.c.requested_at >= since, h.c.first_reply_at.is_not(None)))
             .order_by(h.c.requested_at.desc()).limit(limit))
        async with self.engines.reading() as conn:
            return [float(r[0]) for r in (await conn.execute(q)).all()]

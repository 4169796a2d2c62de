"""Stored handoffs for the simulator's replay and the staffing forecast
(router/history.py): request, assignment, first reply and end of each."""

from __future__ import annotations

from sqlalchemy import func, select

from router.history import HandoffRecord

from . import tables as t
from .engine import Engines

_h = t.handoffs.c


class HandoffHistory:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def between(self, start: float, end: float) -> list[HandoffRecord]:
        """Handoffs requested in [start, end), oldest first."""
        q = (select(_h.requested_at, _h.skill, _h.vip, _h.agent_id, _h.assigned_at, _h.first_reply_at,
                    _h.resolved_at)
             .where(_h.requested_at >= start, _h.requested_at < end).order_by(_h.requested_at))
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).all()
        return [HandoffRecord(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    async def days(self, starts: list[float]) -> list[list[HandoffRecord]]:
        """The handoffs of each day starting at ``starts`` (24 h each)."""
        return [await self.between(s, s + 86400.0) for s in starts]

    async def span(self) -> tuple[float, float] | None:
        """The first and last request time stored, if any."""
        async with self.engines.reading() as conn:
            first, last = (await conn.execute(select(func.min(_h.requested_at), func.max(_h.requested_at)))).one()
        return None if first is None else (float(first), float(last))

    async def agents(self) -> list[tuple[str, frozenset[str], int]]:
        """The agents stored now: id, skills, capacity."""
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(t.agents.c.id, t.agents.c.skills, t.agents.c.capacity)
                                       .order_by(t.agents.c.id))).all()
        return [(r[0], frozenset(r[1] or ()), int(r[2])) for r in rows]

"""Stored handoffs as the simulator and the staffing forecast read them.

storage/history.py reads them (the handoffs table: request, assignment, first
reply and end of each); this module turns them into what was offered
(arrivals, handling times, patience) and what was staffed, per quarter hour.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .simulation import AgentSpec, Arrival

SLOT_SECONDS = 900.0  # staffing is planned by quarter hour


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    requested_at: float
    skill: str
    vip: bool = False
    agent_id: str | None = None
    assigned_at: float | None = None
    first_reply_at: float | None = None
    resolved_at: float | None = None

    @property
    def handle(self) -> float | None:
        """How long it held an agent's slot: assignment → end."""
        if self.assigned_at is None or self.resolved_at is None:
            return None
        return max(0.0, self.resolved_at - self.assigned_at)

    @property
    def abandoned(self) -> bool:
        """The customer left (or was closed) before any agent took it."""
        return self.assigned_at is None and self.resolved_at is not None

    @property
    def time_in_queue(self) -> float | None:
        """Request → assignment, or → the end for those who left; None while waiting."""
        end = self.assigned_at if self.assigned_at is not None else self.resolved_at
        return None if end is None else max(0.0, end - self.requested_at)


@dataclass
class Replay:
    arrivals: list[Arrival]
    skipped_open: int  # still waiting or held when read: no handling time yet
    first: float | None
    last: float | None


def replay_arrivals(records: Iterable[HandoffRecord], *, seed: int = 0) -> Replay:
    """Stored traffic as arrivals: each handoff at its request time with its
    skill, VIP flag and handling time. A customer who left unanswered keeps
    the time they waited as their patience (a customer who was answered
    waited no longer than they would have, so their patience is unknown and
    taken as unlimited); should the simulated desk answer them, their
    handling time is drawn from the skill's answered handoffs."""
    rng = random.Random(seed)
    records = list(records)
    done = sorted((r for r in records if r.resolved_at is not None), key=lambda r: r.requested_at)
    handles: dict[str, list[float]] = defaultdict(list)
    for r in done:
        h = r.handle
        if h is not None:
            handles[r.skill].append(h)
    everyone = [h for hs in handles.values() for h in hs] or [0.0]
    arrivals = []
    for r in done:
        h = r.handle
        if h is not None:
            arrivals.append(Arrival(r.requested_at, r.skill, h, math.inf, r.vip))
        else:
            patience = r.time_in_queue or 0.0
            arrivals.append(Arrival(r.requested_at, r.skill, rng.choice(handles.get(r.skill) or everyone), patience,
                                    r.vip))
    return Replay(arrivals, sum(1 for r in records if r.resolved_at is None),
                  arrivals[0].at if arrivals else None, arrivals[-1].at if arrivals else None)


def roster_from_history(records: Iterable[HandoffRecord], slot_seconds: float = SLOT_SECONDS) -> list[AgentSpec]:
    """The agents as history shows them: each with the skills they took,
    a capacity of the most conversations they held at once, online in the
    quarter hours in which they held one (status changes are not stored, so
    an agent online but idle for a whole quarter hour is not seen)."""
    intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
    skills: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.agent_id is None or r.assigned_at is None or r.resolved_at is None:
            continue
        intervals[r.agent_id].append((r.assigned_at, r.resolved_at))
        skills[r.agent_id].add(r.skill)
    roster = []
    for aid in sorted(intervals):
        spans = intervals[aid]
        roster.append(AgentSpec(aid, frozenset(skills[aid]), max(1, _most_at_once(spans)),
                                _merge_slots(spans, slot_seconds)))
    return roster


def _most_at_once(spans: Sequence[tuple[float, float]]) -> int:
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def _merge_slots(spans: Sequence[tuple[float, float]], slot_seconds: float) -> tuple[tuple[float, float], ...]:
    slots = sorted({int(t // slot_seconds) for a, b in spans
                    for t in _slot_starts(a, b, slot_seconds)})
    merged: list[list[float]] = []
    for s in slots:
        start, end = s * slot_seconds, (s + 1) * slot_seconds
        if merged and merged[-1][1] == start:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return tuple((a, b) for a, b in merged)


def _slot_starts(a: float, b: float, slot_seconds: float) -> Iterable[float]:
    s = math.floor(a / slot_seconds) * slot_seconds
    while s <= b:
        yield s
        s += slot_seconds


@dataclass
class SlotActual:
    """What happened in one quarter hour for one skill (or all: skill None)."""

    offered: int = 0
    within: int = 0  # answered within the service-level threshold
    abandoned: int = 0
    agents: set[str] = field(default_factory=set)  # held a conversation of it during the slot

    @property
    def service_level(self) -> float | None:
        return self.within / self.offered if self.offered else None


def actual_slots(records: Iterable[HandoffRecord], start: float, days: int, within: float,
                 slot_seconds: float = SLOT_SECONDS) -> dict[tuple[int, str | None], SlotActual]:
    """Per slot from ``start`` (0 … days·96 − 1) and skill, plus skill None
    for the desk as a whole: handoffs offered, answered within ``within``,
    and the agents at work (holding a conversation)."""
    end = start + days * 86400.0
    out: dict[tuple[int, str | None], SlotActual] = defaultdict(SlotActual)
    last = int(days * 86400.0 // slot_seconds) - 1
    for r in records:
        if start <= r.requested_at < end:
            i = int((r.requested_at - start) // slot_seconds)
            for key in ((i, r.skill), (i, None)):
                cell = out[key]
                cell.offered += 1
                if r.assigned_at is not None and r.assigned_at - r.requested_at <= within:
                    cell.within += 1
                if r.abandoned:
                    cell.abandoned += 1
        if r.agent_id is not None and r.assigned_at is not None:
            until = r.resolved_at if r.resolved_at is not None else r.assigned_at
            if until < start or r.assigned_at >= end:
                continue
            first = max(0, int((r.assigned_at - start) // slot_seconds))
            final = min(last, int((until - start) // slot_seconds))
            for i in range(first, final + 1):
                out[(i, r.skill)].agents.add(r.agent_id)
                out[(i, None)].agents.add(r.agent_id)
    return dict(out)

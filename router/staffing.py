"""How many agents each quarter hour needs, per skill, from history.

For a date, the same weekday of the past weeks gives each skill's arrival
rate per quarter hour (handoffs in that slot ÷ days ÷ 900 s), and those days'
handoffs give the mean handling time (assignment → end), the agents' mean
reaction (assignment → first reply) and, where customers left unanswered,
their mean patience (the exponential estimate: those who left ÷ the total
time everyone spent in the queue). Each slot is then sized on its own as a
steady-state queue: the fewest agents, each with ``concurrency`` slots, whose
predicted service level (answered within ``within`` seconds) reaches the
target and whose mean first response (queue wait + reaction) stays within
``first_response``, by Erlang C, or Erlang A where customers leave.
Shrinkage (breaks, training, absence) turns agents on the desk into agents
to schedule: scheduled = ⌈on the desk ÷ (1 − shrinkage)⌉.

Agents are sized per skill as if each served one skill; agents with several
skills pool the queues and need no more than that (router/simulation.py
measures how much less).

``verify`` runs the simulator (the real router) with the recommended desk
on the same arrival profile and reports the share of slots that met the
target service level.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from .history import SLOT_SECONDS, HandoffRecord
from .queueing import Performance, performance
from .simulation import AgentSpec, Exponential, SkillTraffic, Simulation, poisson_arrivals

SLOTS_PER_DAY = 96
MAX_AGENTS = 10_000


@dataclass(frozen=True, slots=True)
class Target:
    service_level: float = 0.8  # share answered within `within`
    within: float = 20.0  # seconds
    first_response: float | None = None  # mean request → first agent reply, seconds
    concurrency: int = 1  # conversations an agent holds at once
    shrinkage: float = 0.3  # share of paid time not on the desk


@dataclass(frozen=True)
class SkillDemand:
    skill: str
    rates: tuple[float, ...]  # arrivals per second, one per quarter hour of the day
    handle: float | None  # mean handling time, seconds (None: none was answered)
    patience: float | None  # mean patience, seconds (None: nobody left)
    reaction: float | None  # mean assignment → first reply, seconds
    handoffs: int  # in the days sampled
    abandoned: int


@dataclass(frozen=True, slots=True)
class SlotPlan:
    slot: int  # 0 … 95
    rate: float  # arrivals per second
    agents: int  # on the desk
    scheduled: int  # with shrinkage
    predicted: Performance


def measure(days: Sequence[tuple[float, Sequence[HandoffRecord]]],
            slot_seconds: float = SLOT_SECONDS) -> dict[str, SkillDemand]:
    """``days``: (the day's start, its handoffs) for each day sampled."""
    per_day = int(86400 // slot_seconds)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * per_day)
    handles: dict[str, list[float]] = defaultdict(list)
    reactions: dict[str, list[float]] = defaultdict(list)
    queued: dict[str, float] = defaultdict(float)
    left: dict[str, int] = defaultdict(int)
    for start, records in days:
        for r in records:
            i = int((r.requested_at - start) // slot_seconds)
            if not 0 <= i < per_day:
                continue
            counts[r.skill][i] += 1
            if r.handle is not None:
                handles[r.skill].append(r.handle)
            if r.first_reply_at is not None and r.assigned_at is not None:
                reactions[r.skill].append(max(0.0, r.first_reply_at - r.assigned_at))
            q = r.time_in_queue
            if q is not None:
                queued[r.skill] += q
            if r.abandoned:
                left[r.skill] += 1
    n = max(1, len(days))
    out = {}
    for skill in sorted(counts):
        out[skill] = SkillDemand(
            skill=skill, rates=tuple(c / (n * slot_seconds) for c in counts[skill]),
            handle=_mean(handles[skill]),
            patience=queued[skill] / left[skill] if left[skill] and queued[skill] > 0 else None,
            reaction=_mean(reactions[skill]), handoffs=sum(counts[skill]), abandoned=left[skill],
        )
    return out


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def agents_needed(rate: float, handle: float, target: Target, *, patience: float | None = None,
                  reaction: float | None = None) -> tuple[int, Performance]:
    """The fewest agents meeting the target, and what they are predicted to give.

    Search starts at the least that could possibly do: with c slots at most
    c·μ customers an hour are answered, so a service level s needs
    c ≥ s·λ/μ."""
    theta = 1.0 / patience if patience else 0.0
    k = target.concurrency
    if rate <= 0:
        return 0, performance(0, 0.0, 1.0, target.within)
    mu = 1.0 / handle
    first_response = target.first_response
    if first_response is not None and (reaction or 0.0) >= first_response:
        first_response = None  # out of reach however many agents: size for the service level alone
    def enough(n: int) -> tuple[bool, Performance]:
        p = performance(n * k, rate, mu, target.within, theta)
        ok = p.service_level >= target.service_level
        if ok and first_response is not None:
            ok = p.mean_answer_wait + (reaction or 0.0) <= first_response
        # Once nobody waits (in all but a billionth of cases) more agents
        # change nothing: a bound below that is out of reach.
        return ok or p.p_wait < 1e-9, p

    # Both bounds only get easier with more agents: gallop up from the
    # least that could do, then bisect.
    low = max(1, math.ceil(target.service_level * rate * handle / k - 1e-9))
    ok, p = enough(low)
    if ok:
        return low, p
    step = 1
    while True:
        high = min(MAX_AGENTS, low + step)
        ok, p = enough(high)
        if ok or high == MAX_AGENTS:
            break
        low, step = high, step * 2
    best = (high, p)
    while high - low > 1:  # enough(low) is false, enough(high) true
        mid = (low + high) // 2
        ok, p = enough(mid)
        if ok:
            high, best = mid, (mid, p)
        else:
            low = mid
    return best


def scheduled(agents: int, shrinkage: float) -> int:
    return math.ceil(agents / (1.0 - shrinkage) - 1e-9) if agents else 0


def plan(demand: dict[str, SkillDemand], target: Target) -> dict[str, list[SlotPlan]]:
    out: dict[str, list[SlotPlan]] = {}
    for skill, d in demand.items():
        slots = []
        for i, rate in enumerate(d.rates):
            if rate > 0 and d.handle is None:  # no conversation answered to learn from
                n, p = 0, performance(0, rate, 1.0, target.within)
            else:
                n, p = agents_needed(rate, d.handle or 1.0, target, patience=d.patience, reaction=d.reaction)
            slots.append(SlotPlan(i, rate, n, scheduled(n, target.shrinkage), p))
        out[skill] = slots
    return out


@dataclass(frozen=True)
class Verification:
    days: int
    slots: int  # (slot, skill) pairs with handoffs offered
    met: int  # … of which reached the target service level
    worst: tuple[int, str, float] | None  # (slot, skill, service level) furthest below
    per_slot: dict[tuple[int, str], tuple[int, float]]  # offered, service level

    @property
    def share(self) -> float:
        return self.met / self.slots if self.slots else 1.0


def verify(demand: dict[str, SkillDemand], plans: dict[str, list[SlotPlan]], target: Target, *,
           days: int = 20, seed: int = 1) -> Verification:
    """Simulate ``days`` days of the demand's arrival profile (Poisson, exponential
    handling and patience with the measured means) on the recommended desk:
    per skill, agent i is online in the slots that need more than i agents,
    with ``concurrency`` slots each. Each slot's service level is counted over
    all simulated days."""
    roster: list[AgentSpec] = []
    traffic: list[SkillTraffic] = []
    for skill, slots in plans.items():
        d = demand[skill]
        if d.handle is None or not any(s.rate > 0 for s in slots):
            continue
        traffic.append(SkillTraffic(skill, d.rates, Exponential(d.handle),
                                    Exponential(d.patience) if d.patience else None))
        for i in range(max(s.agents for s in slots)):
            shifts = _shifts([s.agents > i for s in slots], days)
            roster.append(AgentSpec(f"{skill}-{i:03d}", frozenset({skill}), target.concurrency, shifts))
    if not traffic:
        return Verification(days, 0, 0, None, {})
    result = Simulation(roster, seed=seed, within=target.within, slot_seconds=SLOT_SECONDS).run(
        poisson_arrivals(traffic, seed=seed, until=days * 86400.0))
    totals: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    for (i, skill), cell in result.slots.items():
        t = totals[(i % SLOTS_PER_DAY, skill)]
        t[0] += int(cell[0])
        t[1] += int(cell[1])
    per_slot = {k: (v[0], v[1] / v[0]) for k, v in sorted(totals.items()) if v[0]}
    met = sum(1 for _, sl in per_slot.values() if sl >= target.service_level)
    worst = min(((k[0], k[1], sl) for k, (_, sl) in per_slot.items()), key=lambda x: x[2], default=None)
    return Verification(days, len(per_slot), met, worst, per_slot)


def _shifts(on: Sequence[bool], days: int) -> tuple[tuple[float, float], ...]:
    spans: list[list[float]] = []
    for day in range(days):
        base = day * 86400.0
        for i, flag in enumerate(on):
            if not flag:
                continue
            a, b = base + i * SLOT_SECONDS, base + (i + 1) * SLOT_SECONDS
            if spans and spans[-1][1] == a:
                spans[-1][1] = b
            else:
                spans.append([a, b])
    return tuple((a, b) for a, b in spans)

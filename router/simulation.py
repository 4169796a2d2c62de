"""A discrete-event simulation of the human tier, driving the real router.

The Dispatcher of router/routing.py, the object that serves traffic, takes
each arrival with ``request``, each end of a conversation and each customer
who gives up waiting with ``release`` (as the Desk does), and each change of
the roster with ``set_status``, on a virtual clock. It decides who takes a
handoff and who waits in which order (least loaded, VIP first, then oldest);
this module only keeps time and counts. Rules that land in the Dispatcher
(reservations, skill fallback, levels, business hours) are simulated as soon
as they serve; a rule that needs timed events of its own (a reservation
timing out, a fallback delay) adds an event kind to the loop below.

The chooser can be swapped for the baselines of router/baselines.py
(round-robin, random) to compare the served rule with them.

Pure: no I/O and no wall clock. Arrivals, handling times and patience are
drawn from one seeded random.Random when each customer arrives, so a run is
reproducible and its customers do not depend on the routing: two choosers
run with the same seed see the very same customers.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .baselines import RandomChoice, RoundRobin
from .model import Agent, AgentStatus, Handoff, HandoffReason
from .routing import Chooser, Dispatcher, Fallback, choose_agent

CHOOSERS = ("least-loaded", "round-robin", "random")


# ------------------------------------------------------------ distributions
class Distribution(Protocol):
    @property
    def mean(self) -> float: ...

    def sample(self, rng: random.Random) -> float: ...


@dataclass(frozen=True, slots=True)
class Exponential:
    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Given by its mean and coefficient of variation (sd ÷ mean): handling
    times of real desks are skewed, a few conversations lasting far longer."""

    mean: float
    cv: float = 1.0

    def sample(self, rng: random.Random) -> float:
        s2 = math.log1p(self.cv * self.cv)
        return rng.lognormvariate(math.log(self.mean) - s2 / 2, math.sqrt(s2))


@dataclass(frozen=True, slots=True)
class Fixed:
    mean: float

    def sample(self, rng: random.Random) -> float:
        return self.mean


# ----------------------------------------------------------------- arrivals
@dataclass(frozen=True, slots=True)
class Arrival:
    """A customer handed off at ``at``, who holds a slot for ``handle``
    seconds once assigned and leaves the queue after ``patience``."""

    at: float
    skill: str
    handle: float
    patience: float = math.inf
    vip: bool = False


@dataclass(frozen=True)
class SkillTraffic:
    """Handoffs of one skill. ``rate`` is per second: one number, or one per
    slot of a cycle (96 quarter hours: a day) that repeats."""

    skill: str
    rate: float | Sequence[float]
    handle: Distribution
    patience: Distribution | None = None
    vip_share: float = 0.0


def day_shape(slot: int) -> float:
    """Relative arrival rate of a quarter hour of a contact centre's day
    (slot 0 = 00:00): a quiet night, peaks at 10:30 and 15:00."""
    h = slot / 4 + 0.125
    return 0.04 + math.exp(-((h - 10.5) / 1.8) ** 2) + 0.8 * math.exp(-((h - 15.0) / 2.2) ** 2)


def daily_profile(peak: float) -> tuple[float, ...]:
    """96 quarter-hour rates following day_shape, the busiest one ``peak``."""
    shape = [day_shape(i) for i in range(96)]
    top = max(shape)
    return tuple(peak * x / top for x in shape)


def poisson_arrivals(traffic: Sequence[SkillTraffic], *, seed: int, until: float | None = None,
                     count: int | None = None, start: float = 0.0,
                     slot_seconds: float = 900.0) -> Iterator[Arrival]:
    """A Poisson stream, its rate constant within each slot (a rate profile
    is piecewise constant). Crossing a slot boundary restarts the draw at the
    boundary with the next slot's rate, which is exact for a Poisson process."""
    if until is None and count is None:
        raise ValueError("give until or count")
    rng = random.Random(seed)
    cycle = max((len(x.rate) for x in traffic if not isinstance(x.rate, (int, float))), default=1)

    def rate(x: SkillTraffic, i: int) -> float:
        return float(x.rate) if isinstance(x.rate, (int, float)) else float(x.rate[i % len(x.rate)])

    totals = [sum(rate(x, i) for x in traffic) for i in range(cycle)]
    cumulative = [list(itertools.accumulate(rate(x, i) for x in traffic)) for i in range(cycle)]
    if not any(t > 0 for t in totals):
        return
    single = len(traffic) == 1
    t, slot, made = start, 0, 0
    boundary = start + slot_seconds
    while True:
        total = totals[slot % cycle]
        if total > 0:
            t += rng.expovariate(total)
        if total <= 0 or t >= boundary:
            t, slot = boundary, slot + 1
            boundary = start + (slot + 1) * slot_seconds
            if until is not None and t >= until:
                return
            continue
        if until is not None and t >= until:
            return
        if single:
            x = traffic[0]
        else:
            x = traffic[bisect.bisect_right(cumulative[slot % cycle], rng.random() * total)]
        patience = x.patience.sample(rng) if x.patience is not None else math.inf
        vip = x.vip_share > 0 and rng.random() < x.vip_share
        yield Arrival(t, x.skill, x.handle.sample(rng), patience, vip)
        made += 1
        if count is not None and made >= count:
            return


# ------------------------------------------------------------------- roster
@dataclass(frozen=True)
class AgentSpec:
    """An agent of the simulated desk. ``shifts``: the intervals they are
    online; None for online throughout."""

    id: str
    skills: frozenset[str]
    capacity: int
    shifts: tuple[tuple[float, float], ...] | None = None
    # Per skill, the agent's level (1-5), as the router weighs it.
    levels: Mapping[str, int] = field(default_factory=dict)


def make_chooser(name: str | Chooser, agent_ids: Sequence[str], seed: int) -> Chooser:
    if callable(name):
        return name
    if name == "least-loaded":
        return choose_agent
    if name == "round-robin":
        return RoundRobin(agent_ids)
    if name == "random":
        return RandomChoice(random.Random(f"chooser-{seed}"))
    raise ValueError(f"chooser must be one of {', '.join(CHOOSERS)}")


# ------------------------------------------------------------------ results
@dataclass
class Tally:
    """Handoffs that arrived in the measured window."""

    offered: int = 0
    answered: int = 0
    within: int = 0  # answered within the service-level threshold
    abandoned: int = 0
    queue_time: float = 0.0  # Σ time in queue, answered or not
    waits: array = field(default_factory=lambda: array("d"))  # answered: assignment − request

    def as_dict(self, within_seconds: float) -> dict[str, Any]:
        n = self.offered
        ordered = sorted(self.waits)
        return {
            "offered": n, "answered": self.answered, "abandoned": self.abandoned,
            "unanswered": n - self.answered - self.abandoned,
            "abandonment": _ratio(self.abandoned, n),
            "service_level": _ratio(self.within, n),
            "service_level_seconds": within_seconds,
            "mean_wait": _ratio(sum(self.waits), len(self.waits)),
            "p50_wait": percentile(ordered, 0.5, ordered=True), "p90_wait": percentile(ordered, 0.9, ordered=True),
            "p99_wait": percentile(ordered, 0.99, ordered=True),
            "max_wait": ordered[-1] if ordered else None,
            "mean_time_in_queue": _ratio(self.queue_time, n),
        }


@dataclass
class AgentTally:
    capacity: int
    skills: frozenset[str]
    busy: float = 0.0  # slot-seconds holding conversations
    staffed: float = 0.0  # slot-seconds online (or finishing conversations after going offline)

    @property
    def occupancy(self) -> float | None:
        return self.busy / self.staffed if self.staffed > 0 else None


@dataclass
class Result:
    chooser: str
    within: float
    start: float  # the measured window
    end: float
    conversations: int = 0  # every arrival, measured or not
    events: int = 0
    total: Tally = field(default_factory=Tally)
    vip: Tally = field(default_factory=Tally)
    skills: dict[str, Tally] = field(default_factory=dict)
    agents: dict[str, AgentTally] = field(default_factory=dict)
    skill_busy: dict[str, float] = field(default_factory=dict)  # slot-seconds per skill
    queue_area: dict[str, float] = field(default_factory=dict)  # ∫ queue length dt per skill
    queue_max: int = 0
    # (time, total waiting, waiting per skill), at most MAX_SAMPLES of them
    samples: list[tuple[float, int, dict[str, int]]] = field(default_factory=list)
    sample_every: float = 0.0
    # (slot index, skill) → [offered, answered within, abandoned, answered, Σ wait]
    slots: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    slot_seconds: float | None = None
    violations: int = 0  # checked runs: a handoff waiting while an eligible agent had a free slot
    handoffs: list[Handoff] = field(default_factory=list)  # every one, when the run keeps them

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def occupancies(self) -> dict[str, float]:
        return {aid: a.occupancy for aid, a in sorted(self.agents.items()) if a.occupancy is not None}

    def summary(self, *, samples: bool = True, per_agent: bool = True) -> dict[str, Any]:
        occ = self.occupancies()
        values = list(occ.values())
        skills: dict[str, Any] = {}
        for s, tally in sorted(self.skills.items()):
            holders = [a for a in self.agents.values() if s in a.skills and a.staffed > 0]
            staffed = sum(a.staffed for a in holders)
            skills[s] = tally.as_dict(self.within) | {
                "load_erlangs": _ratio(self.skill_busy.get(s, 0.0), self.duration),
                "occupancy_of_its_agents": _ratio(sum(a.busy for a in holders), staffed),
                "mean_queue_length": _ratio(self.queue_area.get(s, 0.0), self.duration),
            }
        out: dict[str, Any] = {
            "chooser": self.chooser,
            "window": {"start": self.start, "end": self.end, "seconds": self.duration},
            "conversations": self.conversations,
            **self.total.as_dict(self.within),
            "vip": self.vip.as_dict(self.within),
            "occupancy": {
                "mean": _ratio(sum(a.busy for a in self.agents.values()),
                               sum(a.staffed for a in self.agents.values())),
                "min": min(values) if values else None, "max": max(values) if values else None,
                "gini": gini(values) if values else None,
            },
            "queue": {"mean_length": _ratio(sum(self.queue_area.values()), self.duration),
                      "max_length": self.queue_max},
            "skills": skills,
            "violations": self.violations,
        }
        if per_agent:
            out["occupancy"]["per_agent"] = occ
        if samples:
            out["queue"]["sample_every_seconds"] = self.sample_every
            out["queue"]["samples"] = [[t, n, by] for t, n, by in self.samples]
        return out

    def slot_service_levels(self) -> dict[tuple[int, str], tuple[int, float | None]]:
        """Per (slot, skill): handoffs offered and the share answered within."""
        return {k: (int(v[0]), _ratio(v[1], v[0])) for k, v in sorted(self.slots.items())}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def percentile(values: Sequence[float], q: float, *, ordered: bool = False) -> float | None:
    """Nearest rank: the smallest value with at least q of them at or below it."""
    if not values:
        return None
    xs = values if ordered else sorted(values)
    return xs[max(0, math.ceil(q * len(xs)) - 1)]


def gini(values: Sequence[float]) -> float:
    """0 when everyone has the same, towards 1 when one has everything."""
    xs = sorted(values)
    n, total = len(xs), sum(xs)
    if n == 0 or total == 0:
        return 0.0
    return 2 * sum((i + 1) * x for i, x in enumerate(xs)) / (n * total) - (n + 1) / n


# ------------------------------------------------------------------- engine
_END, _LEAVE, _ROSTER, _WIDEN = 0, 1, 2, 3
MAX_SAMPLES = 2000

Progress = Callable[[int], None]


class Simulation:
    """One run: a roster, a chooser, a stream of arrivals.

    ``warmup``: seconds after the first arrival left out of every figure, so
    a run that starts empty measures the steady state. ``check``: after every
    event, count handoffs waiting while an eligible agent has a free slot
    (there must be none) and compare the queue with the Dispatcher's.
    ``keep``: keep every handoff (its request, assignment, agent and end) in
    the result, as a history to store."""

    def __init__(self, agents: Sequence[AgentSpec], *, chooser: str | Chooser = "least-loaded", seed: int = 0,
                 within: float = 20.0, warmup: float = 0.0, slot_seconds: float | None = None,
                 sample_every: float = 60.0, check: bool = False, keep: bool = False,
                 fallback: Mapping[str, Sequence[Fallback]] | None = None, vip_weight: int = 1) -> None:
        self.specs = list(agents)
        self.chooser_name = chooser if isinstance(chooser, str) else getattr(chooser, "__name__", "custom")
        self.choose = make_chooser(chooser, [a.id for a in self.specs], seed)
        self.within = within
        self.warmup = warmup
        self.slot_seconds = slot_seconds
        self.sample_every = sample_every
        self.check = check
        self.keep = keep
        # Skill fallback as the router applies it (router/rules.py): a
        # waiting handoff widens to the next skill's agents at each delay.
        self.fallback = dict(fallback or {})
        # How many of an agent's slots a VIP's conversation takes (the rules
        # file's vip_weight): occupancy counts the slots held.
        self.vip_weight = vip_weight

    def run(self, arrivals: Iterable[Arrival], *, until: float | None = None,
            progress: Progress | None = None, progress_every: int = 20_000) -> Result:
        it = iter(arrivals)
        nxt = next(it, None)
        if nxt is not None and until is not None and nxt.at >= until:
            nxt = None
        first = nxt.at if nxt is not None else 0.0
        res = Result(chooser=self.chooser_name, within=self.within, start=first + self.warmup,
                     end=math.inf, slot_seconds=self.slot_seconds, sample_every=self.sample_every)
        w0 = res.start
        within = self.within
        slot_seconds = self.slot_seconds

        agents = [Agent(s.id, s.id, frozenset(s.skills), s.capacity,
                        AgentStatus.ONLINE if s.shifts is None else AgentStatus.OFFLINE, levels=dict(s.levels))
                  for s in self.specs]
        by_id = {a.id: a for a in agents}
        for s in self.specs:
            res.agents[s.id] = AgentTally(s.capacity, frozenset(s.skills))
        dispatcher = Dispatcher(agents, choose=self.choose, fallback=self.fallback)
        # When each agent's staffed time began (online, or finishing after going offline).
        staffed_since: dict[str, float] = {a.id: -math.inf for a in agents if a.status is AgentStatus.ONLINE}

        heap: list[tuple[float, int, int, Any]] = []
        push, pop = heapq.heappush, heapq.heappop
        seq = itertools.count()
        for s in self.specs:
            for on, off in s.shifts or ():
                push(heap, (on, _ROSTER, next(seq), (s.id, AgentStatus.ONLINE)))
                push(heap, (off, _ROSTER, next(seq), (s.id, AgentStatus.OFFLINE)))

        # handoff id → (handle, measured, skill tally)
        meta: dict[str, tuple[float, bool, Tally]] = {}
        queued: dict[str, int] = {}
        queue_since: dict[str, float] = {}
        queue_area = res.queue_area
        skill_busy = res.skill_busy
        total, vip_tally, skills = res.total, res.vip, res.skills
        slots = res.slots
        end = math.inf
        step = self.sample_every
        next_sample = first
        samples = res.samples

        def clip(x: float) -> float:
            return w0 if x < w0 else (end if x > end else x)

        def queue_change(skill: str, d: int, t: float) -> None:
            n = queued.get(skill, 0)
            if n:
                queue_area[skill] = queue_area.get(skill, 0.0) + n * (clip(t) - clip(queue_since[skill]))
            queued[skill] = n + d
            queue_since[skill] = t

        def assigned(h: Handoff, t: float, from_queue: bool) -> None:
            handle, measured, tally = meta.pop(h.id)
            if from_queue:
                queue_change(h.skill, -1, t)
            if measured:
                wait = t - h.requested_at
                ok = wait <= within
                for x in (total, tally, vip_tally) if h.vip else (total, tally):
                    x.answered += 1
                    x.waits.append(wait)
                    x.queue_time += wait
                    if ok:
                        x.within += 1
                if slot_seconds is not None:
                    cell = slots[(int(h.requested_at // slot_seconds), h.skill)]
                    cell[3] += 1
                    cell[4] += wait
                    if ok:
                        cell[1] += 1
            push(heap, (t + handle, _END, next(seq), h))

        def staffed_until(aid: str, t: float) -> None:
            since = staffed_since.pop(aid, None)
            if since is not None:
                a = res.agents[aid]
                a.staffed += a.capacity * (clip(t) - clip(since))

        n_arrivals = 0
        events = 0
        while True:
            from_heap = bool(heap) and (nxt is None or heap[0][0] <= nxt.at)
            if not from_heap and nxt is None:
                break
            t = heap[0][0] if from_heap else nxt.at  # type: ignore[union-attr]
            while next_sample <= t and next_sample <= end:
                # the queue as it stood since the last event
                samples.append((next_sample, sum(queued.values()), {k: v for k, v in queued.items() if v}))
                next_sample += step
                if len(samples) >= 2 * MAX_SAMPLES:
                    del samples[1::2]
                    step *= 2
                    next_sample = samples[-1][0] + step
            if from_heap:
                t, kind, _, obj = pop(heap)
                events += 1
                if kind == _END:
                    h = obj
                    h.resolved_at = t
                    aid = h.agent_id
                    busy = (clip(t) - clip(h.assigned_at)) * h.slots
                    a = res.agents[aid]
                    a.busy += busy
                    skill_busy[h.skill] = skill_busy.get(h.skill, 0.0) + busy
                    for m in dispatcher.release(h, t):
                        assigned(m.handoff, t, True)
                    agent = by_id[aid]
                    if agent.open_count == 0 and agent.status is not AgentStatus.ONLINE:
                        staffed_until(aid, t)
                elif kind == _WIDEN:
                    # What the timekeeper does each round: time alone widens a handoff.
                    if obj.agent_id is None and obj.resolved_at is None:
                        for m in dispatcher.drain(t):
                            assigned(m.handoff, t, True)
                elif kind == _LEAVE:
                    h = obj
                    if h.agent_id is None and h.resolved_at is None:
                        h.resolved_at = t
                        _, measured, tally = meta.pop(h.id)
                        queue_change(h.skill, -1, t)
                        if measured:
                            waited = t - h.requested_at
                            for x in (total, tally, vip_tally) if h.vip else (total, tally):
                                x.abandoned += 1
                                x.queue_time += waited
                            if slot_seconds is not None:
                                slots[(int(h.requested_at // slot_seconds), h.skill)][2] += 1
                        for m in dispatcher.release(h, t):  # what the Desk does when a customer leaves
                            assigned(m.handoff, t, True)
                else:
                    aid, status = obj
                    agent = by_id[aid]
                    if status is AgentStatus.ONLINE and agent.status is not AgentStatus.ONLINE:
                        staffed_until(aid, t)  # finishing after going offline, then back
                        staffed_since[aid] = t
                    elif status is not AgentStatus.ONLINE and agent.status is AgentStatus.ONLINE:
                        staffed_until(aid, t)
                        if agent.open_count > 0:
                            staffed_since[aid] = t
                    for m in dispatcher.set_status(aid, status, t):
                        assigned(m.handoff, t, True)
            else:
                x = nxt  # type: ignore[assignment]
                n_arrivals += 1
                measured = t >= w0
                h = Handoff(f"h{n_arrivals}", f"c{n_arrivals}", "sim", 1, HandoffReason.OTHER, x.skill,
                            requested_at=t, vip=x.vip, weight=self.vip_weight if x.vip else 1)
                tally = skills.get(x.skill)
                if tally is None:
                    tally = skills[x.skill] = Tally()
                if measured:
                    total.offered += 1
                    tally.offered += 1
                    if x.vip:
                        vip_tally.offered += 1
                    if slot_seconds is not None:
                        key = (int(t // slot_seconds), x.skill)
                        cell = slots.get(key)
                        if cell is None:
                            slots[key] = [1, 0, 0, 0, 0.0]
                        else:
                            cell[0] += 1
                meta[h.id] = (x.handle, measured, tally)
                if self.keep:
                    res.handoffs.append(h)
                if dispatcher.request(h, t) is not None:
                    assigned(h, t, False)
                else:
                    queue_change(x.skill, 1, t)
                    if x.patience < math.inf:
                        push(heap, (t + x.patience, _LEAVE, next(seq), h))
                    for step_ in self.fallback.get(x.skill, ()):
                        push(heap, (t + step_.after, _WIDEN, next(seq), h))
                nxt = next(it, None)
                if nxt is not None and until is not None and nxt.at >= until:
                    nxt = None
                if nxt is None:
                    end = until if until is not None else t
                    res.end = end
                if progress is not None and n_arrivals % progress_every == 0:
                    progress(n_arrivals)
            waiting = sum(queued.values())
            if waiting > res.queue_max:
                res.queue_max = waiting
            if self.check:
                res.violations += self._violations(dispatcher, queued, waiting)

        if res.end == math.inf:
            res.end = end = w0
        for aid in list(staffed_since):
            staffed_until(aid, end)
        for skill in list(queued):
            queue_change(skill, 0, end)
        res.conversations = n_arrivals
        res.events = events + n_arrivals
        res.sample_every = step
        if progress is not None:
            progress(n_arrivals)
        return res

    @staticmethod
    def _violations(dispatcher: Dispatcher, queued: dict[str, int], waiting: int) -> int:
        bad = 0 if waiting == dispatcher.waiting_count() else 1
        for skill, n in queued.items():
            head = dispatcher.head(skill) if n else None
            # An agent kept for a heavier handoff may idle a slot: that is the rule, not a fault.
            if head is not None and any(a.can_take(skill, head.weight) and a.id not in dispatcher.kept
                                        for a in dispatcher.agents.values()):
                bad += 1
        return bad

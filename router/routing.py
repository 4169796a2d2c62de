"""Skill-based routing: who takes a handoff, and who waits in which order.

Eligible agents are online, hold the skill and have room for the
conversation's weight. The least loaded (slots in use ÷ capacity) wins;
equal loads go to the agent idle longest. When nobody is eligible the
handoff waits: VIP before regular, then oldest first. Whenever capacity
appears (a slot frees, an agent comes online or gains a skill) the oldest
eligible waiting handoffs are assigned at once. A conversation may weigh
more than one slot (docs/routing.md, "Conversation weights").

The Dispatcher holds the agents and the queue in memory and mutates them; it
returns what happened so the service layer can persist and announce it. It
does no I/O: the database enforces the same invariants independently.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from router.errors import Conflict, NotFound

from .model import Agent, AgentStatus, Handoff


@dataclass(frozen=True, slots=True)
class Assignment:
    handoff: Handoff
    agent: Agent
    at: float


# How much longer than it has a widened handoff counts as having waited when
# it competes with the fallback skill's own work (docs/routing.md, "Skill
# fallback", has the simulated figures behind it).
WAIT_CREDIT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Fallback:
    """A handoff of a skill that has waited ``after`` seconds may also go to
    agents of ``skill`` (at once when nobody who could take it sooner is
    online). Among those agents' own waiting work it counts as having waited
    ``credit`` seconds longer than it has: own work first while it has
    waited that much longer, widened work first after that."""

    skill: str
    after: float
    credit: float = WAIT_CREDIT_SECONDS


# Who among the agents takes a handoff of the skill (None: nobody eligible).
# The least-loaded rule below serves traffic; the simulator
# (router/simulation.py) also plugs in round-robin and random baselines.
# Arguments: the agents, the skill, who not to choose, the conversation's weight.
Chooser = Callable[[Iterable[Agent], str, str | None, int], Agent | None]


def choose_agent(agents: Iterable[Agent], skill: str, exclude: str | None = None, weight: int = 1) -> Agent | None:
    best: Agent | None = None
    best_key: tuple[int, float, float, str] | None = None
    for agent in agents:
        if not agent.can_take(skill, weight) or agent.id == exclude:
            continue
        key = (-agent.level(skill), agent.load, agent.idle_since, agent.id)
        if best_key is None or key < best_key:
            best, best_key = agent, key
    return best


class Dispatcher:
    def __init__(self, agents: Iterable[Agent] = (), handoffs: Iterable[Handoff] = (),
                 choose: Chooser = choose_agent, fallback: Mapping[str, Sequence[Fallback]] | None = None) -> None:
        self.agents: dict[str, Agent] = {a.id: a for a in agents}
        self._choose = choose
        # Per skill, the skills a handoff widens to once it has waited long
        # enough, in order (billing → general after 30 s).
        self.fallback: Mapping[str, Sequence[Fallback]] = fallback or {}
        self._waiting: dict[str, Handoff] = {}
        # Per skill, the waiting handoffs' queue keys in queue order: a
        # position is a binary search, not a walk of the whole queue (which
        # a busy hour makes thousands long).
        self._by_skill: dict[str, list[tuple[bool, bool, float, str]]] = {}
        # Per skill, the keys of waiting handoffs an agent answered before
        # (requeued when the agent left): not unanswered, though waiting.
        self._answered: dict[str, list[tuple[bool, bool, float, str]]] = {}
        # The open handoffs agents hold, by handoff id (with the agent it was
        # counted under) and by agent: the few that reservations, leaving
        # agents and the live view look at, found without walking the queue.
        self._held: dict[str, tuple[str, Handoff]] = {}
        self._held_by_agent: dict[str, dict[str, Handoff]] = {}
        # Agents with a free slot kept for a heavier handoff that waits for
        # them (the last drain decided): lighter work behind it may not take
        # them, or a weight-2 VIP would wait for ever behind a stream of
        # weight-1 conversations.
        self._kept: set[str] = set()
        for h in handoffs:
            self.track(h)

    def track(self, h: Handoff) -> None:
        """Take an open handoff as it stands (read from the store, or as
        another instance left it), in place of any copy of it held before:
        queued if it waits, counted with its agent if one holds it."""
        self.forget(h)
        if h.waiting:
            self.enqueue(h)
        elif h.is_open and h.agent_id is not None:
            self._hold(h, h.agent_id)

    def forget(self, h: Handoff) -> None:
        """Drop the handoff (whichever copy of it is known) from the queue and
        from its agent's."""
        known = self._waiting.get(h.id)
        if known is not None:
            self.dequeue(known)
        self._unhold(h)

    def enqueue(self, h: Handoff) -> None:
        """Put a waiting handoff in its place in the queue (once)."""
        if not h.waiting or h.id in self._waiting:
            return
        self._waiting[h.id] = h
        key = h.queue_key()
        bisect.insort(self._by_skill.setdefault(h.skill, []), key)
        if h.first_reply_at is not None:
            bisect.insort(self._answered.setdefault(h.skill, []), key)

    def dequeue(self, h: Handoff) -> None:
        if self._waiting.pop(h.id, None) is None:
            return
        key = h.queue_key()
        keys = self._by_skill[h.skill]
        del keys[bisect.bisect_left(keys, key)]
        if not keys:
            del self._by_skill[h.skill]
        answered = self._answered.get(h.skill)
        if answered:
            i = bisect.bisect_left(answered, key)
            if i < len(answered) and answered[i] == key:
                del answered[i]
                if not answered:
                    del self._answered[h.skill]

    def _hold(self, h: Handoff, agent_id: str) -> None:
        self._unhold(h)
        self._held[h.id] = (agent_id, h)
        self._held_by_agent.setdefault(agent_id, {})[h.id] = h

    def _unhold(self, h: Handoff) -> None:
        known = self._held.pop(h.id, None)
        if known is None:
            return
        agent_id = known[0]
        mine = self._held_by_agent[agent_id]
        del mine[h.id]
        if not mine:
            del self._held_by_agent[agent_id]

    # -- queries -------------------------------------------------------------
    def agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise NotFound(f"agent {agent_id!r} does not exist") from None

    def waiting(self, limit: int | None = None) -> list[Handoff]:
        """The first ``limit`` waiting handoffs (all of them if None), in
        queue order; merged lazily, so the first few of a long queue cost
        what they are, not what the queue is."""
        keys = itertools.islice(heapq.merge(*self._by_skill.values()), limit)
        return [self._waiting[k[-1]] for k in keys]

    def waiting_count(self) -> int:
        return len(self._waiting)

    def waiting_by_skill(self) -> dict[str, tuple[int, float]]:
        """Per skill: how many customers wait live, and since when the oldest
        has waited (VIPs come first in the queue, so it is the older of the
        first VIP and the first other handoff). Messages left are not
        counted: nobody is waiting on the line for them."""
        out = {}
        for skill, keys in self._by_skill.items():
            live = self.live_waiting(skill)
            if not live:
                continue
            first_regular = bisect.bisect_left(keys, (False, True))
            oldest = min(k[2] for k in (keys[0], keys[min(first_regular, live - 1)]))
            out[skill] = (live, oldest)
        return out

    def unanswered_waiting(self, skill: str, late: Callable[[float], bool],
                           oldest: int = 0) -> tuple[int, list[Handoff]]:
        """Customers waiting live for the skill whom no agent has answered
        and whose request time ``late`` holds for: how many, and the oldest
        ``oldest`` of them in each priority class (VIP, regular), oldest
        first. ``late`` must hold for every request time before one it holds
        for (a wait past a bound does): each class is in request-time order,
        so those are a prefix of it, found by bisection."""
        keys = self._by_skill.get(skill)
        if not keys:
            return 0, []
        answered = self._answered.get(skill, [])
        count, first = 0, []
        for start, stop in (((False, False), (False, True)), ((False, True), (True,))):
            lo, hi = bisect.bisect_left(keys, start), bisect.bisect_left(keys, stop)
            # late holds on a prefix: the first key it does not hold for.
            end = bisect.bisect_left(keys, True, lo, hi, key=lambda k: not late(k[2]))
            bound = keys[end] if end < hi else stop
            count += end - lo - (bisect.bisect_left(answered, bound) - bisect.bisect_left(answered, start))
            i, taken = lo, 0
            while i < end and taken < oldest:
                h = self._waiting[keys[i][-1]]
                if h.first_reply_at is None:
                    first.append(h)
                    taken += 1
                i += 1
        return count, first

    def held(self, agent_id: str | None = None) -> list[Handoff]:
        """The open handoffs the agent holds (every agent's if None)."""
        if agent_id is None:
            return [h for _, h in self._held.values()]
        return list(self._held_by_agent.get(agent_id, {}).values())

    def head(self, skill: str) -> Handoff | None:
        """The first handoff waiting for the skill."""
        keys = self._by_skill.get(skill)
        return self._waiting[keys[0][-1]] if keys else None

    @property
    def kept(self) -> frozenset[str]:
        """Agents with a free slot kept for a heavier handoff (see drain)."""
        return frozenset(self._kept)

    def live_waiting(self, skill: str) -> int:
        """Customers waiting live for the skill (messages left excluded)."""
        keys = self._by_skill.get(skill)
        return bisect.bisect_left(keys, (True,)) if keys else 0

    def left_messages(self) -> dict[str, int]:
        """Per skill, the messages left waiting for an agent."""
        return {skill: n for skill, keys in self._by_skill.items() if (n := len(keys) - self.live_waiting(skill))}

    def queue_position(self, handoff: Handoff) -> int | None:
        """1-based position among handoffs waiting for the same skill."""
        if handoff.id not in self._waiting:
            return None
        return bisect.bisect_left(self._by_skill[handoff.skill], handoff.queue_key()) + 1

    # -- commands ------------------------------------------------------------
    def add_agent(self, agent: Agent, now: float) -> list[Assignment]:
        if agent.id in self.agents:
            raise Conflict(f"agent {agent.id!r} already exists")
        self.agents[agent.id] = agent
        return self.drain(now)

    def request(self, handoff: Handoff, now: float, exclude: str | None = None) -> Assignment | None:
        """Route a new (or transferred) handoff: assign it now or queue it.

        ``exclude``: the agent who just transferred it away must not get it
        straight back at once; it may come back to them later from the queue."""
        agents = [a for a in self.agents.values() if a.id not in self._kept] if self._kept else self.agents.values()
        agent = self._choose(agents, handoff.skill, exclude, handoff.weight)
        if agent is None:
            for skill in self.widened(handoff, now):
                agent = self._choose(agents, skill, exclude, handoff.weight)
                if agent is not None:
                    break
        if agent is None:
            self.enqueue(handoff)
            if handoff.weight > 1:
                self._keep_for(handoff, [a for a in self.agents.values() if a.has_free_slot()])
            return None
        return self._assign(handoff, agent, now)

    def widened(self, handoff: Handoff, now: float, present: set[str] | None = None) -> list[str]:
        """The fallback skills a handoff has reached: it has waited past
        their delay, or nobody online holds a skill it reached before, so
        there is nobody to wait for (TaskRouter's ``skip_if: workers.available
        == 0``). ``present``: the skills some online agent holds, if known."""
        return self._reached(handoff.skill, now - handoff.requested_at, present)

    def _reached(self, skill: str, waited: float, present: set[str] | None = None) -> list[str]:
        chain = self.fallback.get(skill, ())
        if not chain:
            return []
        if present is None:
            present = self.present_skills()
        reached: list[str] = []
        waiting_for_someone = skill in present
        for f in chain:
            if waiting_for_someone and waited < f.after:
                break
            reached.append(f.skill)
            waiting_for_someone = waiting_for_someone or f.skill in present
        return reached

    def present_skills(self) -> set[str]:
        """The skills held by some agent who is online and present, busy or not."""
        return {s for a in self.agents.values() if a.status is AgentStatus.ONLINE and a.disabled_at is None
                and a.presence_lost_at is None for s in a.skills}

    def takes_now(self, skill: str, weight: int = 1) -> bool:
        """Whether a new handoff of the skill would be assigned at once, as
        ``request`` decides: an agent of the skill, or of a fallback it
        reaches at once, with room for it and not kept for a heavier one. (By
        eligibility alone: asking the chooser would move a round-robin.)"""
        skills = [skill, *self._reached(skill, 0.0)]
        return any(a.id not in self._kept and a.can_take(s, weight) for a in self.agents.values() for s in skills)

    def chooses(self, skill: str, exclude: str | None = None, weight: int = 1) -> Agent | None:
        """Who would take a handoff of ``skill`` now (nobody is changed)."""
        return self._choose(self.agents.values(), skill, exclude, weight)

    def assign_to(self, handoff: Handoff, agent: Agent, now: float) -> Assignment:
        """A transfer to a named agent: skills don't matter, capacity does."""
        if not (agent.has_free_slot() and agent.fits(handoff.weight)):
            raise Conflict(f"agent {agent.id!r} has no free slot", code="agent_unavailable")
        return self._assign(handoff, agent, now)

    def release(self, handoff: Handoff, now: float) -> list[Assignment]:
        """The handoff ended or left its agent: free the slot and refill it."""
        self.dequeue(handoff)
        self._unhold(handoff)
        if handoff.agent_id is not None:
            agent = self.agents.get(handoff.agent_id)
            if agent is not None:
                agent.open_count = max(agent.open_count - handoff.slots, 0)
        return self.drain(now)

    def refresh_agent(self, stored: Agent) -> None:
        """Take an agent as another instance left it in the database."""
        agent = self.agents.get(stored.id)
        if agent is None:
            self.agents[stored.id] = stored
            return
        agent.name, agent.skills, agent.capacity = stored.name, stored.skills, stored.capacity
        agent.status, agent.open_count, agent.idle_since = stored.status, stored.open_count, stored.idle_since
        agent.disabled_at, agent.presence_lost_at = stored.disabled_at, stored.presence_lost_at
        agent.missed_reservations, agent.levels = stored.missed_reservations, stored.levels

    def set_status(self, agent_id: str, status: AgentStatus, now: float) -> list[Assignment]:
        agent = self.agent(agent_id)
        if agent.status is not AgentStatus.ONLINE and status is AgentStatus.ONLINE:
            agent.idle_since = now
        agent.status = status
        return self.drain(now)

    def update_agent(
        self,
        agent_id: str,
        now: float,
        *,
        skills: Iterable[str] | None = None,
        capacity: int | None = None,
        name: str | None = None,
        levels: Mapping[str, int] | None = None,
    ) -> list[Assignment]:
        agent = self.agent(agent_id)
        if skills is not None:
            agent.skills = frozenset(skills)
            agent.levels = {s: n for s, n in agent.levels.items() if s in agent.skills}
        if levels is not None:
            agent.levels = dict(levels)
        if capacity is not None:
            # Lowering capacity below the current load keeps the open
            # conversations; the agent just takes no new ones until under it.
            agent.capacity = capacity
        if name is not None:
            agent.name = name
        return self.drain(now)

    def drain(self, now: float) -> list[Assignment]:
        """Assign waiting handoffs while some agent can take one, in queue
        order: VIP first, then longest waited, a widened handoff's wait
        counted with its fallback step's credit."""
        made: list[Assignment] = []
        self._kept = set()
        if not self._waiting:
            return made
        free = [a for a in self.agents.values() if a.has_free_slot()]
        if not free:
            return made
        # Only the skills some free agent has can be served now; the others
        # are not even looked at.
        servable = {skill for a in free for skill in a.skills}
        own = [(keys, skill, None) for skill, keys in self._by_skill.items() if skill in servable]
        # Widened work competes with the agents' own, as if requested its
        # credit earlier: neither queue starves the other (docs/routing.md).
        steps = [(keys, f.skill, f) for skill, keys in self._by_skill.items()
                 for f in self.fallback.get(skill, ()) if f.skill in servable]
        present = self.present_skills() if steps else set()
        streams = [self._credited(keys, served, step, i, free, now, present)
                   for i, (keys, served, step) in enumerate(own + steps)]
        for _, _, key, step in heapq.merge(*streams):
            handoff = self._waiting.get(key[-1])
            if handoff is None:
                continue  # taken already, through another of its skills
            agent = self._choose(free, handoff.skill if step is None else step.skill, None, handoff.weight)
            if agent is None:
                if step is None and handoff.weight > 1 and self._keep_for(handoff, free):
                    return made
                continue
            if self._took(handoff, agent, free, made, now):
                return made
        return made

    def _credited(self, keys: list[tuple[bool, bool, float, str]], served: str, step: Fallback | None,
                  rank: int, free: list[Agent], now: float,
                  present: set[str]) -> Iterator[tuple[tuple, int, tuple, Fallback | None]]:
        """A skill's queue keys (VIP flag, ..., requested at, id) as they
        compete in ``drain``: a widened handoff's request time moved back by
        its step's credit. Each queue keeps its order, so the queues merge;
        ``rank`` breaks exact ties (own work, then the chain's order).

        Read as drain goes, not copied: drain assigns (and so removes) keys
        meanwhile, so the next key is the one after the last read. What drain
        would pass over is not read at all, or a long queue would be walked
        on every release: a step's handoffs once one of a priority class has
        not waited long enough to reach it (those after it waited less), and
        everything once no free agent has the skill ``served``."""
        i = 0
        while i < len(keys):
            k = keys[i]
            if not any(served in a.skills for a in free):
                return
            if step is None:
                yield k, rank, k, None
            elif step.skill in self.widened(self._waiting[k[-1]], now, present):
                yield (*k[:-2], k[-2] - step.credit, k[-1]), rank, k, step
            else:
                i = bisect.bisect_left(keys, (k[0], k[1], math.inf))
                continue
            i = bisect.bisect_right(keys, k)

    def _keep_for(self, heavy: Handoff, free: list[Agent]) -> bool:
        """Nobody has room for this heavier handoff: its skill's agents with
        a free slot take nothing lighter until it fits one of them. True
        when no free agent is left."""
        for agent in [a for a in free if heavy.skill in a.skills]:
            free.remove(agent)
            self._kept.add(agent.id)
        return not free

    def _took(self, handoff: Handoff, agent: Agent, free: list[Agent], made: list[Assignment], now: float) -> bool:
        """Assign; True when no free agent is left."""
        made.append(self._assign(handoff, agent, now))
        if not agent.has_free_slot():
            free.remove(agent)
        return not free

    def _assign(self, handoff: Handoff, agent: Agent, now: float) -> Assignment:
        self.dequeue(handoff)
        handoff.slots = handoff.slots_on(agent)
        agent.open_count += handoff.slots
        self._kept.discard(agent.id)
        agent.idle_since = now
        handoff.agent_id = agent.id
        handoff.assigned_at = now
        self._hold(handoff, agent.id)
        return Assignment(handoff=handoff, agent=agent, at=now)

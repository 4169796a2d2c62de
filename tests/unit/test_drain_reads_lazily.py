"""Dispatcher.drain reads the queues as it assigns and skips what it would
pass over (a step's handoffs that have not waited long enough, skills no
free agent has), where it used to copy their whole merge first: on random
states, with each chooser, it assigns exactly what the copying drain, kept
here, assigned."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator, Sequence

import pytest

from router.baselines import RandomChoice, RoundRobin
from router.model import Agent, AgentStatus, Handoff, HandoffReason
from router.routing import Assignment, Chooser, Dispatcher, Fallback, choose_agent

NOW = 10_000.0
SKILLS = ("billing", "tech", "general")
FALLBACK = {"billing": (Fallback("general", 30.0), Fallback("tech", 120.0, 60.0)),
            "tech": (Fallback("general", 60.0),)}


def _credited(keys: Sequence[tuple], step: Fallback | None,
              rank: int) -> Iterator[tuple[tuple, int, tuple, Fallback | None]]:
    if step is None:
        for k in keys:
            yield k, rank, k, None
    else:
        for k in keys:
            yield (*k[:-2], k[-2] - step.credit, k[-1]), rank, k, step


def drain_by_copying(d: Dispatcher, now: float) -> list[Assignment]:
    """Dispatcher.drain as it was at a124718."""
    made: list[Assignment] = []
    d._kept = set()
    if not d._waiting:
        return made
    free = [a for a in d.agents.values() if a.has_free_slot()]
    if not free:
        return made
    servable = {skill for a in free for skill in a.skills}
    own = [(keys, None) for skill, keys in d._by_skill.items() if skill in servable]
    steps = [(keys, f) for skill, keys in d._by_skill.items() for f in d.fallback.get(skill, ()) if f.skill in servable]
    present = d.present_skills() if steps else set()
    streams = [_credited(keys, step, i) for i, (keys, step) in enumerate(own + steps)]
    for _, _, key, step in list(heapq.merge(*streams)):
        handoff = d._waiting.get(key[-1])
        if handoff is None:
            continue
        if step is None:
            agent = d._choose(free, handoff.skill, None, handoff.weight)
            if agent is None:
                if handoff.weight > 1 and d._keep_for(handoff, free):
                    return made
                continue
        elif step.skill in d.widened(handoff, now, present):
            agent = d._choose(free, step.skill, None, handoff.weight)
        else:
            continue
        if agent is not None and d._took(handoff, agent, free, made, now):
            return made
    return made


def state(seed: int, chooser: str) -> Dispatcher:
    rng = random.Random(seed)
    agents = []
    for i in range(rng.randint(1, 6)):
        skills = frozenset(rng.sample(SKILLS, rng.randint(1, 3)))
        capacity = rng.randint(1, 4)
        agents.append(Agent(
            f"a{i}", f"A{i}", skills, capacity, rng.choice([AgentStatus.ONLINE] * 3 + list(AgentStatus)),
            open_count=rng.randint(0, capacity), idle_since=rng.uniform(0, NOW),
            presence_lost_at=NOW - 1 if rng.random() < 0.15 else None,
            levels={s: rng.randint(1, 3) for s in skills if rng.random() < 0.3}))
    waiting = []
    for i in range(rng.randint(0, 60)):
        waiting.append(Handoff(
            f"h{i:03d}", f"c{i}", "web", 1, HandoffReason.NEEDS_HUMAN, rng.choice(SKILLS),
            NOW - rng.choice([rng.uniform(0, 200), rng.uniform(0, 20)]), vip=rng.random() < 0.25,
            weight=rng.choice([1, 1, 1, 2, 3]), left_message=rng.random() < 0.1,
            first_reply_at=NOW - 1 if rng.random() < 0.05 else None))
    choose: Chooser = {"least-loaded": choose_agent, "round-robin": RoundRobin([a.id for a in agents]),
                       "random": RandomChoice(random.Random(seed))}[chooser]
    return Dispatcher(agents, waiting, choose=choose, fallback=FALLBACK)


@pytest.mark.parametrize("chooser", ["least-loaded", "round-robin", "random"])
def test_drain_assigns_what_the_copying_drain_assigned(chooser: str) -> None:
    assigned = kept = 0
    for seed in range(400):
        lazy, copying = state(seed, chooser), state(seed, chooser)
        made = [(m.handoff.id, m.agent.id) for m in lazy.drain(NOW)]
        assert made == [(m.handoff.id, m.agent.id) for m in drain_by_copying(copying, NOW)], seed
        assert lazy.kept == copying.kept, seed
        assert [h.id for h in lazy.waiting()] == [h.id for h in copying.waiting()], seed
        assert {a.id: a.open_count for a in lazy.agents.values()} == {
            a.id: a.open_count for a in copying.agents.values()}, seed
        assert {h.id for h in lazy.held()} == {h.id for h in copying.held()}, seed
        assigned += len(made)
        kept += bool(lazy.kept)
    assert assigned > 400 and kept > 10  # the states did make drain work

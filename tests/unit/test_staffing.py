"""The staffing forecast (router/staffing.py) and what it reads from history
(router/history.py)."""

from __future__ import annotations

import math

import pytest

from router.history import HandoffRecord, actual_slots, replay_arrivals, roster_from_history
from router.queueing import erlang_c_service_level
from router.staffing import SkillDemand, Target, agents_needed, measure, plan, scheduled, verify

DAY = 86400.0


def test_agents_needed_by_erlang_c() -> None:
    # docs/routing.md's example: 0.8 handoffs a minute, 5 minutes each (4
    # Erlangs). 80 % within 20 s takes 7 agents (6 give 75 %).
    rate, handle = 0.8 / 60, 300.0
    n, p = agents_needed(rate, handle, Target(0.8, 20.0))
    assert n == 7
    assert p.service_level == pytest.approx(erlang_c_service_level(7, rate, 1 / handle, 20.0))
    assert erlang_c_service_level(6, rate, 1 / handle, 20.0) < 0.8 <= p.service_level
    # Two conversations at once each: 4 agents (8 slots).
    assert agents_needed(rate, handle, Target(0.8, 20.0, concurrency=2))[0] == 4
    assert agents_needed(0.0, handle, Target())[0] == 0


def test_patience_and_first_response() -> None:
    rate, handle = 0.8 / 60, 300.0
    # Customers who leave shorten the queue for the rest: no more agents needed.
    assert agents_needed(rate, handle, Target(0.8, 20.0), patience=120.0)[0] <= 7
    # A mean first response of 30 s with agents taking 25 s to write back
    # leaves 5 s of mean queue wait: more agents than the 80/20 target alone.
    n, p = agents_needed(rate, handle, Target(0.8, 20.0, first_response=30.0), reaction=25.0)
    assert n > 7 and p.mean_answer_wait <= 5.0
    # Agents slower than the target itself: sized for the service level alone.
    assert agents_needed(rate, handle, Target(0.8, 20.0, first_response=30.0), reaction=40.0)[0] == 7


def test_shrinkage() -> None:
    assert scheduled(7, 0.3) == 10  # 7 / 0.7 = 10 exactly
    assert scheduled(8, 0.3) == 12
    assert scheduled(0, 0.3) == 0
    assert scheduled(5, 0.0) == 5


def record(at: float, skill: str = "billing", *, wait: float | None = 10.0, handle: float = 300.0,
           reaction: float = 20.0, agent: str = "a1", left_after: float | None = None) -> HandoffRecord:
    if left_after is not None:
        return HandoffRecord(at, skill, resolved_at=at + left_after)
    if wait is None:
        return HandoffRecord(at, skill)  # still waiting
    return HandoffRecord(at, skill, agent_id=agent, assigned_at=at + wait, first_reply_at=at + wait + reaction,
                         resolved_at=at + wait + handle)


def test_measure_rates_handling_patience_and_reaction() -> None:
    # Two Mondays: 09:00-09:15 had 30 then 60 billing handoffs; 4 customers
    # left after 50 s each. Rate = 90 / 2 days / 900 s.
    days = []
    for d, n in enumerate((30, 60)):
        start = d * 7 * DAY
        recs = [record(start + 9 * 3600 + i * 10, handle=200.0 + d * 200) for i in range(n)]
        recs += [record(start + 9 * 3600 + 5, left_after=50.0) for _ in range(2)]
        days.append((start, recs))
    m = measure(days)["billing"]
    assert m.rates[36] == pytest.approx(94 / (2 * 900))
    assert sum(1 for r in m.rates if r) == 1
    assert m.handle == pytest.approx((30 * 200 + 60 * 400) / 90)
    assert m.reaction == pytest.approx(20.0)
    # Exponential patience: those who left ÷ everyone's time in queue.
    assert m.patience == pytest.approx((90 * 10 + 4 * 50) / 4)
    assert m.handoffs == 94 and m.abandoned == 4


def profile(peak: float) -> tuple[float, ...]:
    """A day with a morning and an afternoon peak."""
    return tuple(peak * (0.05 + math.exp(-(((i / 4) - 10.5) / 1.8) ** 2) + 0.8 * math.exp(-(((i / 4) - 15) / 2.2) ** 2))
                 for i in range(96))


def test_the_recommended_desk_meets_the_target_in_95_percent_of_slots() -> None:
    # Billing: up to 110 an hour, 6 min each; tech: up to 55 an hour, 10
    # min each, customers leaving after 5 min on average (Erlang A). Agents
    # hold two conversations at once. 100 simulated days (~1 s of CPU): over
    # seeds 1-5 the share was 0.979-1.0 (docs/routing.md); the slots that miss
    # are those just after a rise, where the queue of the slot before carries over.
    demand = {"billing": SkillDemand("billing", profile(0.03), 360.0, None, 20.0, 0, 0),
              "tech": SkillDemand("tech", profile(0.015), 600.0, 300.0, 30.0, 0, 0)}
    target = Target(0.8, 20.0, first_response=60.0, concurrency=2, shrinkage=0.3)
    plans = plan(demand, target)
    assert max(s.agents for s in plans["billing"]) >= 6 and min(s.agents for s in plans["billing"]) >= 1
    assert all(s.predicted.service_level >= 0.8 for p in plans.values() for s in p)
    v = verify(demand, plans, target, days=100, seed=1)
    assert v.slots == 192
    assert v.share >= 0.95, v.worst


def test_replay_and_roster_from_history() -> None:
    recs = [record(0.0, handle=100.0, agent="a1"), record(5.0, "tech", handle=100.0, agent="a1"),
            record(2000.0, handle=50.0, agent="a2"), record(2100.0, left_after=30.0), record(3000.0, wait=None)]
    replay = replay_arrivals(recs, seed=1)
    assert [a.at for a in replay.arrivals] == [0.0, 5.0, 2000.0, 2100.0]
    assert [a.handle for a in replay.arrivals[:3]] == [100.0, 100.0, 50.0]
    assert replay.arrivals[3].patience == 30.0 and replay.arrivals[3].handle in (100.0, 50.0)
    assert replay.skipped_open == 1
    roster = {a.id: a for a in roster_from_history(recs)}
    assert roster["a1"].skills == {"billing", "tech"} and roster["a1"].capacity == 2
    assert roster["a1"].shifts == ((0.0, 900.0),)
    assert roster["a2"].capacity == 1 and roster["a2"].shifts == ((1800.0, 2700.0),)


def test_actual_slots() -> None:
    recs = [record(0.0, wait=10.0, handle=1000.0, agent="a1"), record(100.0, wait=30.0, agent="a2"),
            record(950.0, "tech", left_after=5.0)]
    cells = actual_slots(recs, 0.0, 1, within=20.0)
    assert (cells[(0, None)].offered, cells[(0, None)].within) == (2, 1)
    assert cells[(0, "billing")].agents == {"a1", "a2"}
    assert cells[(1, None)].agents == {"a1"}  # still holding the first conversation
    assert cells[(1, "tech")].abandoned == 1 and cells[(1, "tech")].service_level == 0.0

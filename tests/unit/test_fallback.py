"""Skill fallback: a handoff that has waited past a skill's delay widens to
the next skill's agents, never before, and an agent takes waiting work of
their own skills before widened work (router/routing.py, router/rules.py)."""

from __future__ import annotations

import pytest

from router.routing import Dispatcher, Fallback
from router.rules import parse_rules
from tests.unit.test_routing import agent, handoff
from tierdesk.errors import InvalidInput

CHAIN = {"billing": (Fallback("general", 30.0), Fallback("tech", 120.0))}


def test_a_handoff_widens_at_its_delay_and_not_before() -> None:
    d = Dispatcher([agent("g", "general", capacity=1)], fallback=CHAIN)
    h = handoff(0.0, "billing")
    assert d.request(h, now=0.0) is None  # nobody with billing: it waits
    assert d.drain(now=29.9) == []
    [made] = d.drain(now=30.0)
    assert (made.handoff, made.agent.id) == (h, "g")


def test_the_chain_widens_step_by_step() -> None:
    d = Dispatcher([agent("t", "tech", capacity=1)], fallback=CHAIN)
    h = handoff(0.0, "billing")
    d.request(h, now=0.0)
    assert d.drain(now=60.0) == []  # general reached, but no general agent; tech not yet
    assert [m.agent.id for m in d.drain(now=120.0)] == ["t"]


def test_a_new_handoff_goes_where_its_waiting_already_reaches() -> None:
    d = Dispatcher([agent("g", "general")], fallback={"billing": (Fallback("general", 0.0),)})
    made = d.request(handoff(5.0, "billing"), now=5.0)
    assert made is not None and made.agent.id == "g"


def test_an_agent_takes_their_own_skills_work_before_widened_work() -> None:
    g = agent("g", "general", capacity=1, open_count=1)
    d = Dispatcher([g], fallback=CHAIN)
    old_billing, young_general = handoff(0.0, "billing"), handoff(50.0, "general")
    d.request(old_billing, now=0.0)
    d.request(young_general, now=50.0)
    g.open_count = 0  # the slot frees at 60 s: billing has waited 60 s (widened), general 10 s
    [made] = d.drain(now=60.0)
    assert made.handoff is young_general
    assert d.waiting() == [old_billing]


def test_the_queue_order_holds_among_widened_handoffs() -> None:
    d = Dispatcher([agent("g", "general", capacity=1, open_count=1)], fallback=CHAIN)
    first, second = handoff(0.0, "billing"), handoff(10.0, "billing")
    vip = handoff(20.0, "billing", vip=True)
    for h in (first, second, vip):
        d.request(h, now=h.requested_at)
    d.agents["g"].open_count = 0
    [made] = d.drain(now=60.0)
    assert made.handoff is vip  # VIP first, then oldest, as in the queue


def test_rules_parse_and_refuse_what_they_cannot_mean() -> None:
    rules = parse_rules({"skills": {"billing": {"fallback": [{"skill": "general", "after_seconds": 30}],
                                                "reservation_timeout_seconds": 20},
                                    "tech": None}})
    assert rules.fallback() == {"billing": (Fallback("general", 30.0),)}
    assert rules.reservation_timeouts() == {"billing": 20.0}
    for bad in ({"skill": {}}, {"skills": {"b": {"fallback": [{"skill": "b", "after_seconds": 1}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g"}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g", "after_seconds": -1}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g", "after_seconds": 60},
                                               {"skill": "t", "after_seconds": 30}]}}},
                {"skills": {"b": {"fallback_to": "g"}}}, {"skills": ["b"]}):
        with pytest.raises(InvalidInput, match="routing rules"):
            parse_rules(bad)


# ------------------------------------------------------------------ levels
def test_the_best_level_available_takes_the_handoff_then_the_least_loaded() -> None:
    from router.routing import choose_agent

    senior = agent("senior", "billing", capacity=4, open_count=3)
    junior = agent("junior", "billing", capacity=4)
    other_senior = agent("other", "billing", capacity=4, open_count=1)
    senior.levels = {"billing": 5}
    other_senior.levels = {"billing": 5}
    # both seniors beat the idle junior; between them the less loaded wins
    assert choose_agent([junior, senior, other_senior], "billing") is other_senior
    other_senior.open_count = 4  # full
    assert choose_agent([junior, senior, other_senior], "billing") is senior
    senior.open_count = 4
    assert choose_agent([junior, senior, other_senior], "billing") is junior  # the best level *available*
    # a level is per skill: for general, nobody has one, so load decides
    for a in (junior, senior, other_senior):
        a.skills = frozenset({"billing", "general"})
    assert choose_agent([junior, senior, other_senior], "general") is junior

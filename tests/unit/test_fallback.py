"""Skill fallback: a handoff that has waited past a skill's delay widens to
the next skill's agents, never before, unless nobody who could take it sooner
is online; widened work competes with the agents' own work by its wait plus
its step's credit (router/routing.py, router/rules.py)."""

from __future__ import annotations

import pytest

from router.model import Agent, AgentStatus
from router.routing import WAIT_CREDIT_SECONDS, Dispatcher, Fallback
from router.rules import parse_rules
from tests.unit.test_routing import agent, handoff
from tierdesk.errors import InvalidInput

CHAIN = {"billing": (Fallback("general", 30.0), Fallback("tech", 120.0))}


def busy_billing_agent() -> Agent:
    # Online but at capacity: someone holds billing, so a billing handoff
    # waits its delays for them.
    return agent("b", "billing", capacity=1, open_count=1)


def test_a_handoff_widens_at_its_delay_and_not_before() -> None:
    d = Dispatcher([busy_billing_agent(), agent("g", "general", capacity=1)], fallback=CHAIN)
    h = handoff(0.0, "billing")
    assert d.request(h, now=0.0) is None  # billing's agent is busy: it waits
    assert d.drain(now=29.9) == []
    [made] = d.drain(now=30.0)
    assert (made.handoff, made.agent.id) == (h, "g")


def test_the_chain_widens_step_by_step() -> None:
    d = Dispatcher([busy_billing_agent(), agent("t", "tech", capacity=1)], fallback=CHAIN)
    h = handoff(0.0, "billing")
    d.request(h, now=0.0)
    assert d.drain(now=60.0) == []  # general reached, but no general agent; tech not yet
    assert [m.agent.id for m in d.drain(now=120.0)] == ["t"]


def test_a_new_handoff_goes_where_its_waiting_already_reaches() -> None:
    d = Dispatcher([busy_billing_agent(), agent("g", "general")], fallback={"billing": (Fallback("general", 0.0),)})
    made = d.request(handoff(5.0, "billing"), now=5.0)
    assert made is not None and made.agent.id == "g"


def test_with_nobody_online_to_wait_for_a_handoff_widens_at_once() -> None:
    b = agent("b", "billing", capacity=1, status=AgentStatus.AWAY)
    d = Dispatcher([b, agent("g", "general", capacity=1, open_count=1), agent("t", "tech", capacity=1)],
                   fallback=CHAIN)
    # billing's only agent is away: general at once. The general agent is
    # online, so tech still waits its 120 s.
    h = handoff(0.0, "billing")
    assert d.request(h, now=0.0) is None
    assert d.drain(now=119.0) == []
    d.agents["g"].open_count = 0
    [made] = d.drain(now=119.0)
    assert made.agent.id == "g"
    # With nobody on general either, the whole chain is reached at once.
    d.agents["g"].status = AgentStatus.OFFLINE
    made = d.request(handoff(200.0, "billing"), now=200.0)
    assert made is not None and made.agent.id == "t"


def test_an_agent_whose_presence_is_gone_is_not_waited_for() -> None:
    b = agent("b", "billing", capacity=1, open_count=1)
    d = Dispatcher([b, agent("g", "general", capacity=1)], fallback=CHAIN)
    assert d.request(handoff(0.0, "billing"), now=0.0) is None  # b is online, busy: wait 30 s
    b.presence_lost_at = 5.0
    [made] = d.drain(now=5.0)
    assert made.agent.id == "g"


def test_own_work_goes_first_while_it_has_waited_the_credit_longer() -> None:
    chain = {"billing": (Fallback("general", 30.0, credit=60.0),)}
    d = Dispatcher([busy_billing_agent(), agent("g", "general", capacity=1, open_count=1)], fallback=chain)
    widened = handoff(0.0, "billing")
    own = handoff(-100.0, "general")  # at 60 s: waited 160 s against billing's 60 + 60 credit
    d.request(widened, now=0.0)
    d.request(own, now=-100.0)
    d.agents["g"].open_count = 0
    [made] = d.drain(now=60.0)
    assert made.handoff is own
    assert d.waiting() == [widened]


def test_widened_work_goes_first_once_its_wait_and_credit_pass_the_own_work() -> None:
    chain = {"billing": (Fallback("general", 30.0, credit=60.0),)}
    d = Dispatcher([busy_billing_agent(), agent("g", "general", capacity=1, open_count=1)], fallback=chain)
    widened, own = handoff(0.0, "billing"), handoff(-50.0, "general")  # 60 + 60 against 110
    d.request(widened, now=0.0)
    d.request(own, now=-50.0)
    d.agents["g"].open_count = 0
    [made] = d.drain(now=60.0)
    assert made.handoff is widened
    assert d.waiting() == [own]


def test_the_credit_defaults_to_the_documented_figure_and_vip_still_comes_first() -> None:
    assert Fallback("general", 30.0).credit == WAIT_CREDIT_SECONDS
    d = Dispatcher([busy_billing_agent(), agent("g", "general", capacity=1, open_count=1)], fallback=CHAIN)
    widened, own_vip = handoff(0.0, "billing"), handoff(50.0, "general", vip=True)
    d.request(widened, now=0.0)
    d.request(own_vip, now=50.0)
    d.agents["g"].open_count = 0
    [made] = d.drain(now=1000.0)
    assert made.handoff is own_vip  # VIP before regular, whatever the waits


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
    credited = parse_rules({"skills": {"billing": {"fallback": [
        {"skill": "general", "after_seconds": 30, "wait_credit_seconds": 0}]}}})
    assert credited.fallback() == {"billing": (Fallback("general", 30.0, credit=0.0),)}
    assert rules.reservation_timeouts() == {"billing": 20.0}
    for bad in ({"skill": {}}, {"skills": {"b": {"fallback": [{"skill": "b", "after_seconds": 1}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g"}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g", "after_seconds": -1}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g", "after_seconds": 1, "wait_credit_seconds": -5}]}}},
                {"skills": {"b": {"fallback": [{"skill": "g", "after_seconds": 1, "credit": 5}]}}},
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

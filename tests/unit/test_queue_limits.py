"""Queue limits per skill: over the limit the customer is offered to leave a
message; the message left is tracked, never abandoned, and routed after the
customers waiting live once an agent has room (on the fake clock)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from router import metrics
from router.model import Agent, AgentStatus, ConversationStatus, Customer, Handoff, HandoffReason
from router.ports import FakeClock
from router.queue_limits import QueueFull, over_limit
from router.routing import Dispatcher
from router.rules import parse_rules
from router.services import Desk, DeskConfig, IncomingMessage
from router.tracker import EventKind
from tierdesk.errors import InvalidInput
from tests.unit.fakes import FakeClassifier, FakeStore

K = EventKind
WEB = "web"
T0 = 1_767_225_600.0  # the shared `clock` fixture starts here
_ids = itertools.count(1)


def _events_of(store: FakeStore, conversation_id: str) -> list[Any]:
    return [e for e in store.events if e.conversation_id == conversation_id]


def _handoff(at: float, skill: str = "billing", *, left: bool = False, vip: bool = False) -> Handoff:
    n = next(_ids)
    return Handoff(id=f"ho_{n:04d}", conversation_id=f"conv_{n}", channel_id=WEB, seq=1,
                   reason=HandoffReason.CUSTOMER_ASKED, skill=skill, requested_at=at, vip=vip, left_message=left)


# ------------------------------------------------------------- the rule
def test_the_queue_is_full_at_its_limit_when_nobody_can_take_one() -> None:
    ann = Agent("ann", "ann", frozenset({"billing"}), 1, AgentStatus.ONLINE, open_count=1)
    d = Dispatcher([ann], [_handoff(1.0), _handoff(2.0)])
    limits = {"billing": 2}
    assert over_limit(d, "billing", 1, limits) == QueueFull("billing", 2, 2)
    assert over_limit(d, "billing", 1, {"billing": 3}) is None
    assert over_limit(d, "tech", 1, limits) is None  # no limit for the skill
    # Someone who can take it now: it never waits, so it is never refused.
    ann.open_count = 0
    d.enqueue(_handoff(3.0))
    assert over_limit(d, "billing", 1, limits) is None


def test_messages_left_wait_after_the_live_queue_and_count_against_no_limit() -> None:
    d = Dispatcher()
    left = _handoff(0.0, left=True, vip=True)
    live = [_handoff(5.0), _handoff(6.0)]
    for h in (left, *live):
        d.enqueue(h)
    assert d.waiting() == [*live, left]
    assert d.live_waiting("billing") == 2 and d.left_messages() == {"billing": 1}
    assert d.waiting_by_skill() == {"billing": (2, 5.0)}
    assert d.queue_position(left) == 3
    assert over_limit(d, "billing", 1, {"billing": 3}) is None


def test_a_limit_of_zero_offers_a_message_whenever_nobody_is_free() -> None:
    d = Dispatcher()
    assert over_limit(d, "billing", 1, {"billing": 0}) == QueueFull("billing", 0, 0)


def test_rules_take_a_queue_limit_per_skill() -> None:
    rules = parse_rules({"skills": {"billing": {"queue_limit": 5}, "tech": {}}})
    assert rules.queue_limits() == {"billing": 5}
    for bad in (-1, 1.5, "5", True):
        with pytest.raises(InvalidInput, match="queue_limit"):
            parse_rules({"skills": {"billing": {"queue_limit": bad}}})


# ------------------------------------------------------------- the Desk
@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


async def _desk(store: FakeStore, clock: FakeClock, **config: Any) -> Desk:
    desk = Desk(store, FakeClassifier(), clock, DeskConfig(queue_limits={"general": 1}, **config))
    await desk.start()
    return desk


async def _send(desk: Desk, conversation: str, text: str, *, vip: bool = False) -> dict[str, Any]:
    return await desk.receive_message(WEB, IncomingMessage(f"m{next(_ids)}", conversation,
                                                           Customer(f"cust-{conversation}", vip=vip), text))


async def test_over_the_limit_a_message_is_offered_left_and_routed_after_the_live_queue(
        store: FakeStore, clock: FakeClock) -> None:
    store.seed_agent("ann", capacity=1)
    desk = await _desk(store, clock)
    assert (await _send(desk, "c1", "agent"))["agent_id"] == "ann"
    assert (await _send(desk, "c2", "agent"))["queue_position"] == 1
    clock.advance(10)
    full = await _send(desk, "c3", "agent")
    assert full == {"action": "queue_full", "reason": "customer_asked", "skill": "general", "queue_length": 1,
                    "queue_limit": 1}
    c3 = store.conversation_id(WEB, "c3")
    assert store.event_kinds(c3) == [K.MESSAGE_RECEIVED, K.QUEUE_FULL]
    assert _events_of(store, c3)[-1].data == {"skill": "general", "queue_length": 1, "queue_limit": 1,
                                            "reason": "customer_asked"}
    state = store.conversation_state(WEB, "c3")
    assert (state.status, state.handoff_id, state.message_offer) == (ConversationStatus.BOT, None, "general")

    # The next message is the message left, whatever it says: no bot answer.
    clock.advance(20)
    left = await _send(desk, "c3", "Please call me back about my invoice")
    assert left == {"action": "handoff", "reason": "left_message", "skill": "general", "agent_id": None,
                    "queue_position": 2}
    assert store.event_kinds(c3)[2:] == [K.MESSAGE_RECEIVED, K.MESSAGE_LEFT, K.HANDOFF_REQUESTED, K.QUEUED]
    h = store.handoff_of(WEB, "c3")
    assert h.left_message and h.requested_at == T0 + 30
    assert store.conversation_state(WEB, "c3").message_offer is None
    # Later live customers still queue (the message left counts against no limit) and go first.
    assert (await _send(desk, "c4", "agent"))["action"] == "queue_full"
    await desk.resolve("ann", store.conversation_id(WEB, "c1"))
    assert store.handoff_of(WEB, "c2").agent_id == "ann"
    clock.advance(100)
    await desk.resolve("ann", store.conversation_id(WEB, "c2"))
    assert store.handoff_of(WEB, "c3").agent_id == "ann"
    await desk.agent_reply("ann", c3, "Calling you now")
    await desk.resolve("ann", c3)

    r = metrics.compute(store.events, start=T0, end=T0 + 3600, now=T0 + 3600)
    (g,) = r["groups"]
    human = g["human"]
    assert human["handoff_reasons"] == {"customer_asked": 2, "left_message": 1}
    assert human["abandonment"]["numerator"] == 0


async def test_a_message_left_is_not_ended_by_the_customer_leaving_nor_by_idleness(
        store: FakeStore, clock: FakeClock) -> None:
    desk = await _desk(store, clock)
    assert (await _send(desk, "c1", "agent"))["queue_position"] == 1  # nobody online
    assert (await _send(desk, "c2", "agent"))["action"] == "queue_full"
    await _send(desk, "c2", "my message")
    c2 = store.conversation_id(WEB, "c2")
    await desk.close(WEB, "c2")
    clock.advance(7200)
    await desk.close_idle(1800)
    assert store.conversation_state(WEB, "c2").status is ConversationStatus.QUEUED
    assert store.conversation_state(WEB, "c1").status is ConversationStatus.RESOLVED  # c1 gave up
    await desk.create_agent("Ann", ["general"], 1, AgentStatus.ONLINE, agent_id="ann")
    assert store.handoff_of(WEB, "c2").agent_id == "ann"
    assert K.RESOLVED not in store.event_kinds(c2)


async def test_an_offer_ends_with_the_conversation(store: FakeStore, clock: FakeClock) -> None:
    desk = await _desk(store, clock)
    await _send(desk, "c1", "agent")
    assert (await _send(desk, "c2", "agent"))["action"] == "queue_full"
    await desk.close(WEB, "c2")
    assert store.conversation_state(WEB, "c2").message_offer is None
    resolved = _events_of(store, store.conversation_id(WEB, "c2"))[-1]
    assert resolved.kind is K.RESOLVED and "abandoned" not in resolved.data  # no handoff to abandon


def test_a_fallback_of_no_delay_or_a_kept_agent_decides_as_routing_does() -> None:
    from router.routing import Fallback

    gen = Agent("gen", "gen", frozenset({"general"}), 1, AgentStatus.ONLINE)
    bill = Agent("bill", "bill", frozenset({"billing"}), 1, AgentStatus.ONLINE, open_count=1)  # busy
    d = Dispatcher([gen, bill], [_handoff(1.0)], fallback={"billing": [Fallback("general", 0.0)]})
    # general takes billing at once: never full
    assert over_limit(d, "billing", 1, {"billing": 1}) is None
    d.fallback = {"billing": [Fallback("general", 30.0)]}
    assert over_limit(d, "billing", 1, {"billing": 1}) == QueueFull("billing", 1, 1)
    # with nobody on billing there is nobody to wait for: general takes it at once
    d3 = Dispatcher([gen], [_handoff(1.0)], fallback={"billing": [Fallback("general", 30.0)]})
    assert over_limit(d3, "billing", 1, {"billing": 1}) is None
    # An agent kept for a heavier handoff takes nobody new: full.
    ann = Agent("ann", "ann", frozenset({"tech"}), 2, AgentStatus.ONLINE, open_count=1)
    d2 = Dispatcher([ann])
    heavy = _handoff(1.0, "tech")
    heavy.weight = 2
    d2.request(heavy, 1.0)
    assert d2.kept == {"ann"}
    assert over_limit(d2, "tech", 1, {"tech": 1}) == QueueFull("tech", 1, 1)

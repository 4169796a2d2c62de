"""Conversation weights against capacity: the Dispatcher's rule, the Desk's
weights (VIP, heavy intents), the rules file and the knowledge base key."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from classifier.knowledge_base import KnowledgeBaseError, load_knowledge_base
from router.model import Agent, AgentStatus, Customer, Handoff, HandoffReason
from router.ports import FakeClock
from router.routing import Dispatcher, choose_agent
from router.rules import parse_rules
from router.services import Desk, DeskConfig, IncomingMessage
from tierdesk.errors import Conflict, InvalidInput
from tests.unit.fakes import FakeClassifier, FakeStore, Prediction

_ids = itertools.count(1)
WEB = "web"


def agent(aid: str, capacity: int, *, open_count: int = 0, skills: str = "general") -> Agent:
    return Agent(id=aid, name=aid, skills=frozenset(skills.split()), capacity=capacity,
                 status=AgentStatus.ONLINE, open_count=open_count)


def handoff(at: float, weight: int = 1, *, vip: bool = False, skill: str = "general") -> Handoff:
    n = next(_ids)
    return Handoff(id=f"ho_{n:04d}", conversation_id=f"conv_{n}", channel_id=WEB, seq=1,
                   reason=HandoffReason.CUSTOMER_ASKED, skill=skill, requested_at=at, vip=vip, weight=weight)


# ------------------------------------------------------------- the rule
def test_a_conversation_takes_its_weight_of_the_capacity() -> None:
    ann = agent("ann", capacity=3)
    d = Dispatcher([ann])
    heavy = handoff(1.0, weight=2)
    assert d.request(heavy, 1.0) is not None
    assert (ann.open_count, heavy.slots) == (2, 2)
    # Load + weight must stay within capacity: a second weight-2 waits, a weight-1 fits.
    assert d.request(handoff(2.0, weight=2), 2.0) is None
    assert choose_agent([ann], "general", None, 1) is ann
    assert choose_agent([ann], "general", None, 2) is None


def test_least_loaded_counts_slots_not_conversations() -> None:
    one_heavy = agent("heavy", capacity=4, open_count=3)  # one weight-3 conversation: 0.75
    two_light = agent("light", capacity=4, open_count=2)  # two conversations: 0.5
    assert choose_agent([one_heavy, two_light], "general") is two_light


def test_an_idle_agent_takes_a_conversation_heavier_than_their_capacity_and_is_full() -> None:
    solo = agent("solo", capacity=1)
    d = Dispatcher([solo])
    vip = handoff(1.0, weight=2, vip=True)
    assert d.request(vip, 1.0) is not None
    # It weighs the whole capacity: never waits for a slot that cannot exist.
    assert (solo.open_count, vip.slots) == (1, 1)
    assert d.request(handoff(2.0), 2.0) is None
    d.release(vip, 3.0)
    assert solo.open_count == 1  # the waiting weight-1 took the freed slot
    # A busy agent of capacity 1 does not take it.
    busy = agent("busy", capacity=1, open_count=1)
    assert choose_agent([busy], "general", None, 2) is None


def test_release_gives_back_what_was_taken_whatever_the_capacity_became() -> None:
    ann = agent("ann", capacity=4)
    d = Dispatcher([ann])
    h = handoff(1.0, weight=3)
    d.request(h, 1.0)
    d.update_agent("ann", 2.0, capacity=2)  # lowered below the load: kept
    assert ann.open_count == 3
    d.release(h, 3.0)
    assert ann.open_count == 0


def test_a_heavier_handoff_waiting_keeps_the_free_slots_of_its_skill() -> None:
    # Ann has 1 of 2 free; a weight-2 VIP waits ahead of a weight-1: the
    # weight-1 does not take Ann's free slot, or the VIP would wait for ever
    # behind a stream of light conversations.
    ann = agent("ann", capacity=2)
    d = Dispatcher([ann])
    first = handoff(0.0)
    d.request(first, 0.0)
    vip = handoff(1.0, weight=2, vip=True)
    light = handoff(2.0)
    assert d.request(vip, 1.0) is None
    assert d.request(light, 2.0) is None  # kept for the VIP
    assert d.drain(3.0) == []
    assert d.kept == {"ann"}
    assert d.request(handoff(4.0), 4.0) is None  # a new one does not jump in either
    made = d.release(first, 5.0)
    assert [m.handoff for m in made] == [vip]
    assert ann.open_count == 2 and d.kept == frozenset()


def test_agents_without_the_skill_are_not_kept() -> None:
    ann = agent("ann", capacity=2, open_count=1, skills="general")
    bob = agent("bob", capacity=2, open_count=1, skills="tech")
    d = Dispatcher([ann, bob], [handoff(1.0, weight=2), handoff(2.0, skill="tech")])
    made = d.drain(3.0)
    assert [(m.agent.id, m.handoff.skill) for m in made] == [("bob", "tech")]
    assert d.kept == {"ann"}


def test_a_named_transfer_needs_room_for_the_weight() -> None:
    ann = agent("ann", capacity=3, open_count=2)
    d = Dispatcher([ann])
    with pytest.raises(Conflict):
        d.assign_to(handoff(1.0, weight=2), ann, 1.0)
    d.assign_to(handoff(2.0, weight=1), ann, 2.0)
    assert ann.open_count == 3


# ------------------------------------------------------------- the Desk
@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


async def _desk(store: FakeStore, clock: FakeClock, **config: Any) -> Desk:
    classifier = FakeClassifier({
        "my dispute": Prediction(intent_id="dispute", confidence=0.9, skill="general", needs_human=True, weight=3),
    })
    desk = Desk(store, classifier, clock, DeskConfig(**config))
    await desk.start()
    return desk


async def _send(desk: Desk, conversation: str, text: str, *, vip: bool = False) -> dict[str, Any]:
    return await desk.receive_message(WEB, IncomingMessage(f"m{next(_ids)}", conversation,
                                                           Customer(f"cust-{conversation}", vip=vip), text))


async def test_a_vip_conversation_takes_the_vip_weight_in_memory_and_in_the_store(
        store: FakeStore, clock: FakeClock) -> None:
    store.seed_agent("ann", capacity=3)
    desk = await _desk(store, clock, vip_weight=2)
    assert (await _send(desk, "v1", "agent please", vip=True))["agent_id"] == "ann"
    assert (desk.agent("ann").open_count, store.open_count("ann")) == (2, 2)
    assert store.handoff_of(WEB, "v1").weight == 2
    assert desk.conversations_held() == {"ann": 1}
    # 2 + 2 > 3: the next VIP waits, and Ann's last slot is kept for it.
    assert (await _send(desk, "v2", "agent please", vip=True))["queue_position"] == 1
    assert desk.dispatcher.kept == {"ann"}
    assert (await _send(desk, "r1", "agent please"))["queue_position"] == 2
    await desk.resolve("ann", store.conversation_id(WEB, "v1"))
    assert store.handoff_of(WEB, "v2").agent_id == "ann"
    assert store.handoff_of(WEB, "r1").agent_id == "ann"  # the slot left over
    assert (desk.agent("ann").open_count, store.open_count("ann")) == (3, 3)
    view = desk.live(0.2)
    assert [(a["load"], a["capacity"], a["conversations"]) for a in view["agents"]] == [(3, 3, 2)]


async def test_a_heavy_intent_weighs_what_the_knowledge_base_says(store: FakeStore, clock: FakeClock) -> None:
    store.seed_agent("ann", capacity=4)
    desk = await _desk(store, clock, vip_weight=2)
    await _send(desk, "d1", "my dispute", vip=True)  # the heavier of the two counts
    assert store.handoff_of(WEB, "d1").weight == 3 and store.open_count("ann") == 3
    await _send(desk, "r1", "agent please")
    assert store.handoff_of(WEB, "r1").weight == 1 and store.open_count("ann") == 4


async def test_a_weight_survives_a_restart(store: FakeStore, clock: FakeClock) -> None:
    store.seed_agent("ann", capacity=4)
    desk = await _desk(store, clock, vip_weight=3)
    await _send(desk, "v1", "agent", vip=True)
    restarted = await _desk(store, clock, vip_weight=3)
    await restarted.resolve("ann", store.conversation_id(WEB, "v1"))
    assert (restarted.agent("ann").open_count, store.open_count("ann")) == (0, 0)


# ------------------------------------------------ the rules file, the KB
def test_rules_take_a_vip_weight_and_refuse_a_bad_one() -> None:
    assert parse_rules({"vip_weight": 2}).vip_weight == 2
    assert parse_rules({"skills": {}}).vip_weight == 1
    for bad in (0, 11, 1.5, True, "2"):
        with pytest.raises(InvalidInput, match="vip_weight"):
            parse_rules({"vip_weight": bad})


KB = """
intents:
  - id: dispute
    needs_human: true
    weight: {weight}
    examples: [I dispute this charge, this charge is wrong, chargeback please]
"""


def test_the_knowledge_base_takes_a_weight_per_intent(tmp_path: Path) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text(KB.format(weight=2))
    kb = load_knowledge_base(path)
    assert kb.get("dispute").weight == 2  # type: ignore[union-attr]
    before = kb.content_hash()
    path.write_text(KB.format(weight=3))
    assert load_knowledge_base(path).content_hash() == before  # read at prediction time, like skills
    for bad in ("0", "11", "1.5", "heavy", "true"):
        path.write_text(KB.format(weight=bad))
        with pytest.raises(KnowledgeBaseError, match="weight must be a whole number"):
            load_knowledge_base(path)

"""The human tier when people are away or slow (router/attendance.py), through
the Desk's use cases on the fake clock: an agent going offline or losing
presence, reservations nobody takes up, and the metrics across the moves."""

from __future__ import annotations

from typing import Any

import pytest

from router import metrics
from router.attendance import AttendanceRules
from router.metrics import SLA
from router.model import AgentStatus, Customer
from router.ports import FakeClock
from router.services import Desk, DeskConfig, IncomingMessage
from router.tracker import EventKind
from tests.unit.fakes import FakeClassifier, FakeStore, RecordingNotifier, needs_person

WEB = "web"
REFUND = "refund my order"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def make_desk(store: FakeStore, clock: FakeClock):  # type: ignore[no-untyped-def]
    async def make(**rules: Any) -> Desk:
        desk = Desk(store, FakeClassifier({REFUND: needs_person("refund", "billing")}), clock,
                    DeskConfig(attendance=AttendanceRules(**rules)), notifier=RecordingNotifier())
        await desk.start()
        return desk

    return make


_n = iter(range(1, 10_000))


async def handoff(desk: Desk, conversation: str) -> dict[str, Any]:
    msg = IncomingMessage(f"m{next(_n)}", conversation, Customer(f"cust-{conversation}"), REFUND)
    return await desk.receive_message(WEB, msg)


async def forward(desk: Desk, conversation: str, text: str = "hello?") -> dict[str, Any]:
    msg = IncomingMessage(f"m{next(_n)}", conversation, Customer(f"cust-{conversation}"), text)
    return await desk.receive_message(WEB, msg)


def conv_id(store: FakeStore, conversation: str) -> str:
    return store.conversation_id(WEB, conversation)


def requeued(store: FakeStore) -> list[tuple[str | None, str]]:
    return [(e.agent_id, e.data["reason"]) for e in store.events if e.kind is EventKind.REQUEUED]


async def test_going_offline_requeues_what_the_agent_never_answered_and_keeps_the_rest(make_desk, store,
                                                                                       clock) -> None:
    desk = await make_desk()
    await desk.create_agent("Ann", ["billing"], 3, AgentStatus.ONLINE, agent_id="ann")
    for c in ("c1", "c2"):
        assert (await handoff(desk, c))["agent_id"] == "ann"
    clock.advance(5)
    await desk.agent_reply("ann", conv_id(store, "c1"), "On it")
    await desk.update_agent("ann", status=AgentStatus.OFFLINE)
    assert requeued(store) == [("ann", "agent_offline")]
    assert [c.external_id for c in await desk.open_conversations("ann")] == ["c1"]
    assert [h.conversation_id for h in desk.queue()] == [conv_id(store, "c2")]
    await desk.create_agent("Bob", ["billing"], 3, AgentStatus.ONLINE, agent_id="bob")
    assert (await forward(desk, "c2")) == {"action": "forwarded", "agent_id": "bob"}


async def test_answered_ones_go_too_when_configured(make_desk, store, clock) -> None:
    desk = await make_desk(requeue_answered_on_leave=True)
    await desk.create_agent("Ann", ["billing"], 3, AgentStatus.ONLINE, agent_id="ann")
    await handoff(desk, "c1")
    await desk.agent_reply("ann", conv_id(store, "c1"), "On it")
    await desk.update_agent("ann", status=AgentStatus.OFFLINE)
    assert requeued(store) == [("ann", "agent_offline")]
    assert await desk.open_conversations("ann") == []


async def test_lost_presence_requeues_and_nothing_is_assigned_until_the_agent_is_back(make_desk, store,
                                                                                        clock) -> None:
    desk = await make_desk()
    await desk.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE, agent_id="ann")
    await handoff(desk, "c1")
    assert await desk.presence_lost("ann") == 1
    assert await desk.presence_lost("ann") == 0  # once
    assert requeued(store) == [("ann", "presence_lost")]
    # still "online" as the agent set it, but gone: nothing is assigned to them
    assert desk.agent("ann").status is AgentStatus.ONLINE
    assert (await handoff(desk, "c2"))["agent_id"] is None
    assert len(desk.queue()) == 2
    await desk.presence_back("ann")
    assert desk.queue() == []
    assert {c.external_id for c in await desk.open_conversations("ann")} == {"c1", "c2"}


async def test_a_reservation_not_taken_up_moves_to_the_next_agent(make_desk, store, clock) -> None:
    desk = await make_desk(reservation_timeout_seconds=60, reservation_timeout_by_skill={"vip": 20})
    await desk.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE, agent_id="ann")
    assert (await handoff(desk, "c1"))["agent_id"] == "ann"
    await desk.create_agent("Bob", ["billing"], 2, AgentStatus.ONLINE, agent_id="bob")
    clock.advance(59)
    assert await desk.expire_reservations() == 0  # not before its time
    clock.advance(1)
    assert await desk.expire_reservations() == 1
    assert requeued(store) == [("ann", "reservation_timeout")]
    assert (await forward(desk, "c1")) == {"action": "forwarded", "agent_id": "bob"}
    assert desk.agent("ann").missed_reservations == 1 and desk.agent("ann").status is AgentStatus.ONLINE
    # bob answers in time: his reservation stands
    clock.advance(30)
    await desk.agent_reply("bob", conv_id(store, "c1"), "Hi, Bob here")
    clock.advance(600)
    assert await desk.expire_reservations() == 0


async def test_two_lapsed_reservations_in_a_row_set_the_agent_away(make_desk, store, clock) -> None:
    desk = await make_desk(reservation_timeout_seconds=60, misses_before_away=2)
    await desk.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE, agent_id="ann")
    await handoff(desk, "c1")
    clock.advance(60)
    # nobody else could take it: it stays offered to ann, on a new clock
    assert await desk.expire_reservations() == 0
    assert desk.agent("ann").missed_reservations == 1
    assert [c.external_id for c in await desk.open_conversations("ann")] == ["c1"]
    clock.advance(59)
    assert await desk.expire_reservations() == 0
    clock.advance(1)
    assert await desk.expire_reservations() == 1
    assert desk.agent("ann").status is AgentStatus.AWAY
    assert desk.agent("ann").missed_reservations == 2
    assert await desk.open_conversations("ann") == []
    assert [e.data.get("agent_set_away") for e in store.events if e.kind is EventKind.REQUEUED] == [True]
    # a reply resets the count
    await desk.update_agent("ann", status=AgentStatus.ONLINE)
    clock.advance(5)
    await desk.agent_reply("ann", conv_id(store, "c1"), "Sorry, here now")
    assert desk.agent("ann").missed_reservations == 0


async def test_reservations_off(make_desk, store, clock) -> None:
    desk = await make_desk(reservation_timeout_seconds=0)
    await desk.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE, agent_id="ann")
    await handoff(desk, "c1")
    clock.advance(3600)
    assert await desk.expire_reservations() == 0


async def test_queue_wait_and_first_response_stay_right_across_the_move(make_desk, store, clock) -> None:
    """metrics.md: queue wait is to the first assignment; first response is
    the first agent reply after the handoff, whoever sends it."""
    t0 = clock.now()
    desk = await make_desk(reservation_timeout_seconds=60)
    await desk.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE, agent_id="ann")
    await desk.create_agent("Bob", ["billing"], 1, AgentStatus.OFFLINE, agent_id="bob")
    await handoff(desk, "c1")  # to ann at once
    clock.advance(60)
    await desk.update_agent("bob", status=AgentStatus.ONLINE)
    await desk.expire_reservations()  # moves to bob
    clock.advance(15)
    await desk.agent_reply("bob", conv_id(store, "c1"), "Hi")
    clock.advance(100)
    report = metrics.compute(store.events, start=t0, end=clock.now(), now=clock.now(), sla=SLA())
    human = report["groups"][0]["human"]
    assert human["queue_wait"]["count"] == 1 and human["queue_wait"]["sum"] == 0.0
    assert human["first_response_time"]["count"] == 1 and human["first_response_time"]["sum"] == 75.0

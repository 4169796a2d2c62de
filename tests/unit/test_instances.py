"""Two Desks over one store, as two instances over one database: each is told
what the other's commits changed, as the PostgreSQL relay tells them: by id
only (as instances of earlier versions send it, and what does not fit in a
notice), or with each conversation as committed (storage/notify.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest

from router.changes import Changes
from router.model import AgentStatus, ConversationStatus, Customer
from router.ports import FakeClock
from router.services import DECISIONS_PER_REQUEST, Desk, IncomingMessage
from storage.notify import committed_elsewhere, sync_notices
from storage.rows import BatchRows, ChangeRows
from tests.unit.fakes import FakeClassifier, FakeStore, faq, needs_person
from tierdesk.errors import Unavailable

WEB = "web"
REFUND = "refund my order"
RESET = "how do I reset my password"


class RelayedStore:
    """One instance's view of the shared store: after each commit, the other
    instances hear which conversations and agents changed."""

    def __init__(self, shared: FakeStore, carrying: bool) -> None:
        self.shared = shared
        self.carrying = carrying  # the conversations as committed, not only their ids
        self.peers: list[Desk] = []
        self.relaying = True
        self.gate: asyncio.Event | None = None  # set: the next commit waits for it
        self.landed_gate: asyncio.Event | None = None  # set: the next commit, once landed, waits for it
        self.reads: list[str] = []  # the conversations read by id

    async def commit(self, changes: Changes) -> None:
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        await self.shared.commit(changes)
        try:
            self._relay(changes)
        finally:
            if self.landed_gate is not None:
                gate, self.landed_gate = self.landed_gate, None
                await gate.wait()

    def _relay(self, changes: Changes) -> None:
        if not self.relaying:
            return
        agents = sorted({*changes.load_deltas, *changes.agents, *(a.id for a in changes.new_agents)})
        if self.carrying:
            for notice in sync_notices("this", BatchRows.of([ChangeRows.of(changes)]), agents):
                message = orjson.loads(notice)
                for peer in self.peers:
                    peer.changed_elsewhere(message["conversations"], message["held"], message["agents"],
                                           committed_elsewhere(message, peer.keeps))
            return
        held = [s.id for s in changes.conversations.values()
                if s.status in (ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)]
        for peer in self.peers:
            peer.changed_elsewhere(list(changes.conversations), held, agents)

    async def load_conversations_by_id(self, ids: Any) -> Any:
        self.reads += ids
        return await self.shared.load_conversations_by_id(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shared, name)


@pytest.fixture
def shared() -> FakeStore:
    return FakeStore()


def _pair(shared: FakeStore, clock: FakeClock, carrying: bool):  # type: ignore[no-untyped-def]
    classifier = FakeClassifier({REFUND: needs_person("refund", "billing"),
                                 RESET: faq("reset_password", "Use the link.", skill="account")})

    async def make() -> tuple[Desk, Desk, RelayedStore, RelayedStore]:
        views = RelayedStore(shared, carrying), RelayedStore(shared, carrying)
        one, two = (Desk(v, classifier, clock) for v in views)  # type: ignore[arg-type]
        views[0].peers.append(two)
        views[1].peers.append(one)
        await one.start()
        await two.start()
        return one, two, *views

    return make


@pytest.fixture(params=["ids", "committed"])
def instances(request: pytest.FixtureRequest, shared: FakeStore, clock: FakeClock):  # type: ignore[no-untyped-def]
    return _pair(shared, clock, carrying=request.param == "committed")


@pytest.fixture
def carrying(shared: FakeStore, clock: FakeClock):  # type: ignore[no-untyped-def]
    """Two instances whose notices carry the conversations as committed."""
    return _pair(shared, clock, carrying=True)


async def settled(*desks: Desk) -> None:
    """Let the desks finish reading what the other changed."""
    for desk in desks:
        while desk._refresher is not None and not desk._refresher.done():
            await desk._refresher


async def send(desk: Desk, conversation: str, text: str, message_id: str) -> dict[str, Any]:
    msg = IncomingMessage(message_id, conversation, Customer(f"cust-{conversation}"), text)
    return await desk.receive_message(WEB, msg)


async def test_an_agent_created_on_one_instance_takes_handoffs_on_the_other(instances, shared) -> None:
    one, two, *_ = await instances()
    ann = await one.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE)
    await settled(two)
    assert two.agent(ann.id).status is AgentStatus.ONLINE
    r = await send(two, "c1", REFUND, "m1")
    assert r["agent_id"] == ann.id
    await settled(one)
    assert one.agent(ann.id).open_count == 1
    assert shared.attempts == len(shared.commits)  # nothing was refused


async def test_a_handoff_waiting_on_one_instance_is_routed_by_the_other(instances, shared) -> None:
    one, two, *_ = await instances()
    ann = await one.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE)
    first = await send(one, "c1", REFUND, "m1")
    second = await send(one, "c2", REFUND, "m2")
    assert first["agent_id"] == ann.id and second["queue_position"] == 1
    await settled(two)
    # The other instance holds the queue and ann's load as they are...
    assert [h.conversation_id for h in two.queue()] == [shared.conversation_id(WEB, "c2")]
    assert two.agent(ann.id).open_count == 1
    # ...so when ann resolves the first conversation there, the waiting
    # handoff goes to her at once, from that instance.
    await two.resolve(ann.id, shared.conversation_id(WEB, "c1"))
    assert shared.handoff_of(WEB, "c2").agent_id == ann.id
    await settled(one)
    assert one.queue() == []
    assert one.agent(ann.id).open_count == 1
    assert [c.external_id for c in await one.open_conversations(ann.id)] == ["c2"]
    assert shared.attempts == len(shared.commits)


async def test_a_conversation_changed_elsewhere_is_decided_on_its_new_state(instances, shared) -> None:
    one, two, *_ = await instances()
    await one.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE)
    await send(two, "c1", RESET, "m1")  # two holds c1 in the bot tier
    await send(one, "c1", REFUND, "m2")  # one hands it off
    await settled(two)
    # Two takes the next message as the human tier's, not the bot's.
    r = await send(two, "c1", RESET, "m3")
    assert r["action"] == "forwarded"
    assert shared.conversation_state(WEB, "c1").version == 3
    assert shared.attempts == len(shared.commits)


async def test_a_decision_on_a_stale_copy_is_refused_and_decided_again(instances, shared) -> None:
    one, two, one_view, _ = await instances()
    await send(two, "c1", RESET, "m1")
    one_view.relaying = False  # the news of one's change never reaches two
    await send(one, "c1", RESET, "m2")
    r = await send(two, "c1", RESET, "m3")
    # Refused (the refused change wrote nothing), two read the conversation
    # afresh and decided again, on it as one left it: two bot answers
    # already (two's own copy counted one), so this one goes to a person.
    assert shared.attempts == len(shared.commits) + 1 and two.decided_again == 1
    assert r["action"] == "handoff"
    state = shared.conversation_state(WEB, "c1")
    assert (state.version, state.status) == (3, ConversationStatus.QUEUED)


async def test_an_agent_reply_on_a_stale_copy_is_decided_again(instances, shared) -> None:
    one, two, one_view, _ = await instances()
    ann = await one.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE)
    await send(one, "c1", REFUND, "m1")  # ann takes c1
    await settled(two)
    conversation = shared.conversation_id(WEB, "c1")
    one_view.relaying = False  # two never hears of the customer's next message
    await send(one, "c1", "are you there?", "m2")
    reply = await two.agent_reply(ann.id, conversation, "Yes, looking at it now.")
    assert two.decided_again == 1 and shared.attempts == len(shared.commits) + 1
    assert [m.id for m in shared.t.messages if m.sender.value == "agent"] == [reply.id]
    assert shared.conversation_state(WEB, "c1").version == 3  # m1, m2, the reply: each once


async def test_a_request_refused_every_time_it_is_decided_is_unavailable(instances, shared) -> None:
    one, two, _, two_view = await instances()
    await send(two, "c1", RESET, "m1")
    refusals = 0
    commit = shared.commit

    async def stale_every_time(changes: Changes) -> None:
        nonlocal refusals
        # Another instance changes the conversation just before each commit.
        state = shared.t.conversations[shared.conversation_id(WEB, "c1")]
        shared.t.conversations[state.id] = dataclasses.replace(state, version=state.version + 1)
        refusals += 1
        await commit(changes)

    shared.commit = stale_every_time  # type: ignore[method-assign]
    with pytest.raises(Unavailable):
        await send(two, "c1", RESET, "m2")
    assert refusals == DECISIONS_PER_REQUEST and two.decided_again == DECISIONS_PER_REQUEST - 1


async def test_a_load_taken_elsewhere_counts_while_this_instance_has_its_own_on_the_way(instances, shared) -> None:
    one, two, _, two_view = await instances()
    ann = await one.create_agent("Ann", ["billing"], 2, AgentStatus.ONLINE)
    await settled(two)
    # Two gives ann a conversation; its commit is slow to land.
    two_view.gate = gate = asyncio.Event()
    slow = asyncio.create_task(send(two, "c1", REFUND, "m1"))
    await asyncio.sleep(0)
    assert two.agent(ann.id).open_count == 1
    # Meanwhile one gives her another: her second and last slot.
    assert (await send(one, "c2", REFUND, "m2"))["agent_id"] == ann.id
    await settled(two)
    # Two counts both: a handoff it routed now would wait rather than take a
    # third slot the database would refuse.
    assert two.agent(ann.id).open_count == 2
    gate.set()
    assert (await slow)["agent_id"] == ann.id
    await settled(one, two)
    assert shared.attempts == len(shared.commits)
    assert shared.open_count(ann.id) == 2 and two.agent(ann.id).open_count == 2


async def test_a_conversation_started_on_both_instances_at_once_is_stored_once(instances, shared) -> None:
    one, two, _, two_view = await instances()
    # Two takes the customer's first message as a new conversation; its
    # commit is slow to land. Meanwhile the customer's next message, through
    # one, starts the same conversation there and hands it to a person.
    two_view.gate = gate = asyncio.Event()
    slow = asyncio.create_task(send(two, "c1", RESET, "m1"))
    await asyncio.sleep(0)
    assert (await send(one, "c1", REFUND, "m2"))["queue_position"] == 1
    await settled(two)
    gate.set()
    # The database holds one conversation per channel and id: one's. Two's
    # creation is refused, and the message decided again on one's
    # conversation, queued: it waits with it.
    assert (await slow)["action"] == "handoff"
    assert two.decided_again == 1
    assert [h.conversation_id for h in two.queue()] == [shared.conversation_id(WEB, "c1")]
    assert len(shared.t.conversations) == 1
    # One copy of it in two's memory: the agent who comes online gets it,
    # and the customer's next message goes to her.
    ann = await two.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE)
    assert shared.handoff_of(WEB, "c1").agent_id == ann.id
    assert (await send(two, "c1", "still there?", "m3")) == {"action": "forwarded", "agent_id": ann.id}


def _as_stored(c: Any) -> tuple[Any, ...]:
    return (c.id, c.external_id, c.customer, c.status, c.version, c.updated_at, c.bot_streak, c.handoff_count,
            c.handoff, c.rating, c.message_offer, c.tally.snapshot())


async def test_conversations_carried_as_committed_are_taken_without_a_read(carrying, shared) -> None:
    one, two, _, two_view = await carrying()
    await send(one, "c1", REFUND, "m1")
    await send(one, "c2", REFUND, "m2")
    await send(one, "c1", "are you there?", "m3")  # a change that leaves the handoff as it was
    await settled(two)
    assert two_view.reads == []
    for cid in (shared.conversation_id(WEB, "c1"), shared.conversation_id(WEB, "c2")):
        [stored] = await shared.load_conversations_by_id([cid])
        assert _as_stored(two._by_id[cid]) == _as_stored(stored)
    assert [h.conversation_id for h in two.queue()] == [shared.conversation_id(WEB, c) for c in ("c1", "c2")]
    # Routed from there: the agent who comes online on two gets the first.
    ann = await two.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE)
    assert shared.handoff_of(WEB, "c1").agent_id == ann.id
    await settled(one)
    assert [c.external_id for c in await one.open_conversations(ann.id)] == ["c1"]
    assert shared.attempts == len(shared.commits)  # nothing was decided on a stale copy


async def test_a_conversation_whose_earlier_change_was_missed_is_read_instead(carrying, shared) -> None:
    one, two, one_view, two_view = await carrying()
    await send(one, "c1", REFUND, "m1")
    await settled(two)
    one_view.relaying = False  # two never hears that ann took c1...
    ann = await one.create_agent("Ann", ["billing"], 1, AgentStatus.ONLINE)
    one_view.relaying = True
    await send(one, "c1", "are you there?", "m2")  # ...and this change leaves the handoff as ann took it
    await settled(two)
    cid = shared.conversation_id(WEB, "c1")
    assert two_view.reads == [cid]
    [stored] = await shared.load_conversations_by_id([cid])
    assert _as_stored(two._by_id[cid]) == _as_stored(stored)
    assert two._by_id[cid].handoff.agent_id == ann.id and two.queue() == []


async def test_a_change_made_elsewhere_over_ours_still_on_the_way_is_read_once_ours_is_back(instances, shared) -> None:
    one, two, _, two_view = await instances()
    await send(one, "c1", RESET, "m1")
    await settled(two)
    # Two answers the customer's next message: it lands, and one hears of
    # it, but two has not yet seen its commit come back...
    two_view.landed_gate = gate = asyncio.Event()
    slow = asyncio.create_task(send(two, "c1", RESET, "m2"))
    while two_view.landed_gate is not None:  # taken once the commit has landed
        await asyncio.sleep(0)
    assert shared.conversation_state(WEB, "c1").version == 2
    await settled(one)
    # ...when one hands the conversation off, over two's change.
    assert (await send(one, "c1", REFUND, "m3"))["action"] == "handoff"
    await settled(two)
    gate.set()
    assert (await slow)["action"] == "answer"
    await settled(two)
    # Two holds the conversation as one left it: waiting for a person.
    assert [h.conversation_id for h in two.queue()] == [shared.conversation_id(WEB, "c1")]
    assert two._by_id[shared.conversation_id(WEB, "c1")].version == 3
    assert shared.attempts == len(shared.commits)

"""Each change stores the conversation's metric tally with it: an instance
that reads a conversation another one changed (or its own after a restart)
reads no events, and the stored rollups stay exactly what the replay of the
events computes. Two Desks over one database, as two instances or workers,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import event, update

from router.changes import Changes
from router.metrics import SLA
from router.model import AgentStatus, ConversationStatus, Customer
from router.ports import FakeClock
from router.rollups import ConversationTally, tally_events
from router.services import Desk, IncomingMessage
from storage import tables as t
from storage.engine import create_engines
from storage.notify import committed_elsewhere, sync_notices
from storage.rows import BatchRows, ChangeRows
from storage.store import SqlStore
from tests.unit.fakes import FakeClassifier, faq, needs_person

REFUND, RESET = "refund my order", "how do I reset my password"


class Instance:
    """One instance: its own store over the shared database, told (as the
    PostgreSQL relay tells it) what the other's commits changed; and every
    statement it sends that reads the events table."""

    def __init__(self, db_url: str, clock: FakeClock, carrying: bool = False) -> None:
        self.carrying = carrying  # the relay carries conversations as committed, not only their ids
        self.read_by_id: list[str] = []
        self.engines = create_engines(db_url)
        self.store = SqlStore(self.engines)
        classifier = FakeClassifier({REFUND: needs_person("refund", "billing"),
                                     RESET: faq("reset_password", "Use the link.", skill="account")})
        self.desk = Desk(self, classifier, clock)  # type: ignore[arg-type]
        self.peer: Instance | None = None
        self.event_reads: list[str] = []
        event.listen(self.engines.read.sync_engine, "before_cursor_execute", self._saw)

    def _saw(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM events" in statement:
            self.event_reads.append(statement)

    async def commit(self, changes: Changes) -> None:
        await self.store.commit(changes)
        held = [s.id for s in changes.conversations.values()
                if s.status in (ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)]
        agents = sorted({*changes.load_deltas, *changes.agents, *(a.id for a in changes.new_agents)})
        if self.peer is None:
            return
        if not self.carrying:
            self.peer.desk.changed_elsewhere(list(changes.conversations), held, agents)
            return
        for notice in sync_notices("this", BatchRows.of([ChangeRows.of(changes)]), agents):
            message = orjson.loads(notice)
            self.peer.desk.changed_elsewhere(message["conversations"], message["held"], message["agents"],
                                             committed_elsewhere(message, self.peer.desk.keeps))

    async def load_conversations_by_id(self, ids: Any) -> Any:
        self.read_by_id += ids
        return await self.store.load_conversations_by_id(ids)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def settled(self) -> None:
        while self.desk._refresher is not None and not self.desk._refresher.done():
            await self.desk._refresher

    async def close(self) -> None:
        await self.desk.stop_refreshing()
        await self.store.close()
        await self.engines.dispose()


async def started(db_url: str, clock: FakeClock) -> Instance:
    i = Instance(db_url, clock)
    await i.store.prepare()
    await i.desk.start()
    return i


@pytest.fixture(params=["ids", "committed"])
async def pair(request: pytest.FixtureRequest, pg_url: str) -> AsyncIterator[tuple[Instance, Instance, FakeClock]]:
    """Two instances over one PostgreSQL (SQLite serves one process), told of
    each other's changes by id, or with the conversations as committed."""
    clock = FakeClock(1_767_225_600.0)
    carrying = request.param == "committed"
    one, two = Instance(pg_url, clock, carrying), Instance(pg_url, clock, carrying)
    one.peer, two.peer = two, one
    for i in (one, two):
        await i.store.prepare()
        await i.desk.start()
    yield one, two, clock
    for i in (one, two):
        await i.close()


async def traffic(clock: FakeClock, seed: int, *instances: Instance) -> None:
    """Customers and agents on the instances at random: FAQ answers,
    handoffs, replies, resolutions, ratings."""
    rng = random.Random(seed)
    one = instances[0]
    agents = [(await one.desk.create_agent(f"agent {n}", ["billing", "account", "general"], 2,
                                           AgentStatus.ONLINE)).id for n in range(3)]
    for i in instances:
        await i.settled()
    n = 0
    started: set[str] = set()
    for _ in range(160):
        clock.advance(rng.expovariate(1 / 15))
        inst = rng.choice(instances)
        roll = rng.random()
        conv = f"c{rng.randrange(12)}"
        if roll < 0.5:
            n += 1
            text = rng.choice([REFUND, RESET, "something else"])
            await inst.desk.receive_message("web", IncomingMessage(f"m{n}", conv, Customer(f"u{conv}"), text))
            started.add(conv)
        elif roll < 0.93:
            agent = rng.choice(agents)
            mine = await inst.desk.open_conversations(agent)
            if mine:
                target = rng.choice(mine)
                if roll < 0.85:
                    await inst.desk.agent_reply(agent, target.id, "on it")
                else:
                    await inst.desk.resolve(agent, target.id)
        elif conv in started:
            await inst.desk.feedback("web", conv, rng.randint(1, 5), rng.random() < 0.5)
        for i in instances:
            await i.settled()


def replayed(events: list[Any]) -> dict[str, ConversationTally]:
    tallies, _ = tally_events(events, SLA())
    return tallies


async def test_another_instances_changes_are_read_without_events_and_rollups_equal_the_replay(pair) -> None:  # type: ignore[no-untyped-def]
    one, two, clock = pair
    one.event_reads.clear()
    two.event_reads.clear()
    await traffic(clock, 3, one, two)

    # Each instance read what the other changed (the relay), and never an
    # event; or took it from the relay, reading nothing back.
    assert one.event_reads == [] and two.event_reads == []
    if one.carrying:
        assert one.read_by_id == [] and two.read_by_id == []
    else:
        assert one.read_by_id and two.read_by_id
    events = await one.store.events_between(0, clock.now() + 1)
    handed_off = {e.conversation_id for e in events if e.kind.value == "handoff_requested"}
    assert len(handed_off) >= 5

    # The rollups both instances wrote add up to the replay of the events.
    _, deltas = tally_events(events, SLA())
    counters, histograms = await one.store.rollup_rows(0, clock.now() + 7200)
    stored = {(h, ch, name): v for h, ch, name, v in counters if v}
    expected = {k: v for k, v in deltas.values.items() if v}
    assert stored.keys() == expected.keys()
    for k, v in expected.items():
        assert stored[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
    stored_hist: dict[tuple[float, str, str], dict[int, int]] = {}
    for h, ch, stat, hist in histograms:  # a row per writer
        bins = stored_hist.setdefault((h, ch, stat), {})
        for b in hist.counts.nonzero()[0]:
            bins[int(b)] = bins.get(int(b), 0) + int(hist.counts[b])
    assert {k: {b: n for b, n in d.bins.items() if n} for k, d in deltas.hist.items()} == {
        k: v for k, v in stored_hist.items() if v}

    # Every conversation as loaded carries the tally the replay ends in.
    want = replayed(events)
    loaded = await two.store.load_conversations_by_id(want)
    assert len(loaded) == len(want)
    for c in loaded:
        assert c.tally.snapshot() == want[c.id].snapshot(), c.id


async def test_a_restarted_instance_reads_no_events_and_replays_rows_stored_without_a_tally(db_url: str) -> None:
    clock = FakeClock(1_767_225_600.0)
    first = await started(db_url, clock)
    try:
        await traffic(clock, 4, first)
        events = await first.store.events_between(0, clock.now() + 1)
    finally:
        await first.close()
    want = replayed(events)
    assert sum(1 for c in want.values() if c.handoff is not None and not c.handoff.ended) >= 2

    again = await started(db_url, clock)  # reads the open conversations
    try:
        keys = {(e.channel_id, e.conversation_id) for e in events}
        by_key = [await again.store.load_conversation("web", c.external_id)
                  for c in await again.store.load_conversations_by_id(want)]
        assert again.event_reads == []
        assert len(by_key) == len(want) == len(keys)
        for c in by_key:
            assert c is not None and c.tally.snapshot() == want[c.id].snapshot(), c.id

        async with again.engines.writing() as conn:  # as rows written before migration 0022 are
            await conn.execute(update(t.conversations).values(tally=None))
        loaded = await again.store.load_conversations_by_id(want)
        assert again.event_reads, "the events were not read"
        for c in loaded:
            assert c.tally.snapshot() == want[c.id].snapshot(), c.id
    finally:
        await again.close()


def test_a_snapshot_this_version_does_not_know_is_refused() -> None:
    tally = ConversationTally("web")
    snap = orjson.loads(orjson.dumps(tally.snapshot()))
    assert ConversationTally.restore("web", snap).snapshot() == tally.snapshot()
    assert ConversationTally.restore("web", [99, *snap[1:]]) is None
    assert ConversationTally.restore("web", {"format": 1}) is None

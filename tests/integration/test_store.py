"""The SQL store on a real SQLite file and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from sqlalchemy import select, update

from router.changes import AgentProfile, Changes, MessageRecord, OutboxItem
from router.model import (
    Agent,
    AgentStatus,
    Conversation,
    ConversationStatus,
    Customer,
    Handoff,
    HandoffReason,
    Sender,
    Tier,
)
from router.ports import DuplicateMessage
from router.rollups import bin_of, hour_of
from router.tracker import EventKind, TrackerEvent
from storage.engine import create_engines
from storage import tables as t
from storage.store import SqlStore
from storage.tables import metadata
from tierdesk.errors import CapacityExceeded, ChangeRefused, Unavailable, Unstorable


@pytest.fixture
async def store(db_url: str):  # type: ignore[no-untyped-def]
    engines = create_engines(db_url)
    s = SqlStore(engines)
    yield s
    await s.close()
    await engines.dispose()


def sync_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_migrations_match_the_schema_the_code_uses(db_url: str) -> None:
    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def inbound(conv_id: str, external: str, at: float = 1.0) -> MessageRecord:
    return MessageRecord(f"msg-{external}", "ch", conv_id, Sender.CUSTOMER, "hi", at, external_id=external,
                         tier=Tier.BOT, response={"action": "answer", "n": external})


def conversation(conv_id: str, external: str, status: ConversationStatus = ConversationStatus.BOT,
                 handoff: Handoff | None = None) -> Conversation:
    return Conversation(id=conv_id, channel_id="ch", external_id=external, customer=Customer("u", None, False),
                        created_at=1.0, updated_at=1.0, status=status, handoff=handoff)


def message_changes(conv_id: str, external: str, message: str) -> Changes:
    c = Changes()
    c.inbound = inbound(conv_id, message)
    c.conversation(conversation(conv_id, external))
    c.event(TrackerEvent(EventKind.MESSAGE_RECEIVED, 1.0, "ch", conv_id, message_id=f"msg-{message}",
                         data={"tier": "bot"}))
    return c


async def test_concurrent_commits_share_batches_and_all_land(store: SqlStore) -> None:
    await asyncio.gather(*(store.commit(message_changes(f"c{i}", f"x{i}", f"m{i}")) for i in range(300)))
    assert await store.count("messages") == 300
    assert await store.count("events") == 300
    assert await store.count("conversations") == 300
    # Fewer transactions than changes: that is the point of group commit.
    assert store.committer.batches < 300


async def test_a_repeated_inbound_message_is_refused_whole(store: SqlStore) -> None:
    await store.commit(message_changes("c1", "x1", "m1"))
    again = message_changes("c1", "x1", "m1")
    with pytest.raises(DuplicateMessage):
        await store.commit(again)
    assert await store.count("events") == 1
    assert await store.stored_answer("ch", "m1") == {"action": "answer", "n": "m1"}


async def test_capacity_is_enforced_by_the_database(store: SqlStore) -> None:
    create = Changes()
    create.new_agents.append(AgentProfile("a1", "Ann", frozenset({"billing"}), 1, "online", 0.0))
    await store.commit(create)
    failures: list[int] = []
    store.committer.on_failure(lambda: failures.append(1))
    first = Changes()
    first.load("a1", +1)
    await store.commit(first)
    over = message_changes("c9", "x9", "m9")
    over.load("a1", +1)
    with pytest.raises(ChangeRefused):
        await store.commit(over)
    assert failures == []  # a refusal, not a failure of the database: nothing else is dropped
    # Nothing of the refused change was written.
    assert await store.count("messages") == 0
    [agent] = await store.load_agents()
    assert agent.open_count == 1


async def test_one_open_handoff_per_conversation_is_enforced(store: SqlStore) -> None:
    def handoff(hid: str, seq: int) -> Handoff:
        return Handoff(id=hid, conversation_id="c1", channel_id="ch", seq=seq, reason=HandoffReason.OTHER,
                       skill="general", requested_at=1.0)

    ok = Changes()
    ok.handoff(handoff("h1", 1))
    await store.commit(ok)
    second = Changes()
    second.handoff(handoff("h2", 2))
    with pytest.raises(ChangeRefused):
        await store.commit(second)
    assert await store.count("handoffs") == 1


async def test_a_change_decided_on_an_older_version_of_a_conversation_is_refused(store: SqlStore) -> None:
    await store.commit(message_changes("c1", "x1", "m1"))
    # Two instances hold the same conversation; the first to commit wins.
    one = await store.load_conversation_by_id("c1")
    two = await store.load_conversation_by_id("c1")
    assert one is not None and two is not None and one.version == two.version == 1
    first = Changes()
    one.bot_streak = 5
    first.conversation(one)
    await store.commit(first)
    second = Changes()
    two.status = ConversationStatus.RESOLVED
    second.conversation(two)
    second.message(MessageRecord("msg-late", "ch", "c1", Sender.BOT, "late", 2.0))
    with pytest.raises(ChangeRefused):
        await store.commit(second)
    # Nothing of the refused change was written; the winner's stands.
    stored = await store.load_conversation_by_id("c1")
    assert stored is not None
    assert (stored.version, stored.bot_streak, stored.status) == (2, 5, ConversationStatus.BOT)
    assert await store.count("messages") == 1
    # One unit of work moves the version by one, however often it records
    # the conversation; several changes of it in one batch all land.
    stored.bot_streak = 0
    third = Changes()
    third.conversation(stored)
    third.conversation(stored)
    fourth = Changes()
    fourth.conversation(stored)
    await asyncio.gather(store.commit(third), store.commit(fourth))
    again = await store.load_conversation_by_id("c1")
    assert again is not None and again.version == 4


async def test_a_conversation_created_twice_is_stored_once(store: SqlStore) -> None:
    # Two instances took the same new conversation as theirs, with ids of their own.
    await store.commit(message_changes("c1", "x1", "m1"))
    with pytest.raises(ChangeRefused):
        await store.commit(message_changes("c1-other", "x1", "m2"))
    assert await store.count("conversations") == 1
    assert await store.count("messages") == 1


def broken() -> Changes:
    """A change the database fails on (not a refusal: a NOT NULL column left empty)."""
    c = Changes()
    c.message(MessageRecord("msg-broken", "ch", "c0", Sender.BOT, None, 1.0))  # type: ignore[arg-type]
    return c


async def test_a_refused_change_fails_alone(store: SqlStore) -> None:
    create = Changes()
    create.new_agents.append(AgentProfile("a1", "Ann", frozenset({"billing"}), 1, "online", 0.0))
    await store.commit(create)
    changes = [message_changes(f"c{i}", f"x{i}", f"m{i}") for i in range(20)]
    changes[5].load("a1", +1)
    changes[9].load("a1", +1)  # the second one over capacity: refused
    results = await asyncio.gather(*(store.commit(c) for c in changes), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [9]
    assert isinstance(results[9], ChangeRefused)
    assert await store.count("messages") == 19
    [agent] = await store.load_agents()
    assert agent.open_count == 1
    assert store.committer.refused == 1


async def test_postgresql_names_the_refused_changes_and_writes_the_rest_together(pg_url: str) -> None:
    store = SqlStore(create_engines(pg_url))
    try:
        create = Changes()
        create.new_agents += [AgentProfile("a1", "Ann", frozenset({"billing"}), 1, "online", 0.0),
                              AgentProfile("a2", "Bob", frozenset({"billing"}), 2, "online", 0.0)]
        await store.commit(create)
        changes = [message_changes(f"c{i}", f"x{i}", f"m{i}") for i in range(20)]
        changes[3].load("a1", +1)
        changes[5].load("a2", +1)
        changes[9].load("a1", +1)  # a1's second: over capacity
        changes[12].load("a2", +1)
        changes[14].load("a1", -1)  # a1's slot freed...
        changes[17].load("a1", +1)  # ...and taken: it fits, in order
        changes[18].load("a2", +1)  # a2's third: over capacity
        batches = store.committer.batches
        results = await asyncio.gather(*(store.commit(c) for c in changes), return_exceptions=True)
        assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [9, 18]
        assert all(isinstance(results[i], ChangeRefused) for i in (9, 18))
        assert await store.count("messages") == 18
        assert {a.id: a.open_count for a in await store.load_agents()} == {"a1": 1, "a2": 2}
        # one batch for the eighteen: not a write each
        assert store.committer.batches - batches == 1 and store.committer.refused == 2
    finally:
        await store.close()
        await store.engines.dispose()


async def test_a_change_the_database_rejects_fails_alone(store: SqlStore) -> None:
    # Rejected by a constraint (as a second open handoff of one conversation
    # would be): the changes batched with it are written without it.
    results = await asyncio.gather(store.commit(message_changes("c1", "x1", "m1")), store.commit(broken()),
                                   store.commit(message_changes("c2", "x2", "m2")), return_exceptions=True)
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], Unavailable)
    assert await store.count("messages") == 2


@pytest.mark.parametrize("poison", ["a\x00b", "a\ud800b"], ids=["nul", "lone-surrogate"])
async def test_a_change_with_a_value_the_database_cannot_hold_fails_alone(store: SqlStore, poison: str) -> None:
    """One poisoned change inside a batch of good ones: whatever the cause
    (PostgreSQL refuses NUL in text; neither database's driver can encode a
    lone surrogate), only that change fails, and it fails as what it is."""
    if poison == "a\x00b" and store.engines.dialect == "sqlite":
        pytest.skip("SQLite stores NUL; the edge refuses it for both databases (tests/e2e/test_bad_input.py)")
    failures: list[int] = []
    store.committer.on_failure(lambda: failures.append(1))
    changes = [message_changes(f"c{i}", f"x{i}", f"m{i}") for i in range(30)]
    changes[11].inbound = dataclasses.replace(changes[11].inbound, text=poison)  # type: ignore[arg-type]
    results = await asyncio.gather(*(store.commit(c) for c in changes), return_exceptions=True)
    assert [i for i, r in enumerate(results) if r is not None] == [11]
    assert isinstance(results[11], Unstorable)
    assert failures == []  # not a failure of the database: nothing else is dropped or read again
    assert await store.count("messages") == 29
    assert await store.count("conversations") == 29
    # and the writer goes on as before
    await store.commit(message_changes("c99", "x99", "m99"))
    assert await store.count("messages") == 30


async def test_open_conversations_come_back_with_handoff_and_answers(store: SqlStore) -> None:
    h = Handoff(id="h1", conversation_id="c1", channel_id="ch", seq=1, reason=HandoffReason.NEEDS_HUMAN,
                skill="billing", requested_at=5.0, vip=True)
    conv = conversation("c1", "x1", ConversationStatus.QUEUED, h)
    c = Changes()
    c.inbound = inbound("c1", "m1")
    c.conversation(conv)
    c.handoff(h)
    await store.commit(c)
    resolved = conversation("c2", "x2", ConversationStatus.RESOLVED)
    c2 = Changes()
    c2.conversation(resolved)
    await store.commit(c2)
    [loaded] = await store.load_open_conversations()
    assert loaded.id == "c1" and loaded.status is ConversationStatus.QUEUED
    assert loaded.handoff is not None and loaded.handoff.waiting and loaded.handoff.vip
    assert loaded.answers == {"m1": {"action": "answer", "n": "m1"}}
    by_key = await store.load_conversation("ch", "x2")
    assert by_key is not None and by_key.status is ConversationStatus.RESOLVED
    assert await store.load_conversation("ch", "nope") is None


async def test_batched_lookups_return_each_callers_conversation(store: SqlStore) -> None:
    for i in range(5):
        await store.commit(message_changes(f"c{i}", f"x{i}", f"m{i}"))
    keys = [("ch", f"x{i}") for i in range(8)]
    found = await asyncio.gather(*(store.load_conversation(*k) for k in keys))
    assert [c.id if c else None for c in found] == ["c0", "c1", "c2", "c3", "c4", None, None, None]


async def test_agents_round_trip(store: SqlStore) -> None:
    c = Changes()
    c.new_agents.append(AgentProfile("a1", "Ann", frozenset({"billing", "tech"}), 3, "online", 7.0))
    await store.commit(c)
    upd = Changes()
    upd.agent(Agent("a1", "Ann B", frozenset({"tech"}), 5, AgentStatus.AWAY, idle_since=9.0))
    await store.commit(upd)
    [a] = await store.load_agents()
    assert (a.name, a.skills, a.capacity, a.status, a.idle_since) == (
        "Ann B", frozenset({"tech"}), 5, AgentStatus.AWAY, 9.0)
    async with store.engines.reading() as conn:
        created = (await conn.execute(select(t.agents.c.created_at))).scalar_one()
    assert created == 7.0  # a profile update does not move the creation time


async def test_a_batch_skips_exactly_its_duplicate_inbound_messages(store: SqlStore) -> None:
    await store.commit(message_changes("c1", "x1", "m1"))
    again = message_changes("c1", "x1", "m1")
    again.inbound = dataclasses.replace(again.inbound, id="msg-m1-retry")  # type: ignore[arg-type]
    twice = message_changes("c4", "x4", "m4")
    twice.inbound = dataclasses.replace(twice.inbound, id="msg-m4-retry")  # type: ignore[arg-type]
    batch = [message_changes("c2", "x2", "m2"), again, message_changes("c3", "x3", "m3"),
             message_changes("c4", "x4", "m4"), twice]
    # One batch, as the group commit would form it: the retry of a stored
    # message in the middle, and a message id sent twice within the batch.
    assert await store._write_batch(batch) == [False, True, False, False, True]
    assert await store.count("messages") == 4
    assert await store.count("events") == 4
    assert await store.count("conversations") == 4
    assert await store.stored_answer("ch", "m4") == {"action": "answer", "n": "m4"}
    assert await store._write_batch([message_changes("c1", "x1", "m1"), message_changes("c2", "x2", "m2")]) == [
        True, True]


async def test_a_batch_larger_than_one_statement_keeps_every_row_and_every_duplicate(store: SqlStore) -> None:
    # On SQLite a batch's rows go in as multi-row statements of at most 256
    # rows (256 + 256 + 64 + 16 + 8 here), the duplicates' verdicts come back
    # from each; PostgreSQL takes them as arrays in one statement.
    await store._write_batch([message_changes(f"c{i}", f"x{i}", f"m{i}") for i in range(0, 600, 7)])
    batch = [message_changes(f"c{i}", f"x{i}", f"m{i}") for i in range(600)]
    expected = [i % 7 == 0 for i in range(600)]
    assert await store._write_batch(batch) == expected
    assert await store.count("messages") == 600
    assert await store.count("events") == 600
    assert await store.count("conversations") == 600
    assert await store.stored_answer("ch", "m599") == {"action": "answer", "n": "m599"}


async def test_load_is_netted_per_batch_and_never_goes_below_zero(store: SqlStore) -> None:
    create = Changes()
    create.new_agents += [AgentProfile("a1", "Ann", frozenset(), 1, "online", 0.0),
                          AgentProfile("a2", "Bob", frozenset(), 2, "online", 0.0)]
    await store.commit(create)
    full = Changes()
    full.load("a1", +1)
    await store._write_batch([full])
    # a1 is full, but one change of the batch frees the slot another takes.
    freed, taken, below = Changes(), Changes(), Changes()
    freed.load("a1", -1)
    taken.load("a1", +1)
    below.load("a2", -3)
    assert await store._write_batch([taken, freed, below]) == [False, False, False]
    assert {a.id: a.open_count for a in await store.load_agents()} == {"a1": 1, "a2": 0}
    over = Changes()
    over.load("a2", +2)
    over.load("a1", +1)
    with pytest.raises(CapacityExceeded, match="a1"):
        await store._write_batch([over])
    # The refused batch changed nothing, a2's share included.
    assert {a.id: a.open_count for a in await store.load_agents()} == {"a1": 1, "a2": 0}


async def test_metrics_verdicts_replies_and_deliveries_are_written(store: SqlStore) -> None:
    at = 1_767_225_600.0 + 10
    first = message_changes("c1", "x1", "m1")
    first.rollup.add(at, "ch", "bot.messages")
    first.rollup.sample(at, "ch", "bot.rt", 0.5)
    first.outbox.append(OutboxItem("k1", "ch", "c1", "reply", {"text": "hi"}, at))
    second = message_changes("c2", "x2", "m2")
    second.rollup.add(at, "ch", "bot.messages")
    second.rollup.sample(at, "ch", "bot.rt", 0.5)
    await store._write_batch([first, second])
    third = Changes()
    third.rollup.sample(at, "ch", "bot.rt", 30.0)
    third.rollup.replied.append(("msg-m1", at + 5))
    third.verdicts.append(("msg-m2", "thumbs_down"))
    await store._write_batch([third])
    rows, hists = await store.rollup_rows(0, at + 3600)
    assert sorted(rows) == [(hour_of(at), "ch", "bot.messages", 2.0), (hour_of(at), "ch", "bot.rt.n", 3.0),
                            (hour_of(at), "ch", "bot.rt.sum", 31.0)]
    [(hour, channel, stat, h)] = hists
    assert (hour, channel, stat) == (hour_of(at), "ch", "bot.rt")
    assert h.counts[bin_of(0.5)] == 2 and h.counts[bin_of(30.0)] == 1 and h.counts.sum() == 3
    # The least and greatest sample are kept with the counts (percentiles are clamped to them).
    assert (h.low, h.high) == (0.5, 30.0)
    async with store.engines.reading() as conn:
        m = t.messages
        got = (await conn.execute(select(m.c.id, m.c.replied_at, m.c.verdict).order_by(m.c.id))).all()
        outbox = (await conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.status, t.outbox.c.payload))).all()
    assert [tuple(r) for r in got] == [("msg-m1", at + 5, None), ("msg-m2", None, "thumbs_down")]
    assert [tuple(r) for r in outbox] == [("k1", "pending", {"text": "hi"})]


async def test_a_closed_handoff_makes_way_for_the_next_one_in_the_same_batch(store: SqlStore) -> None:
    def handoff(hid: str, seq: int, resolved_at: float | None = None) -> Handoff:
        return Handoff(id=hid, conversation_id="c1", channel_id="ch", seq=seq, reason=HandoffReason.OTHER,
                       skill="general", requested_at=1.0, resolved_at=resolved_at)

    first = Changes()
    first.handoff(handoff("h1", 1))
    await store._write_batch([first])
    # The next one is recorded before the old one closes, in two changes of one batch.
    opened, closed = Changes(), Changes()
    opened.handoff(handoff("h2", 2))
    closed.handoff(handoff("h1", 1, resolved_at=2.0))
    assert await store._write_batch([opened, closed]) == [False, False]
    async with store.engines.reading() as conn:
        got = (await conn.execute(select(t.handoffs.c.id, t.handoffs.c.resolved_at).order_by(t.handoffs.c.id))).all()
    assert [tuple(r) for r in got] == [("h1", 2.0), ("h2", None)]


async def test_replies_and_verdicts_on_one_message_in_one_batch_all_land(store: SqlStore) -> None:
    await store._write_batch([message_changes("c1", "x1", "m1"), message_changes("c2", "x2", "m2")])
    a, b, c = Changes(), Changes(), Changes()
    a.rollup.replied.append(("msg-m1", 5.0))
    a.verdicts.append(("msg-m1", "thumbs_down"))
    b.verdicts.append(("msg-m1", "confirmed"))
    b.rollup.replied.append(("msg-m2", 6.0))
    c.rollup.replied.append(("msg-m2", 7.0))
    await store._write_batch([a, b, c])
    async with store.engines.reading() as conn:
        m = t.messages
        got = (await conn.execute(select(m.c.id, m.c.replied_at, m.c.verdict).order_by(m.c.id))).all()
    # The last of each wins, as when they were written one by one.
    assert [tuple(r) for r in got] == [("msg-m1", 5.0, "confirmed"), ("msg-m2", 7.0, None)]


async def test_concurrent_writers_add_to_the_same_histogram_without_losing_counts(db_url: str) -> None:
    at = 1_767_225_600.0 + 10
    stores = [SqlStore(create_engines(db_url)) for _ in range(2)]
    try:
        def sample(seconds: float) -> Changes:
            c = Changes()
            c.rollup.sample(at, "ch", "bot.rt", seconds)
            c.rollup.sample(at, "ch2", "bot.rt", seconds)
            return c

        await asyncio.gather(*(s._write_batch([sample(0.5 + i)]) for i in range(10) for s in stores))
        _, hists = await stores[0].rollup_rows(0, at + 3600)
        # On PostgreSQL each store adds to rows of its own; readers add them up.
        totals: dict[str, int] = {}
        for _, ch, _, h in hists:
            totals[ch] = totals.get(ch, 0) + int(h.counts.sum())
        assert totals == {"ch": 20, "ch2": 20}
    finally:
        for s in stores:
            await s.close()
            await s.engines.dispose()


async def test_an_over_long_value_is_refused_not_cut(store: SqlStore) -> None:
    if store.engines.dialect == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    too_long = message_changes("c" * 65, "x1", "m1")
    with pytest.raises(Unstorable):
        await store.commit(too_long)
    assert await store.count("conversations") == 0


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """The key filter is SQLite's: on PostgreSQL other instances create
    conversations too, so every look-up asks the database."""
    path = tmp_path / "tierdesk.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


async def test_sqlite_asks_the_database_only_about_keys_it_may_hold(sqlite_url: str) -> None:
    db_url = sqlite_url
    first = SqlStore(create_engines(db_url))
    for i in range(3):
        await first.commit(message_changes(f"c{i}", f"x{i}", f"m{i}"))
    await first.close()
    await first.engines.dispose()

    store = SqlStore(create_engines(db_url))
    try:
        await store.prepare()
        keys = store._conversation_keys
        found = await asyncio.gather(*(store.load_conversation("ch", f"x{i}") for i in range(3)))
        assert [c.id if c else None for c in found] == ["c0", "c1", "c2"]
        asked = keys.queries
        assert [await store.load_conversation("ch", f"new{i}") for i in range(20)] == [None] * 20
        assert keys.queries - asked <= 1  # 20 new keys: a false positive or so at 1 %
        # A key the filter rules out is answered at once, without a turn of
        # the event loop (the coroutine ends on its first step).
        ruled_out = next(f"new{i}" for i in range(20) if keys.surely_absent(("ch", f"new{i}")))
        step = store.load_conversation("ch", ruled_out)
        with pytest.raises(StopIteration) as ended:
            step.send(None)
        assert ended.value.value is None
        await store.commit(message_changes("c9", "new0", "m9"))
        found = await store.load_conversation("ch", "new0")
        assert found is not None and found.id == "c9"
    finally:
        await store.close()
        await store.engines.dispose()


async def test_a_key_stored_behind_sqlites_back_costs_one_refusal_then_is_found(sqlite_url: str) -> None:
    db_url = sqlite_url
    store, other = SqlStore(create_engines(db_url)), SqlStore(create_engines(db_url))
    try:
        await store.prepare()
        await other.commit(message_changes("c1", "x1", "m1"))  # unknown to store's filter
        assert await store.load_conversation("ch", "x1") is None
        with pytest.raises(ChangeRefused):  # the conversation it would start is refused
            await store.commit(message_changes("c1-again", "x1", "m2"))
        found = await store.load_conversation("ch", "x1")
        assert found is not None and found.id == "c1"
    finally:
        for s in (store, other):
            await s.close()
            await s.engines.dispose()


async def test_postgresql_rules_keys_out_only_while_its_relay_says_which_others_store(pg_url: str) -> None:
    store, other = SqlStore(create_engines(pg_url), origin="here"), SqlStore(create_engines(pg_url), origin="there")
    try:
        await store.prepare()
        keys = store._conversation_keys
        await store.commit(message_changes("c1", "x1", "m1"))
        # Without a relay, other instances' keys would go unnoted: ask.
        assert not keys.surely_absent(("ch", "new1"))
        store.relay_listening()
        await store.conversation_keys_built()
        assert keys.surely_absent(("ch", "new1")) and not keys.surely_absent(("ch", "x1"))
        asked = keys.queries
        assert await store.load_conversation("ch", "new1") is None
        assert keys.queries == asked
        # Another instance stores one, and its sync message says so.
        await other.commit(message_changes("c2", "x2", "m2"))
        store.stored_elsewhere([("ch", "x2")])
        found = await store.load_conversation("ch", "x2")
        assert found is not None and found.id == "c2"
        # Stored while the relay was away: once it listens again, nothing is
        # ruled out until the stored keys are read again, which finds it.
        await other.commit(message_changes("c3", "x3", "m3"))
        assert keys.surely_absent(("ch", "x3"))  # unheard of: the case the database's refusal covers
        store.relay_listening()
        assert not keys.surely_absent(("ch", "x3"))
        await store.conversation_keys_built()
        found = await store.load_conversation("ch", "x3")
        assert found is not None and found.id == "c3"
        assert keys.surely_absent(("ch", "new1"))
    finally:
        for s in (store, other):
            await s.close()
            await s.engines.dispose()


async def test_a_histogram_stored_without_bounds_is_added_to_and_read_with_its_bins_edges(store: SqlStore) -> None:
    """Histograms written before the least and greatest sample were kept
    (no format byte, no bounds) are read and added to where they lie."""
    import struct

    from router.rollups import bin_bounds

    at = 1_767_225_600.0 + 10
    first = Changes()
    first.rollup.sample(at, "ch", "human.first", 60.0)
    await store._write_batch([first])
    b = bin_of(60.0)
    legacy = b.to_bytes(2, "little") + struct.pack("<q", 1)
    async with store.engines.writing() as conn:
        await conn.execute(update(t.metric_histograms).values(counts=legacy))
    second = Changes()
    second.rollup.sample(at, "ch", "human.first", 30.0)
    await store._write_batch([second])
    _, hists = await store.rollup_rows(0, at + 3600)
    [(_, _, _, h)] = hists
    assert h.counts[b] == 1 and h.counts[bin_of(30.0)] == 1 and h.counts.sum() == 2
    assert (h.low, h.high) == (30.0, bin_bounds(b)[1])


async def test_weights_left_messages_and_offers_round_trip_and_idle_skips_a_message_left(store: SqlStore) -> None:
    # A message left and unanswered is never idle; a queued live customer,
    # and a message left that an agent has answered, are.
    left = Handoff(id="h1", conversation_id="c1", channel_id="ch", seq=1, reason=HandoffReason.LEFT_MESSAGE,
                   skill="billing", requested_at=1.0, vip=True, weight=2, left_message=True)
    live = Handoff(id="h2", conversation_id="c2", channel_id="ch", seq=1, reason=HandoffReason.NEEDS_HUMAN,
                   skill="billing", requested_at=1.0)
    answered = Handoff(id="h3", conversation_id="c3", channel_id="ch", seq=1, reason=HandoffReason.LEFT_MESSAGE,
                       skill="billing", requested_at=1.0, left_message=True, first_reply_at=2.0)
    offered = conversation("c4", "x4")
    offered.message_offer = "billing"
    c = Changes()
    for i, h in enumerate((left, live, answered), 1):
        c.conversation(conversation(f"c{i}", f"x{i}", ConversationStatus.QUEUED, h))
        c.handoff(h)
    c.conversation(offered)
    await store.commit(c)
    assert sorted(await store.idle_conversations(100.0, 10)) == ["c2", "c3", "c4"]
    loaded = await store.load_conversation("ch", "x1")
    assert loaded is not None and loaded.handoff is not None
    assert (loaded.handoff.weight, loaded.handoff.left_message, loaded.handoff.slots) == (2, True, 1)
    assert (await store.load_conversation("ch", "x4")).message_offer == "billing"  # type: ignore[union-attr]


async def test_thousands_of_alerts_clear_in_one_round(db_url: str) -> None:
    """A round may clear more alerts than one statement takes parameters
    (asyncpg takes 32,767; a flood's alerts from before the cap were more):
    all of them clear, none other."""
    from router.alerts import Alert
    from storage.alerts import AlertStore

    engines = create_engines(db_url)
    alerts = AlertStore(engines)
    try:
        n = 40_000
        raised = [Alert(f"first_response:ho_{i}", "first_response", 1.0, {"handoff_id": f"ho_{i}"}, {})
                  for i in range(n + 1)]
        await alerts.record(raised, [], 1.0)
        await alerts.record([], [a.key for a in raised[:n]], 2.0)
        assert list(await alerts.open_alerts()) == [raised[n].key]
    finally:
        await engines.dispose()

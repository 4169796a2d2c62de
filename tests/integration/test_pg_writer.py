"""PostgreSQL's writer: a batch in one statement, and the long way when that
statement refuses itself (storage/pg_writer.py), on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update

from router.changes import Changes, MessageRecord, OutboxItem
from router.model import Sender, Tier
from router.rollup_report import Histogram, decode, dense, encode
from router.rollups import bin_of, hour_of
from storage import tables as t
from storage.engine import create_engines
from storage.store import SqlStore
from tierdesk.errors import Unavailable

from .test_store import message_changes

AT = 1_767_225_600.0 + 10


@pytest.fixture
async def store(pg_url: str):  # type: ignore[no-untyped-def]
    engines = create_engines(pg_url)
    s = SqlStore(engines, origin="test-instance")
    yield s
    await s.close()
    await engines.dispose()


def answered(n: int, rt: float = 0.5) -> Changes:
    """What the bot tier's answer to one new conversation's first message writes."""
    c = message_changes(f"c{n}", f"x{n}", f"m{n}")
    c.message(MessageRecord(f"msg-r{n}", "ch", f"c{n}", Sender.BOT, "the answer", AT + rt, in_reply_to=f"msg-m{n}",
                            tier=Tier.BOT))
    c.rollup.add(AT, "ch", "bot.messages")
    c.rollup.sample(AT, "ch", "bot.rt", rt)
    c.rollup.replied.append((f"msg-m{n}", AT + rt))
    c.outbox.append(OutboxItem(f"k{n}", "ch", f"c{n}", "reply", {"text": "the answer"}, AT))
    return c


async def snapshot(store: SqlStore) -> dict[str, Any]:
    """Every table's rows, histograms added up over their writers."""
    out: dict[str, Any] = {}
    async with store.engines.reading() as conn:
        for table in (t.conversations, t.messages, t.events, t.outbox, t.metric_rollups, t.handoffs, t.agents):
            # Less the serial numbers, which the database hands out.
            cols = [c for c in table.c if f"{table.name}.{c.name}" not in ("events.seq", "outbox.id")]
            out[table.name] = sorted(tuple(map(repr, r)) for r in (await conn.execute(select(*cols))).all())
        hists: dict[tuple[Any, ...], Any] = {}
        h = t.metric_histograms
        for hour, ch, stat, counts in (await conn.execute(select(h.c.hour, h.c.channel_id, h.c.stat, h.c.counts))):
            key = (hour, ch, stat)
            hists[key] = hists[key] + decode(counts) if key in hists else decode(counts)
        out["histograms"] = {k: (v.counts.tolist(), v.low, v.high) for k, v in hists.items()}
    return out


async def test_a_batch_of_answers_is_written_in_one_statement(store: SqlStore) -> None:
    writer = store._postgresql
    assert writer is not None
    assert await store._write_batch([answered(1), answered(2, rt=2.0), answered(3)]) == [False] * 3
    assert (writer.one_statement_batches, writer.stepwise_batches) == (1, 0)
    async with store.engines.reading() as conn:
        m = t.messages
        got = (await conn.execute(select(m.c.id, m.c.replied_at).order_by(m.c.id))).all()
    # The replies' marks on the messages inserted by the same statement.
    assert [tuple(r) for r in got] == [("msg-m1", AT + 0.5), ("msg-m2", AT + 2.0), ("msg-m3", AT + 0.5),
                                       ("msg-r1", None), ("msg-r2", None), ("msg-r3", None)]
    _, hists = await store.rollup_rows(0, AT + 3600)
    [(_, _, stat, h)] = hists
    assert stat == "bot.rt" and h.counts[bin_of(0.5)] == 2 and h.counts[bin_of(2.0)] == 1
    assert (h.low, h.high) == (0.5, 2.0)
    # The next batch adds to the row it knows, without reading it.
    await store._write_batch([answered(4)])
    assert (writer.one_statement_batches, writer.stepwise_batches) == (2, 0)
    _, hists = await store.rollup_rows(0, AT + 3600)
    assert [h.counts.sum() for *_, h in hists] == [4]


async def test_one_statement_stores_what_the_long_way_stores(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = [[answered(1), answered(2, rt=3.0)], [answered(3), message_changes("c4", "x4", "m4")]]
    for batch in batches:
        await store._write_batch(batch)
    assert store._postgresql is not None and store._postgresql.stepwise_batches == 0
    whole = await snapshot(store)
    async with store.engines.writing() as conn:
        for table in t.metadata.sorted_tables:
            await conn.execute(delete(table))

    async def never(_rows: Any) -> bool:
        return False

    monkeypatch.setattr(store._postgresql, "_write_whole", never)
    for batch in [[answered(1), answered(2, rt=3.0)], [answered(3), message_changes("c4", "x4", "m4")]]:
        await store._write_batch(batch)
    assert store._postgresql.stepwise_batches == 2
    assert await snapshot(store) == whole


async def test_a_batch_with_a_repeated_message_refuses_its_statement_and_is_written_the_long_way(
        store: SqlStore) -> None:
    await store._write_batch([answered(1)])
    again = answered(1)
    assert await store._write_batch([answered(2), again, answered(3)]) == [False, True, False]
    writer = store._postgresql
    assert writer is not None and (writer.one_statement_batches, writer.stepwise_batches) == (1, 1)
    assert await store.count("messages") == 6
    # The refused statement added nothing: the histogram holds one sample per answer.
    _, hists = await store.rollup_rows(0, AT + 3600)
    assert sum(int(h.counts.sum()) for *_, h in hists) == 3
    await store._write_batch([answered(4)])
    _, hists = await store.rollup_rows(0, AT + 3600)
    assert sum(int(h.counts.sum()) for *_, h in hists) == 4


@pytest.mark.parametrize("behind_its_back", ["deleted", "changed"])
async def test_histogram_counts_changed_behind_the_writer_are_added_to_not_overwritten(
        store: SqlStore, behind_its_back: str) -> None:
    await store._write_batch([answered(1), answered(2)])
    h = t.metric_histograms
    async with store.engines.writing() as conn:
        if behind_its_back == "deleted":  # as `tierdesk metrics rebuild` does first
            await conn.execute(delete(h))
        else:
            await conn.execute(update(h).values(counts=encode(Histogram(dense({bin_of(9.0): 5}), 9.0, 9.0))))
    await store._write_batch([answered(3)])
    writer = store._postgresql
    assert writer is not None and writer.stepwise_batches == 1
    _, hists = await store.rollup_rows(0, AT + 3600)
    [(_, _, _, hist)] = hists
    expected = {"deleted": 1, "changed": 6}[behind_its_back]
    assert hist.counts.sum() == expected and hist.counts[bin_of(0.5)] == 1
    # Known again: the next batch is one statement.
    await store._write_batch([answered(4)])
    assert (writer.one_statement_batches, writer.stepwise_batches) == (2, 1)


async def test_each_instance_adds_to_histogram_rows_of_its_own(pg_url: str) -> None:
    stores = [SqlStore(create_engines(pg_url), origin=f"instance-{i}") for i in range(2)]
    try:
        for i in range(6):
            await stores[i % 2]._write_batch([answered(i)])
        async with stores[0].engines.reading() as conn:
            h = t.metric_histograms
            rows = (await conn.execute(select(h.c.writer, h.c.counts).order_by(h.c.writer))).all()
        assert [(w, int(decode(c).counts.sum())) for w, c in rows] == [("instance-0", 3), ("instance-1", 3)]
        assert all(s._postgresql is not None and s._postgresql.stepwise_batches == 0 for s in stores)
    finally:
        for s in stores:
            await s.close()
            await s.engines.dispose()


async def test_a_lost_connection_fails_a_batch_at_most_and_the_writer_reconnects(store: SqlStore) -> None:
    await store._write_batch([answered(1)])
    writer = store._postgresql
    assert writer is not None
    pid = (await writer._held.driver()).get_server_pid()
    async with store.engines.writing() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    stored = 1
    try:
        await store._write_batch([answered(2)])
        stored += 1
    except Unavailable:
        pass  # the statement went out on the dead connection: its outcome is unknown, the batch fails
    await store._write_batch([answered(3)])
    stored += 1
    assert (await writer._held.driver()).get_server_pid() != pid
    assert await store.count("conversations") >= stored
    _, hists = await store.rollup_rows(0, AT + 3600)
    assert sum(int(h.counts.sum()) for *_, h in hists) == await store.count("conversations")


async def test_an_hour_of_samples_lands_in_that_hours_row(store: SqlStore) -> None:
    later = answered(1)
    later.rollup.sample(AT + 3600, "ch", "bot.rt", 1.0)
    await store._write_batch([later])
    _, hists = await store.rollup_rows(0, AT + 7200)
    assert sorted((hour, int(h.counts.sum())) for hour, _, _, h in hists) == [(hour_of(AT), 1),
                                                                              (hour_of(AT + 3600), 1)]


async def _seq_scans(store: SqlStore) -> dict[str, int]:
    async with store.engines.reading() as conn:
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        rows = (await conn.execute(text(
            "SELECT relname, seq_scan FROM pg_stat_user_tables "
            "WHERE relname IN ('conversations', 'messages', 'agents', 'handoffs')"))).all()
    return {name: n for name, n in rows}


async def test_plans_made_on_empty_tables_do_not_scan_them_once_they_have_grown(store: SqlStore) -> None:
    # The statements are prepared (and PostgreSQL settles on a plan for
    # them) while the tables are nearly empty...
    for i in range(8):
        await store._write_batch([answered(i)])
        assert await store.load_conversation("ch", f"new{i}") is None
    # ...then the tables grow, faster than autovacuum's ANALYZE comes round.
    async with store.engines.writing() as conn:
        await conn.execute(text(
            "INSERT INTO conversations (id, channel_id, external_id, customer_id, customer_vip, status, created_at,"
            " updated_at, bot_streak, handoff_count, version) SELECT 'bulk' || i, 'ch', 'bulk' || i, 'u', false,"
            " 'bot', 1, 1, 0, 0, 1 FROM generate_series(1, 20000) AS i"))
        await conn.execute(text(
            "INSERT INTO messages (id, channel_id, conversation_id, sender, text, at, external_id, response)"
            " SELECT 'msg-bulk' || i, 'ch', 'bulk' || i, 'customer', 'hi', 1, 'bulk' || i, 'null'"
            " FROM generate_series(1, 20000) AS i"))
    before = await _seq_scans(store)
    for i in range(8, 16):
        stored = await store.load_conversation("ch", f"bulk{i}")  # found: loaded in full
        assert stored is not None
        later = answered(i)
        later.conversation(dataclasses.replace(stored, updated_at=2.0))  # over its stored version
        later.rollup.replied.append((f"msg-bulk{i}", 3.0))  # a mark on a stored message
        await store._write_batch([later])
        assert await store.load_conversation("ch", f"new{i}") is None
    # Backends report their counters when idle, at most once a second: ask
    # the two that held the statements to report now.
    assert store._postgresql is not None
    for held in (store._postgresql._held, store._conversation_keys._held):
        await (await held.driver()).execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(0.2)
    assert await _seq_scans(store) == before

"""The group commit's statements, compiled once per dialect to SQL text with a
fixed parameter order; the rows they take are tuples (storage/rows.py).

Executing a Core statement costs tens of microseconds of Python however few
its rows (cache key, parameter processing, result set-up), and a batch runs
about eight: that was most of the writer's CPU at half load. Text run by the
driver costs little beyond the rows. Values go to the driver as they are
stored, so the conversions the Core types made are made in storage/rows.py:
JSON is serialized as SQLAlchemy's JSON type does with the engines' default
serializer (``None`` too, as JSON ``null``). SQLite's writer runs the text
on a plain sqlite3 connection (storage/sqlite_batch.py).

On PostgreSQL the writer runs on the event loop thread, where every round
trip waits for the loop's turn, so a batch is one statement however many
changes it holds (``Statements.write_whole``, storage/pg_writer.py); when
that statement refuses itself, the batch takes three: the inbound insert,
the histogram rows' lock, and one statement of data-modifying CTEs for the
rest (``Statements.write_rest``). Rows go as one array per column through
``unnest``, so each statement's text, and prepared statement, is fixed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, bindparam, case, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement

from . import tables as t
from .notify import CHANNEL
from .rows import BatchRows
from .sqlite_batch import SqliteTexts

# Columns the row tuples of storage/rows.py fill, in the order the compiled SQL takes them.
AGENT_COLUMNS = ("id", "name", "skills", "capacity", "status", "open_count", "idle_since", "created_at",
                 "disabled_at", "presence_lost_at", "missed_reservations", "skill_levels")
PROFILE_COLUMNS = ("name", "skills", "capacity", "status", "idle_since", "disabled_at", "presence_lost_at",
                   "missed_reservations", "skill_levels", "b_id")
CONVERSATION_COLUMNS = tuple(t.conversations.c.keys())
HANDOFF_COLUMNS = tuple(t.handoffs.c.keys())
MESSAGE_COLUMNS = ("id", "channel_id", "conversation_id", "sender", "text", "at", "external_id", "agent_id",
                   "tier", "intent", "confidence", "in_reply_to", "response", "outcome", "replied_at")
EVENT_COLUMNS = ("at", "kind", "channel_id", "conversation_id", "message_id", "handoff_id", "agent_id", "data")
OUTBOX_COLUMNS = ("idempotency_key", "channel_id", "conversation_id", "kind", "payload", "created_at", "status",
                  "attempts", "next_attempt_at")
ROLLUP_COLUMNS = ("hour", "channel_id", "name", "value")
# SQLite's one writer leaves ``writer`` at its default, ''.
HISTOGRAM_COLUMNS = ("hour", "channel_id", "stat", "counts")
PG_HISTOGRAM_COLUMNS = ("hour", "channel_id", "stat", "writer", "counts")


class Statements:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect.name
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert

        def text(stmt: ClauseElement, columns: Sequence[str], **kw: Any) -> str:
            compiled = stmt.compile(dialect=dialect, **kw)
            if tuple(compiled.positiontup or ()) != tuple(columns):
                raise RuntimeError(f"parameter order {compiled.positiontup} is not {columns}")
            return compiled.string

        def insert_text(stmt: ClauseElement, columns: Sequence[str]) -> str:
            # for_executemany: no implicit RETURNING of the generated key.
            return text(stmt, columns, column_keys=list(columns), for_executemany=True)

        def upsert(table: Any, columns: Sequence[str]) -> str:
            stmt = insert(table)
            stmt = stmt.on_conflict_do_update(
                index_elements=["id"], set_={k: stmt.excluded[k] for k in columns if k != "id"})
            return insert_text(stmt, columns)

        def by_id(table: Any, **values: Any) -> Any:
            return update(table).where(table.c.id == bindparam("b_id")).values(**values)

        self.insert_agents = insert_text(t.agents.insert(), AGENT_COLUMNS)
        self.update_agents = text(by_id(t.agents, **{k: bindparam(k) for k in PROFILE_COLUMNS[:-1]}),
                                  PROFILE_COLUMNS)
        q = dialect.identifier_preparer.quote
        # A conversation is inserted when new (its base version is 0) and
        # otherwise updated only over the version its change was decided on;
        # both say which rows they wrote (rows.check_conversations).
        self.insert_conversations = insert_text(insert(t.conversations).on_conflict_do_nothing(),
                                                CONVERSATION_COLUMNS) + " RETURNING conversations.id"
        n = len(CONVERSATION_COLUMNS)
        self.update_conversations = (  # SQLite's: VALUES columns are column1, column2...
            "UPDATE conversations SET "
            + ", ".join(f"{q(c)} = v.column{i}" for i, c in enumerate(CONVERSATION_COLUMNS, 1) if c != "id")
            + f" FROM (VALUES ({', '.join(['?'] * (n + 1))})) AS v WHERE conversations.id = v.column1"
            f" AND conversations.version = v.column{n + 1} RETURNING conversations.id")
        self.upsert_handoffs = upsert(t.handoffs, HANDOFF_COLUMNS)
        self.insert_messages = insert_text(t.messages.insert(), MESSAGE_COLUMNS)
        self.insert_events = insert_text(t.events.insert(), EVENT_COLUMNS)
        self.insert_outbox = insert_text(t.outbox.insert(), OUTBOX_COLUMNS)
        self.set_replied_at = text(by_id(t.messages, replied_at=bindparam("replied_at")), ("replied_at", "b_id"))
        self.set_verdict = text(by_id(t.messages, verdict=bindparam("verdict")), ("verdict", "b_id"))

        a = t.agents
        new = a.c.open_count + bindparam("d", type_=Integer)
        # Takes (d, agent id), plus d again where the dialect binds by position
        # (SQLite's, the one that runs these; PostgreSQL's writer moves loads
        # in write_rest).
        twice = dialect.paramstyle == "qmark"
        self.add_load = text(by_id(a, open_count=new).where(new <= a.c.capacity),
                             ("d", "b_id", "d") if twice else ("d", "b_id"))
        zero = literal_column("0")
        self.remove_load = text(by_id(a, open_count=case((new < zero, zero), else_=new)),
                                ("d", "d", "b_id") if twice else ("d", "b_id"))

        r = insert(t.metric_rollups)
        self.add_rollups = insert_text(
            r.on_conflict_do_update(index_elements=["hour", "channel_id", "name"],
                                    set_={"value": t.metric_rollups.c.value + r.excluded.value}),
            ROLLUP_COLUMNS)
        h = t.metric_histograms
        self.insert_histograms = insert_text(insert(h).on_conflict_do_nothing(), HISTOGRAM_COLUMNS)
        key = (h.c.hour == bindparam("hour")) & (h.c.channel_id == bindparam("channel_id")) & (
            h.c.stat == bindparam("stat")) & (h.c.writer == literal_column("''"))
        self.lock_histogram = text(select(h.c.counts).where(key).with_for_update(), HISTOGRAM_COLUMNS[:3])
        self.set_histogram = text(update(h).where(key).values(counts=bindparam("counts")),
                                  ("counts", *HISTOGRAM_COLUMNS[:3]))

        # Inbound messages go in with one statement that says which of them
        # were new: a multi-row VALUES on SQLite, one array per column on
        # PostgreSQL.
        tail = " ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING messages.id"
        if dialect.name == "postgresql":
            self._inbound = _PgText(dialect).insert(t.messages, MESSAGE_COLUMNS) + tail
            self._write_rest = _write_rest_text(dialect)
            self.write_whole = _write_rest_text(dialect, whole=True)
            # The rows to add to are made and locked in key order (the rows'
            # order, the same on every instance, so two writers cannot
            # deadlock on them) and read as they are now, committed by
            # others or not: ON CONFLICT DO UPDATE sees the latest version,
            # where a SELECT after an INSERT ... DO NOTHING in one statement
            # would see the statement's snapshot.
            self._lock_histograms = (
                _PgText(dialect).insert(h, PG_HISTOGRAM_COLUMNS)
                + " ON CONFLICT (hour, channel_id, stat, writer) DO UPDATE SET counts = metric_histograms.counts"
                " RETURNING hour, channel_id, stat, counts")
        else:
            self._inbound = insert_text(t.messages.insert(), MESSAGE_COLUMNS) + tail

    def insert_inbound(self, conn: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """PostgreSQL: inserts the messages that are new by (channel, external
        id) and returns their ids; the others were stored before, or earlier
        in rows."""
        return set(conn.exec_driver_sql(self._inbound, _columns(rows, len(MESSAGE_COLUMNS))).scalars())

    def sqlite_texts(self) -> SqliteTexts:
        """The statements the SQLite writer runs (storage/sqlite_batch.py)."""
        assert self.dialect == "sqlite"
        return SqliteTexts(
            inbound=self._inbound, insert_agents=self.insert_agents, update_agents=self.update_agents,
            insert_conversations=self.insert_conversations, update_conversations=self.update_conversations,
            upsert_handoffs=self.upsert_handoffs,
            add_load=self.add_load, remove_load=self.remove_load, insert_messages=self.insert_messages,
            insert_events=self.insert_events, insert_outbox=self.insert_outbox,
            insert_histograms=self.insert_histograms, lock_histogram=self.lock_histogram,
            set_histogram=self.set_histogram, add_rollups=self.add_rollups, set_replied_at=self.set_replied_at,
            set_verdict=self.set_verdict)

    def lock_histograms(self, conn: Connection, keys: list[tuple[float, str, str]], writer: str,
                        empty: bytes) -> dict[tuple[float, str, str], bytes]:
        """PostgreSQL: creates ``writer``'s missing histogram rows (as empty)
        and locks them all, in the order of keys; returns their counts."""
        rows = [(*k, writer, empty) for k in keys]
        result = conn.exec_driver_sql(self._lock_histograms, _columns(rows, len(PG_HISTOGRAM_COLUMNS)))
        return {(hour, channel, stat): counts for hour, channel, stat, counts in result}

    @staticmethod
    def agent_loads(conn: Connection, agent_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Each agent's stored open count and capacity."""
        a = t.agents
        q = select(a.c.id, a.c.open_count, a.c.capacity).where(a.c.id.in_(agent_ids))
        return {agent_id: (count, capacity) for agent_id, count, capacity in conn.execute(q)}

    def write_rest(self, conn: Connection, rows: BatchRows, histograms: list[tuple[Any, ...]],
                   notices: list[str]) -> tuple[set[str], set[str]]:
        """PostgreSQL: everything of a batch after the inbound messages and the
        agents, in one statement, with the relay's ``notices`` (sent on commit);
        returns the agents whose load moved and the conversations written."""
        args = _rest_args(rows, _columns(histograms, len(PG_HISTOGRAM_COLUMNS)), rows.marks(), notices)
        moved: set[str] = set()
        written: set[str] = set()
        for kind, key in conn.exec_driver_sql(self._write_rest, args):
            if kind == "load":
                moved.add(key)
            elif kind == "conversation":
                written.add(key)
        return moved, written


def whole_args(inbound: Sequence[tuple[Any, ...]], rows: BatchRows, marks: Sequence[tuple[Any, ...]],
               new_histograms: Sequence[tuple[Any, ...]], written_histograms: Sequence[tuple[Any, ...]],
               notices: list[str]) -> tuple[Any, ...]:
    """The arguments of ``Statements.write_whole``, in its parameters' order.
    ``written_histograms``: (key..., writer, counts, the counts written before)."""
    histograms = (*_columns(new_histograms, len(PG_HISTOGRAM_COLUMNS)),
                  *_columns(written_histograms, len(PG_HISTOGRAM_COLUMNS) + 1))
    return (
        *_columns(inbound, len(MESSAGE_COLUMNS)),
        *_rest_args(rows, histograms, marks, notices),
        len(inbound),
        len(rows.conversations),
        sum(1 for _, d in rows.load if d > 0),
        len(new_histograms) + len(written_histograms),
    )


def _rest_args(rows: BatchRows, histograms: tuple[list[Any], ...], marks: Sequence[tuple[Any, ...]],
               notices: list[str]) -> tuple[Any, ...]:
    """The arguments both texts of ``_write_rest_text`` take after their own
    first ones, in the order it writes their parameters; ``histograms``: the
    histogram arrays of the text at hand."""
    return (
        *_columns(rows.conversations, len(CONVERSATION_COLUMNS)),
        rows.conversation_bases,
        *_columns(rows.handoffs, len(HANDOFF_COLUMNS)),
        *_columns(rows.load, 2),
        *_columns(rows.messages, len(MESSAGE_COLUMNS)),
        *_columns(rows.events, len(EVENT_COLUMNS)),
        *_columns(rows.outbox, len(OUTBOX_COLUMNS)),
        *histograms,
        *_columns(rows.rollups, len(ROLLUP_COLUMNS)),
        *_columns(marks, 3),
        notices,
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    """Rows as one list per column, for unnest."""
    return tuple(map(list, zip(*rows, strict=True))) if rows else tuple([] for _ in range(width))


class _PgText:
    """PostgreSQL text that takes rows as one array per column, numbering
    the parameters in the order the text is written."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.quote = dialect.identifier_preparer.quote
        self._n = itertools.count(1)

    def param(self, sql_type: str) -> str:
        return f"${next(self._n)}::{sql_type}"

    def arrays(self, table: Any, columns: Sequence[str], *more: str) -> str:
        """``more``: the SQL types of further arrays, after the columns'."""
        # Without the length: a cast to VARCHAR(n) would cut an over-long
        # value short, where storing it into the column refuses it.
        types = [*(table.c[c].type.compile(dialect=self.dialect).split("(")[0] for c in columns), *more]
        return f"unnest({', '.join(self.param(f'{sql_type}[]') for sql_type in types)})"

    def insert(self, table: Any, columns: Sequence[str]) -> str:
        return (f"INSERT INTO {self.quote(table.name)} ({', '.join(map(self.quote, columns))}) "
                f"SELECT * FROM {self.arrays(table, columns)}")

    def upsert(self, table: Any, columns: Sequence[str]) -> str:
        return self.insert(table, columns) + " ON CONFLICT (id) DO UPDATE SET " + ", ".join(
            f"{self.quote(c)} = excluded.{self.quote(c)}" for c in columns if c != "id")


def _write_rest_text(dialect: Dialect, *, whole: bool = False) -> str:
    """``whole``: the batch's inbound messages too, the histogram rows as
    compare-and-set writes of rows the writer knows, and a guard that rolls
    the statement back unless every row was written as expected."""
    # The sub-statements of one statement share a snapshot and run in no set
    # order, so each table is written by one of them, and nothing here reads
    # what another writes: the inbound messages the marks update and the
    # histogram rows were written by the statements before (in the whole
    # batch's statement, marks of its own inbound messages are in their
    # rows), and a conversation's closed handoff precedes its next one
    # within the handoffs' own insert, row by row as the partial unique
    # index needs.
    p = _PgText(dialect)
    a, h = t.agents, t.metric_histograms
    conv_columns = ", ".join(map(p.quote, CONVERSATION_COLUMNS))
    hist_key = " AND ".join(f"metric_histograms.{c} = v.{c}" for c in PG_HISTOGRAM_COLUMNS[:4])
    parts = {}
    if whole:
        parts["inbound_inserted"] = (p.insert(t.messages, MESSAGE_COLUMNS)
                                     + " ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING messages.id")
    parts.update({
        # With the version each row must be written over (0: insert it).
        "conversation_rows": (
            f"SELECT * FROM {p.arrays(t.conversations, CONVERSATION_COLUMNS, 'INTEGER')} "
            f"AS v({conv_columns}, base)"),
        "conversations_inserted": (
            f"INSERT INTO conversations ({conv_columns}) SELECT {conv_columns} FROM conversation_rows "
            "WHERE base = 0 ON CONFLICT DO NOTHING RETURNING conversations.id"),
        # Re-checked on the latest row version when another instance's
        # transaction changed the row first: then nothing is written.
        "conversations_updated": (
            "UPDATE conversations SET " + ", ".join(
                f"{p.quote(c)} = v.{p.quote(c)}" for c in CONVERSATION_COLUMNS if c != "id")
            + " FROM conversation_rows AS v WHERE conversations.id = v.id AND v.base > 0"
            " AND conversations.version = v.base RETURNING conversations.id"),
        "handoffs_written": p.upsert(t.handoffs, HANDOFF_COLUMNS),
        # Adding refuses to go over capacity (the caller checks which agents
        # moved); removing stops at zero.
        "load_moved": (
            f"UPDATE agents SET open_count = greatest(agents.open_count + v.d, 0) "
            f"FROM {p.arrays(a, ('id', 'open_count'))} AS v(id, d) "
            "WHERE agents.id = v.id AND (v.d < 0 OR agents.open_count + v.d <= agents.capacity) "
            "RETURNING agents.id, v.d"),
        "messages_written": p.insert(t.messages, MESSAGE_COLUMNS),
        "events_written": p.insert(t.events, EVENT_COLUMNS),
        "outbox_written": p.insert(t.outbox, OUTBOX_COLUMNS),
    })
    if whole:
        # Rows the writer has not written yet, and rows it wrote, over the
        # counts it wrote there (another writer of the same name cannot
        # exist; a rebuild of the rollups can have changed them).
        parts["histograms_inserted"] = (p.insert(h, PG_HISTOGRAM_COLUMNS) + " ON CONFLICT DO NOTHING RETURNING 1")
        parts["histograms_updated"] = (
            f"UPDATE metric_histograms SET counts = v.counts FROM {p.arrays(h, PG_HISTOGRAM_COLUMNS, 'BYTEA')} "
            f"AS v(hour, channel_id, stat, writer, counts, old) WHERE {hist_key} "
            "AND metric_histograms.counts = v.old RETURNING 1")
    else:
        parts["histograms_written"] = (
            f"UPDATE metric_histograms SET counts = v.counts FROM {p.arrays(h, PG_HISTOGRAM_COLUMNS)} "
            f"AS v(hour, channel_id, stat, writer, counts) WHERE {hist_key}")
    parts.update({
        "rollups_written": p.insert(t.metric_rollups, ROLLUP_COLUMNS) + (
            " ON CONFLICT (hour, channel_id, name) DO UPDATE SET value = metric_rollups.value + excluded.value"),
        "marks_written": (
            f"UPDATE messages SET replied_at = coalesce(v.replied_at, messages.replied_at), "
            f"verdict = coalesce(v.verdict, messages.verdict) "
            f"FROM {p.arrays(t.messages, ('id', 'replied_at', 'verdict'))} AS v(id, replied_at, verdict) "
            "WHERE messages.id = v.id"),
    })
    ctes = ", ".join(f"{name} AS ({sql})" for name, sql in parts.items())
    text = (f"WITH {ctes} SELECT 'load', id FROM load_moved UNION ALL SELECT 'conversation', id "
            "FROM conversations_inserted UNION ALL SELECT 'conversation', id FROM conversations_updated "
            f"UNION ALL SELECT 'notice', pg_notify('{CHANNEL}', body)::text FROM unnest({p.param('TEXT[]')}) AS n(body)")
    if whole:
        # Takes the number of inbound messages, conversations, additions to a
        # load and histogram rows the batch holds.
        def count(*ctes: str, where: str = "") -> str:
            return " + ".join(f"(SELECT count(*) FROM {c}{where})" for c in ctes)

        text += (
            " UNION ALL SELECT 'refused', tierdesk_refuse('the batch was not written as decided') WHERE "
            f"{count('inbound_inserted')} <> {p.param('INTEGER')} "
            f"OR {count('conversations_inserted', 'conversations_updated')} <> {p.param('INTEGER')} "
            f"OR {count('load_moved', where=' WHERE d > 0')} <> {p.param('INTEGER')} "
            f"OR {count('histograms_inserted', 'histograms_updated')} <> {p.param('INTEGER')}")
    return text

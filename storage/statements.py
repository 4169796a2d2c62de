"""The group commit's statements, compiled once per dialect to SQL text with a
fixed parameter order, and the rows they take as tuples.

Executing a Core statement costs tens of microseconds of Python however few
its rows (cache key, parameter processing, result set-up), and a batch runs
about eight: that was most of the writer's CPU at half load. Text run with
the driver's executemany (through ``Connection.exec_driver_sql``, which keeps
SQLAlchemy's error translation and disconnect handling) costs little beyond
the rows. Values go to the driver as they are stored, so the conversions the
Core types made are made here: JSON is serialized as SQLAlchemy's JSON type
does with the engines' default serializer (``None`` too, as JSON ``null``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, bindparam, case, literal_column, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement

from router.changes import AgentProfile, ConversationState, MessageRecord, OutboxItem
from router.model import Handoff
from router.tracker import TrackerEvent

from . import tables as t

# Columns each row tuple below fills, in the order the compiled SQL takes them.
AGENT_COLUMNS = ("id", "name", "skills", "capacity", "status", "open_count", "idle_since", "created_at")
# The Core statement this replaces also set created_at to idle_since (it took
# every key of the row dict into its SET clause): kept so the rows stay the same.
PROFILE_COLUMNS = ("name", "skills", "capacity", "status", "idle_since", "created_at", "b_id")
CONVERSATION_COLUMNS = tuple(t.conversations.c.keys())
HANDOFF_COLUMNS = tuple(t.handoffs.c.keys())
MESSAGE_COLUMNS = ("id", "channel_id", "conversation_id", "sender", "text", "at", "external_id", "agent_id",
                   "tier", "intent", "confidence", "in_reply_to", "response", "outcome", "replied_at")
EVENT_COLUMNS = ("at", "kind", "channel_id", "conversation_id", "message_id", "handoff_id", "agent_id", "data")
OUTBOX_COLUMNS = ("idempotency_key", "channel_id", "conversation_id", "kind", "payload", "created_at", "status",
                  "attempts", "next_attempt_at")
ROLLUP_COLUMNS = ("hour", "channel_id", "name", "value")
HISTOGRAM_COLUMNS = ("hour", "channel_id", "stat", "counts")

# SQLite's default limit is 32,766 bound variables per statement.
_SQLITE_ROWS_PER_INSERT = 1000


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
        self.upsert_conversations = upsert(t.conversations, CONVERSATION_COLUMNS)
        self.upsert_handoffs = upsert(t.handoffs, HANDOFF_COLUMNS)
        self.insert_messages = insert_text(t.messages.insert(), MESSAGE_COLUMNS)
        self.insert_events = insert_text(t.events.insert(), EVENT_COLUMNS)
        self.insert_outbox = insert_text(t.outbox.insert(), OUTBOX_COLUMNS)
        self.set_replied_at = text(by_id(t.messages, replied_at=bindparam("replied_at")), ("replied_at", "b_id"))
        self.set_verdict = text(by_id(t.messages, verdict=bindparam("verdict")), ("verdict", "b_id"))

        a = t.agents
        new = a.c.open_count + bindparam("d", type_=Integer)
        # Takes (d, agent id), plus d again where the dialect binds by position.
        self._load_twice = dialect.paramstyle == "qmark"
        self.add_load = text(by_id(a, open_count=new).where(new <= a.c.capacity),
                             ("d", "b_id", "d") if self._load_twice else ("d", "b_id"))
        zero = literal_column("0")
        self.remove_load = text(by_id(a, open_count=case((new < zero, zero), else_=new)),
                                ("d", "d", "b_id") if self._load_twice else ("d", "b_id"))

        r = insert(t.metric_rollups)
        self.add_rollups = insert_text(
            r.on_conflict_do_update(index_elements=["hour", "channel_id", "name"],
                                    set_={"value": t.metric_rollups.c.value + r.excluded.value}),
            ROLLUP_COLUMNS)
        h = t.metric_histograms
        self.insert_histograms = insert_text(
            insert(h).on_conflict_do_nothing(index_elements=["hour", "channel_id", "stat"]), HISTOGRAM_COLUMNS)
        key = (h.c.hour == bindparam("hour")) & (h.c.channel_id == bindparam("channel_id")) & (
            h.c.stat == bindparam("stat"))
        self.lock_histogram = text(select(h.c.counts).where(key).with_for_update(), HISTOGRAM_COLUMNS[:3])
        self.set_histogram = text(update(h).where(key).values(counts=bindparam("counts")),
                                  ("counts", *HISTOGRAM_COLUMNS[:3]))

        # Inbound messages go in with one statement that says which of them
        # were new: a multi-row VALUES on SQLite, and on PostgreSQL one array
        # per column, which keeps the text (and the prepared statement) the
        # same whatever the batch size.
        single = insert_text(t.messages.insert(), MESSAGE_COLUMNS)
        head, values = single.split(" VALUES ", 1)
        tail = " ON CONFLICT (channel_id, external_id) DO NOTHING RETURNING messages.id"
        if dialect.name == "postgresql":
            casts = re.findall(r"\$\d+::([A-Z ]+)", values)
            if len(casts) != len(MESSAGE_COLUMNS):
                raise RuntimeError(f"cannot read the parameter types of {single!r}")
            arrays = ", ".join(f"${i}::{cast}[]" for i, cast in enumerate(casts, 1))
            self._inbound = f"{head} SELECT * FROM unnest({arrays}){tail}"
        else:
            self._inbound_head, self._inbound_row, self._inbound_tail = f"{head} VALUES ", values, tail

    def load(self, conn: Connection, agent_id: str, d: int) -> int:
        """Moves an agent's open count by d; returns how many rows it changed."""
        if d > 0:
            args = (d, agent_id, d) if self._load_twice else (d, agent_id)
            return conn.exec_driver_sql(self.add_load, args).rowcount
        args = (d, d, agent_id) if self._load_twice else (d, agent_id)
        return conn.exec_driver_sql(self.remove_load, args).rowcount

    def insert_inbound(self, conn: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """Inserts the messages that are new by (channel, external id) and
        returns their ids; the others were stored before, or earlier in rows."""
        if self.dialect == "postgresql":
            return set(conn.exec_driver_sql(self._inbound, tuple(map(list, zip(*rows, strict=True)))).scalars())
        stored: set[str] = set()
        for i in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
            chunk = rows[i : i + _SQLITE_ROWS_PER_INSERT]
            sql = self._inbound_head + ", ".join([self._inbound_row] * len(chunk)) + self._inbound_tail
            stored.update(conn.exec_driver_sql(sql, tuple(v for row in chunk for v in row)).scalars())
        return stored


def message_row(m: MessageRecord) -> tuple[Any, ...]:
    return (m.id, m.channel_id, m.conversation_id, m.sender.value, m.text, m.at, m.external_id, m.agent_id,
            m.tier.value if m.tier else None, m.intent, m.confidence, m.in_reply_to, json.dumps(m.response), m.outcome,
            m.replied_at)


def event_row(e: TrackerEvent) -> tuple[Any, ...]:
    return (e.at, e.kind.value, e.channel_id, e.conversation_id, e.message_id, e.handoff_id, e.agent_id,
            json.dumps(dict(e.data)))


def outbox_row(o: OutboxItem) -> tuple[Any, ...]:
    return (o.idempotency_key, o.channel_id, o.conversation_id, o.kind, json.dumps(o.payload), o.at, "pending", 0, o.at)


def new_agent_row(a: AgentProfile) -> tuple[Any, ...]:
    return (a.id, a.name, json.dumps(sorted(a.skills)), a.capacity, _status(a), 0, a.idle_since, a.idle_since)


def profile_row(a: AgentProfile) -> tuple[Any, ...]:
    return (a.name, json.dumps(sorted(a.skills)), a.capacity, _status(a), a.idle_since, a.idle_since, a.id)


def _status(a: Any) -> str:
    return a.status if isinstance(a.status, str) else a.status.value


def conversation_row(s: ConversationState) -> tuple[Any, ...]:
    return (s.id, s.channel_id, s.external_id, s.customer.id, s.customer.name, s.customer.vip, s.status.value,
            s.created_at, s.updated_at, s.bot_streak, s.handoff_count, s.handoff_id, s.agent_id)


def handoff_row(h: Handoff) -> tuple[Any, ...]:
    return (h.id, h.conversation_id, h.channel_id, h.seq, h.reason.value, h.skill, h.requested_at, h.vip,
            h.agent_id, h.assigned_at, h.first_reply_at, h.resolved_at)

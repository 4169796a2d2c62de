"""A group-commit batch written to SQLite through a plain sqlite3 connection,
in the writer's process (storage/writer_process.py).

The SQL text is compiled by SQLAlchemy once, at start-up
(storage/statements.py), and arrives here as strings: per statement,
SQLAlchemy's Python cost was most of the writer's CPU.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from router.rollups import EMPTY_HISTOGRAM, add_to_histogram

from .rows import (BatchRows, ChangeRows, Row, agent_rows, check_capacity, check_conversations,
                   live_changes)

# SQLite's default limit is 32,766 bound variables per statement; longer
# statements gain nothing more.
_MAX_VARIABLES = 32766
_MAX_ROWS = 256


@dataclass(frozen=True, slots=True)
class SqliteTexts:
    """The statements, compiled for SQLite (one-row INSERTs are run for many
    rows by ``insert_rows``)."""

    inbound: str  # INSERT ... ON CONFLICT DO NOTHING RETURNING id
    insert_agents: str
    update_agents: str
    insert_conversations: str  # INSERT ... ON CONFLICT DO NOTHING RETURNING id
    update_conversations: str  # UPDATE ... FROM (VALUES (row..., base)) ... RETURNING id
    upsert_handoffs: str
    add_load: str  # takes (d, agent id, d)
    remove_load: str  # takes (d, d, agent id)
    insert_messages: str
    insert_events: str
    insert_outbox: str
    insert_histograms: str
    lock_histogram: str
    set_histogram: str
    add_rollups: str
    set_replied_at: str
    set_verdict: str


class SqliteBatchWriter:
    """Writes batches through one connection; the caller owns the transaction."""

    def __init__(self, texts: SqliteTexts) -> None:
        self.texts = texts
        self._multi: dict[tuple[str, int], str] = {}

    def write(self, conn: sqlite3.Connection, batch: Sequence[ChangeRows]) -> list[bool]:
        """Returns, per change, whether its inbound message was a duplicate
        (and so nothing of it was written). Raises rows.CapacityRefused and
        rows.ConversationChanged."""
        sql = self.texts
        inbound = [c.inbound for c in batch if c.inbound is not None]
        stored: set[str] = set()
        for text, args in self._multi_row(sql.inbound, inbound):
            stored.update(r[0] for r in conn.execute(text, args))
        duplicates, live = live_changes(batch, stored)

        new_agents, profiles = agent_rows(live)
        if new_agents:
            conn.executemany(sql.insert_agents, new_agents)
        if profiles:
            conn.executemany(sql.update_agents, profiles)

        rows = BatchRows.of(live)
        new = [r for r, base in zip(rows.conversations, rows.conversation_bases, strict=True) if base == 0]
        old = [(*r, base) for r, base in zip(rows.conversations, rows.conversation_bases, strict=True) if base]
        written: set[str] = set()
        for single, args in ((sql.insert_conversations, new), (sql.update_conversations, old)):
            for text, values in self._multi_row(single, args):
                written.update(r[0] for r in conn.execute(text, values))
        check_conversations(rows, written)
        self.insert_rows(conn, sql.upsert_handoffs, rows.handoffs)
        moved = set()
        for agent_id, d in rows.load:
            if d > 0:
                changed = conn.execute(sql.add_load, (d, agent_id, d)).rowcount
            else:
                changed = conn.execute(sql.remove_load, (d, d, agent_id)).rowcount
            if changed == 1:
                moved.add(agent_id)
        check_capacity(rows.load, moved)
        self.insert_rows(conn, sql.insert_messages, rows.messages)
        self.insert_rows(conn, sql.insert_events, rows.events)
        self.insert_rows(conn, sql.insert_outbox, rows.outbox)
        if rows.histograms:
            # Read-modify-write: a histogram is a blob, which SQL cannot add
            # to; the write lock (BEGIN IMMEDIATE) is held already.
            keys = sorted(rows.histograms)
            self.insert_rows(conn, sql.insert_histograms, [(*k, EMPTY_HISTOGRAM) for k in keys])
            updates = []
            for key in keys:
                (current,) = conn.execute(sql.lock_histogram, key).fetchone()
                updates.append((add_to_histogram(current, rows.histograms[key]), *key))
            conn.executemany(sql.set_histogram, updates)
        self.insert_rows(conn, sql.add_rollups, rows.rollups)
        if rows.replied:
            conn.executemany(sql.set_replied_at, rows.replied)
        if rows.verdicts:
            conn.executemany(sql.set_verdict, rows.verdicts)
        return duplicates

    def insert_rows(self, conn: sqlite3.Connection, single: str, rows: list[Row]) -> None:
        """Runs a one-row INSERT text for many rows as multi-row VALUES
        statements: executemany steps the statement once per row, a round
        of Python and of sqlite3's bookkeeping per row; a chunk of rows is
        one step."""
        for text, args in self._multi_row(single, rows):
            conn.execute(text, args)

    def _multi_row(self, single: str, rows: list[Row]) -> Iterator[tuple[str, tuple[Any, ...]]]:
        # Chunks of a power of two rows: few distinct texts, so they stay in
        # the connection's statement cache instead of being compiled anew.
        if not rows:
            return
        cap = min(_MAX_ROWS, 1 << ((_MAX_VARIABLES // len(rows[0])).bit_length() - 1))
        i = 0
        while i < len(rows):
            n = min(cap, 1 << ((len(rows) - i).bit_length() - 1))
            text = self._multi.get((single, n))
            if text is None:
                head, rest = single.split("VALUES ", 1)
                end = rest.index(")") + 1
                text = self._multi[(single, n)] = f"{head}VALUES {', '.join([rest[:end]] * n)}{rest[end:]}"
            yield text, tuple(itertools.chain.from_iterable(rows[i : i + n]))
            i += n


def open_connection(path: str, synchronous: str) -> sqlite3.Connection:
    """The writer's connection."""
    conn = sqlite3.connect(path, cached_statements=256)
    configure(conn, synchronous)
    # Inside the batch's transaction, a statement that may fail halfway (a
    # multi-row INSERT under constraints) keeps the pages it changes in a
    # statement journal, to undo just itself; past 64 KiB, which a batch's
    # inserts pass, SQLite spills it to a temporary file it creates, writes
    # page by page and deletes, per statement. In memory it is a copy of
    # those pages: a batch's worth at most. Only here: the readers' large
    # sorts (reports over a month) stay in temporary files, out of RSS.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def commit_batch(conn: sqlite3.Connection, writer: SqliteBatchWriter, batch: Sequence[ChangeRows]) -> list[bool]:
    """One batch, one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        duplicates = writer.write(conn, batch)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return duplicates


def configure(conn: sqlite3.Connection, synchronous: str) -> None:
    """Settings every tierdesk connection to SQLite gets (the engines' too)."""
    # Transaction control is ours, not the sqlite3 module's: the writer uses
    # BEGIN IMMEDIATE to hold the write lock from the start instead of
    # failing to upgrade a read lock under contention.
    conn.isolation_level = None
    cur = conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    _use_wal(cur)
    # NORMAL in WAL mode survives a process crash; FULL also survives a
    # power cut, at a cost per commit (TIERDESK_SQLITE_SYNCHRONOUS).
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _use_wal(cur: Any) -> None:
    """WAL mode, set once per file. Setting it (even to what it is) fails at
    once with "database is locked" while another connection holds the file,
    without waiting for the busy timeout: so it is read first, and the
    switch of a new file retried for as long as the busy timeout."""
    deadline = time.monotonic() + 10.0
    while True:
        cur.execute("PRAGMA journal_mode")
        (mode,) = cur.fetchone()
        if str(mode).lower() == "wal":
            return
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)

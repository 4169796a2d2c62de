"""PostgreSQL's group commit writer: a batch in one round trip when it can.

The writer runs on the event loop, where a reply waits in its socket until
the loop gets round to it: under load each round trip of a batch cost about
as much as the loop's turn, and a batch took six of them (pool check-out
ping, BEGIN, inbound insert, histogram lock, the rest, COMMIT; 9.4 ms per
batch of 17 at saturation, measured before e2a757a). So a batch is written as
one statement of data-modifying CTEs on a connection of the writer's own,
outside any explicit transaction: PostgreSQL runs a lone statement as its
own transaction, its NOTIFYs (the relay's sync notices) sent on commit.

One statement cannot look at its results before it commits, so it checks
them itself: unless every inbound message was new, every conversation
written over the version it was decided on, every addition to an agent's
load within capacity and every histogram row written over the counts this
writer put there, ``tierdesk_refuse()`` raises and the statement rolls
back. The batch is then written the long way, in a transaction that reads
before it writes, which sorts out duplicates and names the changes refused
(the group committer then writes the others together).

Histogram rows are per writer (``metric_histograms.writer``): this writer
is the only one to add to its rows, so it knows their counts without a
read, and no instance waits on another's row lock. A rebuild of the rollups
may still change them behind its back; the compare-and-set sees that.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import Connection

from router.changes import Changes
from router.rollups import EMPTY_HISTOGRAM, HistogramDelta, add_to_histogram
from router.errors import Unavailable

from .engine import Engines, HeldConnection
from .notify import sync_notices
from .rows import (MESSAGE_REPLIED_AT, BatchRows, ChangeRows, ChangesRefused, RollupKey, agent_rows,
                   check_capacity, live_changes, refused_changes, touched_agents)
from .statements import Statements, whole_args

log = structlog.get_logger(__name__)

# The statement's own refusal (storage/migrations/versions/0006).
REFUSED = "TD001"
# The batch statement is planned once per connection (planning it costs
# ~0.6 ms, as much as running it for a batch of 16; left to choose,
# PostgreSQL kept planning it for every batch), and that one plan is made
# safe: every table it reads it reaches by key, and a plan made while a
# table was nearly empty (seq scan, hash join) would scan it whole on every
# batch once it has grown.
WRITER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "enable_hashjoin": "off",
                   "enable_mergejoin": "off"}
# Counts of the writer's histogram rows kept in memory; past this many
# (rows of hours long gone) they are forgotten, and read again if needed.
MAX_KNOWN_HISTOGRAMS = 4096


class PgWriter:
    def __init__(self, engines: Engines, sql: Statements, *, origin: str | None) -> None:
        """``origin``: this instance's name on the relay; when set, each
        commit tells the other instances what it changed."""
        self.engines = engines
        self._sql = sql
        self.origin = origin
        # Unique to this process: the name of the histogram rows it owns.
        self.writer = origin or f"{os.getpid()}-{os.urandom(4).hex()}"
        self._histograms: dict[RollupKey, bytes] = {}
        self._held = HeldConnection(engines.write, WRITER_SETTINGS)
        # The group committer writes one batch at a time; this keeps any
        # other caller from interleaving with the counts the writer knows.
        self._lock = asyncio.Lock()
        self.one_statement_batches = 0
        self.stepwise_batches = 0

    async def close(self) -> None:
        await self._held.drop()

    async def write(self, batch: Sequence[Changes]) -> list[bool]:
        """Per change, whether its inbound message was a duplicate (and so
        nothing of it was written)."""
        rows = [ChangeRows.of(c) for c in batch]
        async with self._lock:
            if await self._write_whole(rows):
                self.one_statement_batches += 1
                return [False] * len(rows)
            self.stepwise_batches += 1
            written: dict[RollupKey, bytes] = {}
            async with self.engines.writing() as conn:
                duplicates = await conn.run_sync(self._write_in_steps, rows, written)
            self._remember(written)
            return duplicates

    # ------------------------------------------------------- one round trip
    async def _write_whole(self, batch: Sequence[ChangeRows]) -> bool:
        """True when the batch was written as one statement; False when it
        must be written the long way (nothing of it was)."""
        if any(c.new_agents or c.agents for c in batch):
            return False  # agent settings: rare, and read back in steps
        rows = BatchRows.of(batch)
        inbound = [c.inbound for c in batch if c.inbound is not None]
        folded = _fold_marks(inbound, rows.marks())
        if folded is None:
            return False
        inbound, marks = folded
        fresh: list[tuple[Any, ...]] = []
        known: list[tuple[Any, ...]] = []
        written: dict[RollupKey, bytes] = {}
        for key in sorted(rows.histograms):
            before = self._histograms.get(key)
            counts = written[key] = add_to_histogram(before or EMPTY_HISTOGRAM, rows.histograms[key])
            if before is None:
                fresh.append((*key, self.writer, counts))
            else:
                known.append((*key, self.writer, counts, before))
        notices = [] if self.origin is None else sync_notices(self.origin, rows, touched_agents([], [], rows.load))
        args = whole_args(inbound, rows, marks, fresh, known, notices)
        driver = await self._held.driver()
        try:
            await driver.fetch(self._sql.write_whole, *args)
        except asyncpg.PostgresError as exc:
            if not isinstance(exc, asyncpg.PostgresConnectionError):
                # The server said no and rolled the statement back: write
                # the batch in steps, which says why (or writes it after all).
                if exc.sqlstate != REFUSED:
                    log.info("batch_statement_failed", error=repr(exc))
                for key in written:
                    self._histograms.pop(key, None)
                return False
            await self._lost(written, exc)
        except Exception as exc:  # noqa: BLE001 - the socket's, the driver's (its state machine's too), a timeout
            await self._lost(written, exc)
        self._remember(written)
        return True

    async def _lost(self, written: dict[RollupKey, bytes], exc: Exception) -> None:
        # The connection broke: whether the statement committed is unknown,
        # so the counts this writer knows may be wrong (the next
        # compare-and-set will tell) and the batch fails like any batch the
        # database could not take.
        await self._held.drop()
        for key in written:
            self._histograms.pop(key, None)
        raise Unavailable("the database is unavailable; retry") from exc

    def _remember(self, written: dict[RollupKey, bytes]) -> None:
        if len(self._histograms) + len(written) > MAX_KNOWN_HISTOGRAMS:
            self._histograms.clear()
        self._histograms.update(written)

    # ---------------------------------------------------------- the long way
    def _write_in_steps(self, conn: Connection, batch: Sequence[ChangeRows],
                        written: dict[RollupKey, bytes]) -> list[bool]:
        sql = self._sql
        inbound = [c.inbound for c in batch if c.inbound is not None]
        stored = sql.insert_inbound(conn, inbound) if inbound else set()
        duplicates, live = live_changes(batch, stored)
        new_agents, profiles = agent_rows(live)
        if new_agents:
            conn.exec_driver_sql(sql.insert_agents, new_agents)
        if profiles:
            conn.exec_driver_sql(sql.update_agents, profiles)
        rows = BatchRows.of(live)
        notices = [] if self.origin is None else sync_notices(
            self.origin, rows, touched_agents(new_agents, profiles, rows.load))
        moved, conversations = sql.write_rest(conn, rows, self._histogram_rows(conn, rows.histograms, written),
                                              notices)
        # Each refused change named, so that the others go in with one more
        # write, not one write each: two instances filling the last free
        # slots at once refused a change in most batches, and writing those
        # batches one change at a time held up every request for half a
        # second (the first burst of handoffs in `make bench`).
        refused = refused_changes(live, rows, conversations, moved, lambda ids: sql.agent_loads(conn, ids))
        if refused:
            places = [i for i, dup in enumerate(duplicates) if not dup]
            raise ChangesRefused({places[i]: why for i, why in refused.items()})
        # Every change fits over the loads read after the refusal (they moved
        # meanwhile): refused all the same, to be written one by one.
        check_capacity(rows.load, moved)
        return duplicates

    def _histogram_rows(self, conn: Connection, hist: dict[RollupKey, HistogramDelta],
                        written: dict[RollupKey, bytes]) -> list[tuple[Any, ...]]:
        # Read-modify-write under a row lock: a histogram is a blob, which SQL
        # cannot add to.
        if not hist:
            return []
        keys = sorted(hist)
        current = self._sql.lock_histograms(conn, keys, self.writer, EMPTY_HISTOGRAM)
        for key in keys:
            written[key] = add_to_histogram(current[key], hist[key])
        return [(*key, self.writer, written[key]) for key in keys]


def _fold_marks(inbound: list[tuple[Any, ...]], marks: list[tuple[str, float | None, str | None]]
                ) -> tuple[list[tuple[Any, ...]], list[tuple[str, float | None, str | None]]] | None:
    """The batch's own inbound messages with their replies marked in their
    rows (one statement's UPDATE cannot see the rows its INSERT adds), and
    the marks left for stored messages; None when a verdict would have to
    go on a message inserted here (no column of the insert holds it)."""
    if not marks:
        return inbound, marks
    position = {row[0]: i for i, row in enumerate(inbound)}
    rows = list(inbound)
    rest = []
    for mark in marks:
        i = position.get(mark[0])
        if i is None:
            rest.append(mark)
            continue
        _, replied_at, verdict = mark
        if verdict is not None:
            return None
        if replied_at is not None:
            row = rows[i]
            rows[i] = (*row[:MESSAGE_REPLIED_AT], replied_at, *row[MESSAGE_REPLIED_AT + 1:])
    return rows, rest

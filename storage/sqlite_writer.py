"""SQLite's group commit writer: one connection, on a thread of its own.

SQLite takes one writer at a time, so one connection writes every batch. It
is a plain sqlite3 connection running precompiled text (storage/sqlite_batch.py),
not an engine: SQLAlchemy's per-statement Python cost was most of the
writer's CPU. sqlite3 lets go of the GIL while SQLite works, so the writing
itself overlaps the event loop; the statements are few per batch (multi-row
VALUES) because each one is a GIL hand-over between the two threads.

Tried and not kept: the writer in a process of its own, fed pickled rows
over a pipe. Under saturation it gained 4 % (within run-to-run noise) and
moved the rows' building onto the event loop; docs/performance.md.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from router.changes import Changes

from .rows import ChangeRows
from .sqlite_batch import SqliteBatchWriter, SqliteTexts, configure


def open_connection(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, cached_statements=256)
    configure(conn, synchronous)
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


class SqliteWriter:
    """Writes each batch in one transaction, on its own thread."""

    def __init__(self, path: str, synchronous: str, texts: SqliteTexts) -> None:
        self._path, self._synchronous = path, synchronous
        self._writer = SqliteBatchWriter(texts)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: sqlite3.Connection | None = None

    async def write(self, batch: Sequence[Changes]) -> list[bool]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._write, batch)

    def _write(self, batch: Sequence[Changes]) -> list[bool]:
        # The rows are made here, off the event loop's critical path.
        rows = [ChangeRows.of(c) for c in batch]
        if self._conn is None:
            self._conn = open_connection(self._path, self._synchronous)
        return commit_batch(self._conn, self._writer, rows)

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

"""Which conversations exist: the read every message of a conversation that is
not in memory makes, answered without SQLAlchemy.

Under load nearly every such message starts a new conversation, so the answer
is nearly always "none of them". Through SQLAlchemy's async engine that
empty answer cost ~1 ms of CPU per batch (statement compilation and cache
keys, a greenlet, several thread hops through aiosqlite): the largest single
cost of a message at a quiet hour. Here it is one prepared statement: on
SQLite on a connection that only reads, in a thread of its own (one hop per batch;
WAL readers never wait for the writer), on PostgreSQL straight on asyncpg.
Only the keys found are then loaded in full (storage/store.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from tierdesk.errors import Unavailable

from .engine import Engines

Key = tuple[str, str]  # (channel id, the channel's conversation id)

# Bound parameters per statement: SQLite's limit is 32,766 since 3.32, but
# small statements keep sqlite3's statement cache useful.
CHUNK = 256


def _by_channel(keys: Iterable[Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for channel_id, external_id in keys:
        grouped[channel_id].append(external_id)
    return grouped


class SqliteConversationKeys:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-lookup")

    async def existing(self, keys: list[Key]) -> set[Key]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._query, keys)
        except sqlite3.Error as exc:
            raise Unavailable("the database is unavailable; retry") from exc

    def _query(self, keys: list[Key]) -> set[Key]:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=10000")
        found: set[Key] = set()
        for channel_id, ids in _by_channel(keys).items():
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                sql = ("SELECT external_id FROM conversations WHERE channel_id = ? AND external_id IN ("
                       + ",".join("?" * len(chunk)) + ")")
                found.update((channel_id, row[0]) for row in self._conn.execute(sql, (channel_id, *chunk)))
        return found

    async def close(self) -> None:
        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, _close)
        self._thread.shutdown(wait=True)


class PostgresConversationKeys:
    SQL = "SELECT external_id FROM conversations WHERE channel_id = $1 AND external_id = ANY($2::text[])"

    def __init__(self, engines: Engines) -> None:
        self._engines = engines

    async def existing(self, keys: list[Key]) -> set[Key]:
        import asyncpg

        found: set[Key] = set()
        async with self._engines.reading() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            try:
                for channel_id, ids in _by_channel(keys).items():
                    # asyncpg prepares and caches the statement per connection.
                    rows = await raw.fetch(self.SQL, channel_id, ids)
                    found.update((channel_id, r[0]) for r in rows)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                raise Unavailable("the database is unavailable; retry") from exc
        return found

    async def close(self) -> None:
        pass


def conversation_keys(engines: Engines) -> SqliteConversationKeys | PostgresConversationKeys:
    if engines.dialect == "sqlite":
        database = engines.read.url.database
        if not database or database == ":memory:":
            raise ValueError("tierdesk needs a SQLite file, not an in-memory database")
        return SqliteConversationKeys(database)
    return PostgresConversationKeys(engines)

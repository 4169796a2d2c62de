"""Which conversations exist: the read every message of a conversation that is
not in memory makes, answered without SQLAlchemy.

Under load nearly every such message starts a new conversation, so the answer
is nearly always "none of them". Through SQLAlchemy's async engine that
empty answer cost ~1 ms of CPU per batch (statement compilation and cache
keys, a greenlet, several thread hops through aiosqlite): the largest single
cost of a message at a quiet hour. Here it is one prepared statement: on
SQLite on a connection that only reads, in a thread of its own (one hop per batch;
WAL readers never wait for the writer), and only for keys a filter of the
stored ones cannot rule out; on PostgreSQL straight on asyncpg.
Only the keys found are then loaded in full (storage/store.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from router.errors import Unavailable

from .engine import Engines, HeldConnection
from .key_filter import KeyFilter

log = structlog.get_logger(__name__)

Key = tuple[str, str]  # (channel id, the channel's conversation id)

# Bound parameters per statement: SQLite's limit is 32,766 since 3.32, but
# small statements keep sqlite3's statement cache useful.
CHUNK = 256
# Look-ups go one at a time (storage/batch_loader.py), so one that hangs (a
# connection gone silent) holds up every message of a conversation not in
# memory: it is given up after this long, and the next one reconnects.
LOOKUP_TIMEOUT_SECONDS = 5.0


def _by_channel(keys: Iterable[Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for channel_id, external_id in keys:
        grouped[channel_id].append(external_id)
    return grouped


class StoredKeys:
    """A filter of every stored conversation key (storage/key_filter.py):
    built from a scan of the table, kept up to date by note(), rebuilt four
    times larger once outgrown. A key it rules out needs no query."""

    # The filter is sized for at least this many keys (1.2 MB).
    MIN_CAPACITY = 1_000_000
    # Keys added to a new filter per event-loop step (a few milliseconds).
    NOTED_PER_STEP = 2000

    def __init__(self, scan: Callable[[int], Awaitable[KeyFilter]]) -> None:
        """``scan(capacity)``: a filter of every key stored now."""
        self._scan = scan
        self._filter: KeyFilter | None = None
        # Keys noted while a build scans the table, added to what it built.
        self._noted: list[Key] | None = None
        self._build: asyncio.Task[None] | None = None

    def surely_absent(self, key: Key) -> bool:
        """Whether the filter rules the key out: then the look-up needs no
        query, nor a turn of the event loop waiting with others for one."""
        known = self._filter
        return known is not None and not known.full and key not in known

    def maybe_stored(self, keys: list[Key]) -> list[Key]:
        """The keys the filter cannot rule out (all of them until it is built)."""
        known = self._filter
        if known is None or known.full:
            self.start_build()
        return keys if known is None else [k for k in keys if k in known]

    def note(self, keys: Iterable[Key]) -> None:
        """Keys whose conversations were just written (or refused: they may
        exist), here or elsewhere. No stored key may ever be missing."""
        keys = list(keys)
        if self._filter is not None:
            self._filter.update(keys)
        if self._noted is not None:
            self._noted.extend(keys)

    def forget(self) -> None:
        """Keys may have been stored without a note (the news of another
        instance's were lost): nothing is ruled out until a rebuild."""
        self._filter = None
        if self._build is not None:
            self._build.cancel()  # it may have scanned before them
            self._build = None
        self.start_build()

    def start_build(self) -> None:
        if self._build is None:
            self._noted = []
            self._build = asyncio.get_running_loop().create_task(self._rebuild(), name="conversation-key-filter")

    async def built(self) -> None:
        """Waits for the build under way, if any."""
        if self._build is not None:
            await asyncio.shield(self._build)

    async def _rebuild(self) -> None:
        capacity = max(self.MIN_CAPACITY, 4 * (self._filter.count if self._filter is not None else 0))
        try:
            try:
                built = await self._scan(capacity)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - look-ups go to the database; tried again later
                log.warning("key_filter_not_built", error=repr(exc))
                self._noted = None
                return
            # The keys noted while it scanned, a step at a time: a rebuild
            # while serving (the relay back, the filter outgrown) notes
            # thousands, and those noted meanwhile join the same list.
            noted, done = self._noted or [], 0
            while len(noted) - done > self.NOTED_PER_STEP:
                built.update(noted[done : done + self.NOTED_PER_STEP])
                done += self.NOTED_PER_STEP
                await asyncio.sleep(0)
            built.update(noted[done:])
            self._noted = None
            self._filter = built
        finally:
            if self._build is asyncio.current_task():
                self._build = None

    async def close(self) -> None:
        if self._build is not None:
            self._build.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._build


class SqliteConversationKeys:
    """On SQLite, whose one writer is this process, a filter of every stored
    key answers most questions without the hop."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-lookup")
        self.stored = StoredKeys(self._scan_in_thread)
        self.queries = 0  # look-ups that went to the database

    async def prepare(self) -> None:
        """Builds the filter (before serving: until it is built, every
        look-up goes to the database)."""
        self.stored.start_build()
        await self.stored.built()

    def surely_absent(self, key: Key) -> bool:
        return self.stored.surely_absent(key)

    async def existing(self, keys: list[Key]) -> set[Key]:
        keys = self.stored.maybe_stored(keys)
        if not keys:
            return set()
        self.queries += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._query, keys)
        except sqlite3.Error as exc:
            raise Unavailable("the database is unavailable; retry") from exc

    def note(self, keys: Iterable[Key]) -> None:
        self.stored.note(keys)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout=10000")
        return self._conn

    async def _scan_in_thread(self, capacity: int) -> KeyFilter:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._scan, capacity)

    def _scan(self, capacity: int) -> KeyFilter:
        conn = self._connection()
        (count,) = conn.execute("SELECT count(*) FROM conversations").fetchone()
        built = KeyFilter(max(capacity, 4 * count))
        built.update(conn.execute("SELECT channel_id, external_id FROM conversations"))
        return built

    def _query(self, keys: list[Key]) -> set[Key]:
        conn = self._connection()
        found: set[Key] = set()
        for channel_id, ids in _by_channel(keys).items():
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                sql = ("SELECT external_id FROM conversations WHERE channel_id = ? AND external_id IN ("
                       + ",".join("?" * len(chunk)) + ")")
                found.update((channel_id, row[0]) for row in conn.execute(sql, (channel_id, *chunk)))
        return found

    async def close(self) -> None:
        await self.stored.close()

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._thread, _close)
        self._thread.shutdown(wait=True)


class PostgresConversationKeys:
    """The question goes out on a connection of its own (storage/engine.py's
    HeldConnection): one round trip, not a pool check-out's ping and then
    the query. Questions come one at a time (storage/batch_loader.py).

    Other instances create conversations too, so a filter of the stored keys
    is kept only from when a relay listens that says which keys they store
    (``listening``, storage/notify.py's created_keys). A message can
    still reach this instance before the news of its conversation does:
    then this instance starts the conversation anew, the database refuses
    the second one, the key is noted and the message decided again on the
    stored conversation, as when two instances start one at once."""

    SQL = "SELECT external_id FROM conversations WHERE channel_id = $1 AND external_id = ANY($2::text[])"
    # Rows per fetch while a build scans the table: the filter grows between
    # two event-loop steps, a few milliseconds each.
    SCAN_ROWS = 2000

    def __init__(self, engines: Engines) -> None:
        self._engines = engines
        self._held = HeldConnection(engines.read)
        self._lock = asyncio.Lock()  # one query at a time on the one connection
        self.stored: StoredKeys | None = None
        self.queries = 0

    def surely_absent(self, key: Key) -> bool:
        return self.stored is not None and self.stored.surely_absent(key)

    async def existing(self, keys: list[Key]) -> set[Key]:
        import asyncpg

        if self.stored is not None:
            keys = self.stored.maybe_stored(keys)
            if not keys:
                return set()
        self.queries += 1
        async with self._lock:
            try:
                return await self._fetch(await self._held.driver(), keys)
            except BaseException as exc:
                await self._held.drop()  # failed or cancelled mid-query: its state is unknown
                if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)):
                    raise Unavailable("the database is unavailable; retry") from exc
                raise

    async def _fetch(self, raw: Any, keys: list[Key]) -> set[Key]:
        found: set[Key] = set()
        for channel_id, ids in _by_channel(keys).items():
            # asyncpg prepares and caches the statement per connection.
            rows = await raw.fetch(self.SQL, channel_id, ids, timeout=LOOKUP_TIMEOUT_SECONDS)
            found.update((channel_id, r[0]) for r in rows)
        return found

    async def _scan(self, capacity: int) -> KeyFilter:
        # A connection of its own: the look-ups go on meanwhile.
        held = HeldConnection(self._engines.read)
        try:
            raw = await held.driver()
            async with raw.transaction(readonly=True):
                count = await raw.fetchval("SELECT count(*) FROM conversations")
                built = KeyFilter(max(capacity, 4 * count))
                cursor = await raw.cursor("SELECT channel_id, external_id FROM conversations")
                while rows := await cursor.fetch(self.SCAN_ROWS):
                    built.update((r[0], r[1]) for r in rows)
            return built
        finally:
            await held.drop()

    async def prepare(self) -> None:
        pass

    def listening(self) -> None:
        """The relay listens (again): from now on no key another instance
        stores goes unnoted, so the filter is built (again: while the relay
        was away some may have been)."""
        if self.stored is None:
            self.stored = StoredKeys(self._scan)
            self.stored.start_build()
        else:
            self.stored.forget()

    async def built(self) -> None:
        if self.stored is not None:
            await self.stored.built()

    def note(self, keys: Iterable[Key]) -> None:
        if self.stored is not None:
            self.stored.note(keys)

    async def close(self) -> None:
        if self.stored is not None:
            await self.stored.close()
        await self._held.drop()


def conversation_keys(engines: Engines) -> SqliteConversationKeys | PostgresConversationKeys:
    if engines.dialect == "sqlite":
        database = engines.read.url.database
        if not database or database == ":memory:":
            raise ValueError("tierdesk needs a SQLite file, not an in-memory database")
        return SqliteConversationKeys(database)
    return PostgresConversationKeys(engines)

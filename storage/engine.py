"""Engines for both dialects, with the settings each needs to be safe and fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from router.errors import Conflict, Unavailable

from .errors import Unstorable
from .sqlite_batch import configure


@dataclass(frozen=True, slots=True)
class Engines:
    """SQLite allows one writer at a time, so writes get an engine of their own
    with a single connection; reads use a pool. PostgreSQL uses one pool."""

    write: AsyncEngine
    read: AsyncEngine
    dialect: str
    # SQLite only: the database file, and its durability setting, for the
    # group commit's writer (storage/sqlite_writer.py), which writes through
    # a plain sqlite3 connection of its own.
    sqlite_path: str | None = None
    sqlite_synchronous: str = "NORMAL"

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        async with _translated():
            async with self.read.connect() as conn:
                yield conn

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        async with _translated():
            async with self.write.begin() as conn:
                yield conn

    async def dispose(self) -> None:
        await self.write.dispose()
        if self.read is not self.write:
            await self.read.dispose()


# PostgreSQL gave up on the transaction because of another one, not because
# of the data: a deadlock, a serialization failure, a lock not available.
CONTENTION_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
# SQLSTATE class 22, "data exception": a value PostgreSQL cannot hold (a NUL
# character in text, an encoding error, a number out of range). It says
# nothing about the server's health, only about that value.
DATA_EXCEPTION_CLASS = "22"


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """Database trouble becomes the product's errors: a clash with existing
    data, or with another instance's transaction, is a Conflict (the group
    committer then writes the batch change by change, and the Desk decides
    a refused change again); anything else (server down, pool exhausted,
    timeout) is Unavailable, which callers may retry."""
    try:
        yield
    except exc.IntegrityError as e:
        raise Conflict("that would clash with existing data") from e
    except exc.DBAPIError as e:
        sqlstate = getattr(e.orig, "sqlstate", None) or ""
        if sqlstate in CONTENTION_SQLSTATES:
            raise Conflict("another instance's transaction was in the way", code="write_contention") from e
        if sqlstate.startswith(DATA_EXCEPTION_CLASS):
            raise Unstorable(f"the database cannot store a value of this change (SQLSTATE {sqlstate})") from e
        raise Unavailable("the database is unavailable; retry") from e
    except (exc.TimeoutError, OSError, TimeoutError) as e:
        raise Unavailable("the database is unavailable; retry") from e


def async_url(url: str) -> str:
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+pysqlite"):
        u = u.set(drivername="sqlite+aiosqlite")
    elif u.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(engine: AsyncEngine | Engine, *, begin: str, synchronous: str) -> None:
    target = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(target, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        configure(dbapi_connection, synchronous)

    @event.listens_for(target, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql(begin)


def create_engines(url: str, *, pool_size: int = 5, sqlite_synchronous: str = "NORMAL",
                   wait_seconds: float = 5.0) -> Engines:
    """``wait_seconds``: how long a PostgreSQL connection is waited for (from
    the pool, or a new one) before the database counts as unavailable."""
    url = async_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        write = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        read = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=60)
        _sqlite_pragmas(write, begin="BEGIN IMMEDIATE", synchronous=sqlite_synchronous)
        _sqlite_pragmas(read, begin="BEGIN", synchronous=sqlite_synchronous)
        return Engines(write=write, read=read, dialect="sqlite", sqlite_path=u.database or "",
                       sqlite_synchronous=sqlite_synchronous)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=wait_seconds,
        # Fail fast when the server is gone instead of hanging requests.
        # Every execution planned for the tables as they are: asyncpg
        # prepares each statement once per connection, and a generic plan
        # PostgreSQL caches while a table is nearly empty (a new deployment,
        # a benchmark) keeps scanning it whole once it is large, until an
        # ANALYZE happens to invalidate it. That took the conversation
        # look-up from 0.02 to 6 ms per query within a minute of load
        # (auto_explain under load, before fde0715). The group commit's statement,
        # too large to plan every time, is kept on key paths instead
        # (storage/pg_writer.py).
        # Connecting gives up after wait_seconds (5 s by default): a refused
        # connection fails at once anyway, and a busy server (a checkpoint's
        # fsync on a loaded disk) took over 2 s to accept one, which turned a
        # slow moment into 503s.
        connect_args={"timeout": wait_seconds, "command_timeout": 30,
                      "server_settings": {"plan_cache_mode": "force_custom_plan"}},
    )
    return Engines(write=engine, read=engine, dialect=u.get_backend_name())


class HeldConnection:
    """A PostgreSQL connection taken from the pool once and kept for one job
    (the group commit's writer, the conversation look-up), used through the
    driver: a check-out per use would cost a round trip of its own (the
    pool's pre-ping) on top of the one the job needs."""

    def __init__(self, engine: AsyncEngine, settings: dict[str, str] | None = None) -> None:
        """``settings``: session settings set on each connection taken."""
        self._engine = engine
        self._settings = settings or {}
        self._conn: AsyncConnection | None = None
        self._driver: Any = None

    async def driver(self) -> Any:
        """The asyncpg connection, taken (again) if there is none or it closed."""
        if self._driver is None or self._driver.is_closed():
            await self.drop()
            try:
                conn = await self._engine.connect()
                self._conn = conn
                driver = (await conn.get_raw_connection()).driver_connection
                for name, value in self._settings.items():
                    await driver.execute("SELECT set_config($1, $2, false)", name, value)
            except Exception as exc:  # noqa: BLE001 - the pool's errors, SQLAlchemy's and the driver's
                await self.drop()
                raise Unavailable("the database is unavailable; retry") from exc
            self._driver = driver
        return self._driver

    async def drop(self) -> None:
        """Throws the connection away (after a failure that may have left it
        in any state); the next use takes a fresh one."""
        conn, self._conn, self._driver = self._conn, None, None
        if conn is not None:
            try:
                await conn.invalidate()
                await conn.close()
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass

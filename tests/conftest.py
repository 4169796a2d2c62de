"""Shared fixtures: real databases (a SQLite file and the PostgreSQL at
127.0.0.1:5432), the demo FAQ model, and a running app with a fake clock."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from router.ports import FakeClock
from storage.migrate import upgrade
from storage.tables import metadata

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_ADMIN_URL = os.environ.get("TIERDESK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SKIP_POSTGRES = os.environ.get("TIERDESK_TEST_SKIP_POSTGRES") == "1"
ADMIN_TOKEN = "td_admin_test-token"


def _sync_pg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> None:
    """argon2 at its production cost takes ~50-300 ms a hash on this machine,
    and the suite signs people in hundreds of times: still argon2id, cheaper."""
    from tierdesk import passwords

    passwords.use_parameters(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@contextmanager
def _new_postgres_database() -> Iterator[str]:
    if SKIP_POSTGRES:
        pytest.skip("PostgreSQL opted out with TIERDESK_TEST_SKIP_POSTGRES=1")
    name = f"tierdesk_test_{uuid.uuid4().hex[:10]}"
    # No pool: a fault test restarts the server, and a pooled connection
    # would be dead by teardown.
    admin = create_engine(_sync_pg_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - the environment is broken
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is part of the test run and cannot be reached ({exc}). "
            "Start it, point TIERDESK_TEST_POSTGRES_URL at one, or opt out with TIERDESK_TEST_SKIP_POSTGRES=1."
        )
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with _new_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_database() -> Iterator[str]:
    """A migrated PostgreSQL database of the module's own, for a state its
    tests share: db_url and pg_url empty postgres_database under it."""
    with _new_postgres_database() as url:
        yield url


def _truncate_postgres(url: str) -> None:
    engine = create_engine(_sync_pg_url(url))
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture
def pg_url(postgres_database: str) -> str:
    """The test PostgreSQL database, emptied: for what only PostgreSQL does
    (two instances on one database, its one-statement writer)."""
    _truncate_postgres(postgres_database)
    return postgres_database


def _sqlite_copy(request: pytest.FixtureRequest, directory: Path) -> str:
    path = directory / "tierdesk.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database of each kind."""
    if request.param == "sqlite":
        return _sqlite_copy(request, tmp_path)
    url = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """db_url for a module's life, for a state its tests share. PostgreSQL
    gets a database of its own: db_url and pg_url empty postgres_database."""
    if request.param == "sqlite":
        return _sqlite_copy(request, tmp_path_factory.mktemp("module-db"))
    return request.getfixturevalue("module_postgres_database")


@pytest.fixture(scope="session")
def demo_model():  # type: ignore[no-untyped-def]
    """The bundled demo knowledge base, trained once for the session."""
    from tests.support.models import train_demo

    return train_demo()


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo knowledge base trained as `faq train` does, once for the
    session (v0001 live, v0002 beside it); serve from a copy of it,
    tests.support.models.copy_store."""
    from tests.support.models import train_store

    return train_store(tmp_path_factory.mktemp("demo-store"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_767_225_600.0)  # 2026-01-01T00:00:00Z


@pytest.fixture
async def app_client(aiohttp_client, db_url: str, clock: FakeClock, demo_model):  # type: ignore[no-untyped-def]
    from tests.support.api import Api

    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model)
    yield api

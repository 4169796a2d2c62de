"""storage/lookup.py: which conversations exist, on both databases."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from router.changes import Changes
from storage.engine import create_engines
from storage import lookup
from storage.lookup import CHUNK, conversation_keys
from storage.store import SqlStore
from tests.integration.test_store import conversation
from tierdesk.errors import Unavailable


async def _store_conversations(db_url: str, keys: list[tuple[str, str]]) -> None:
    engines = create_engines(db_url)
    store = SqlStore(engines)
    try:
        for i, (channel_id, external_id) in enumerate(keys):
            c = Changes()
            c.conversation(dataclasses.replace(conversation(f"c{i}", external_id), channel_id=channel_id))
            await store.commit(c)
    finally:
        await store.close()
        await engines.dispose()


async def test_finds_exactly_the_stored_keys_across_channels_and_chunks(db_url: str) -> None:
    stored = [("web", f"x{i}") for i in range(0, 2 * CHUNK + 10, 3)] + [("app", "x1"), ("app", "x2")]
    await _store_conversations(db_url, stored)
    asked = [("web", f"x{i}") for i in range(2 * CHUNK + 10)] + [("app", "x1"), ("app", "x2"), ("app", "x3"), ("sms", "x0")]
    engines = create_engines(db_url)
    keys = conversation_keys(engines)
    try:
        assert await keys.existing(asked) == set(stored)
        assert await keys.existing([]) == set()
        # The same key asked twice in one batch is one answer.
        assert await keys.existing([("app", "x2"), ("app", "x2")]) == {("app", "x2")}
    finally:
        await keys.close()
        await engines.dispose()


async def test_an_unreadable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database" * 100)
    engines = create_engines(f"sqlite:///{path}")
    keys = conversation_keys(engines)
    try:
        with pytest.raises(Unavailable):
            await keys.existing([("web", "x1")])
    finally:
        await keys.close()
        await engines.dispose()


async def test_a_postgresql_look_up_that_hangs_is_given_up_and_the_next_reconnects(
        postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # One look-up at a time: a hung one must not hold up the others for long.
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_database)
    await _store_conversations(postgres_database, [("web", "x1")])
    monkeypatch.setattr(lookup, "LOOKUP_TIMEOUT_SECONDS", 0.5)
    engines = create_engines(postgres_database)
    keys = conversation_keys(engines)
    try:
        assert await keys.existing([("web", "x1")]) == {("web", "x1")}
        async with engines.write.connect() as blocker:
            # A reader waits for this lock, as it would for an answer that never comes.
            await blocker.execute(text("BEGIN"))
            await blocker.execute(text("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await keys.existing([("web", "x1")])
            assert time.monotonic() - started < 3.0
            await blocker.execute(text("ROLLBACK"))
        assert await keys.existing([("web", "x1"), ("web", "x2")]) == {("web", "x1")}
    finally:
        await keys.close()
        await engines.dispose()

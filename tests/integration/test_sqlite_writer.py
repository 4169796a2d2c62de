"""SQLite's writer process (storage/sqlite_writer.py): what happens when it
dies, is signalled, or the store closes; on a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.engine import create_engines
from storage.store import SqlStore
from tests.integration.test_store import message_changes
from tierdesk.errors import Unavailable


@pytest.fixture
async def store(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[SqlStore]:
    path = tmp_path / "tierdesk.db"
    shutil.copy(sqlite_template, path)
    s = SqlStore(create_engines(f"sqlite:///{path}"))
    await s.prepare()
    yield s
    await s.close()
    await s.engines.dispose()


def writer_pid(store: SqlStore) -> int:
    proc = store._sqlite._proc  # type: ignore[union-attr]
    assert proc is not None and proc.returncode is None
    return proc.pid


async def test_a_writer_killed_in_the_middle_of_a_batch_fails_it_and_the_next_batch_gets_a_new_one(
        store: SqlStore) -> None:
    await store.commit(message_changes("c1", "x1", "m1"))
    pid = writer_pid(store)
    os.kill(pid, signal.SIGSTOP)  # holds the next batch unanswered
    pending = asyncio.create_task(store.commit(message_changes("c2", "x2", "m2")))
    await asyncio.sleep(0.2)
    assert not pending.done()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable):
        await pending
    after = message_changes("c3", "x3", "m3")
    after.generation = store.committer.generation_floor  # decided after the failure
    await store.commit(after)
    assert writer_pid(store) != pid
    # c2 was never read by the stopped writer: neither stored nor acknowledged.
    assert await store.count("conversations") == 2


async def test_the_writer_ignores_the_signals_that_stop_the_server(store: SqlStore) -> None:
    pid = writer_pid(store)
    # A terminal's Ctrl-C or a service manager's SIGTERM reaches the whole
    # process group; the server still writes what is queued, through it.
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.2)
    await store.commit(message_changes("c1", "x1", "m1"))
    assert writer_pid(store) == pid
    assert await store.count("messages") == 1


async def test_closing_the_store_ends_the_writer(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "tierdesk.db"
    shutil.copy(sqlite_template, path)
    s = SqlStore(create_engines(f"sqlite:///{path}"))
    await s.commit(message_changes("c1", "x1", "m1"))  # started by the first batch, without prepare()
    proc = s._sqlite._proc  # type: ignore[union-attr]
    assert proc is not None
    await s.close()
    await s.engines.dispose()
    assert proc.returncode == 0


async def test_the_writer_process_does_without_numpy(store: SqlStore) -> None:
    # It adds to stored histograms in plain Python (router/rollups.py):
    # numpy alone would be ~19 MiB of its memory, counted against the RSS target.
    maps = Path(f"/proc/{writer_pid(store)}/maps")
    if not maps.exists():
        pytest.skip("needs /proc")
    await store.commit(message_changes("c1", "x1", "m1"))
    assert "numpy" not in maps.read_text()
    assert "numpy" in Path(f"/proc/{os.getpid()}/maps").read_text()  # the server's does: the check can fail

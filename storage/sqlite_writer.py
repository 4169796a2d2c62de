"""SQLite's group commit writer: one connection, in a process of its own.

SQLite takes one writer at a time, so one connection writes every batch. It
is a plain sqlite3 connection running precompiled text (storage/sqlite_batch.py),
not an engine: SQLAlchemy's per-statement Python cost was most of the
writer's CPU. It runs in a child process (storage/writer_process.py) with
an interpreter, and so a GIL, of its own: on a thread, every statement of a
batch handed the GIL back and forth with the busy event loop, and a batch of
~30 messages took ~10 ms for ~3 ms of CPU (measured before f8bb633, which
moved it into the child).
The event loop turns each batch into rows (storage/rows.py), sends them
over a pipe and awaits the answer, which the child sends after COMMIT: a
request is answered only once its rows are durable.

If the child dies, the batch it was writing fails (whether it was committed
is unknown: the channel's retry of a message finds it stored or not, by its
id) and the next batch starts a new child.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from router.changes import Changes
from router.errors import Unavailable

from .rows import ChangeRows
from .sqlite_batch import SqliteTexts
from .writer_process import HEADER_SIZE, frame, length, unframe

log = structlog.get_logger(__name__)

# The directory holding the storage package: the child runs from it, so
# that `python -m storage.writer_process` imports this very code.
_CODE_ROOT = Path(__file__).resolve().parent.parent
CLOSE_TIMEOUT_SECONDS = 10.0


class SqliteWriter:
    """Writes each batch in one transaction, in its own process."""

    def __init__(self, path: str, synchronous: str, texts: SqliteTexts) -> None:
        self._setup = (path, synchronous, texts)
        self._proc: asyncio.subprocess.Process | None = None
        # One batch on the pipe at a time (the group committer sends them so).
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Start the child now rather than on the first batch."""
        async with self._lock:
            await self._started()

    async def write(self, batch: Sequence[Changes]) -> list[bool]:
        rows = [ChangeRows.of(c) for c in batch]
        async with self._lock:
            proc = await self._started()
            return await self._ask(proc, rows)  # type: ignore[no-any-return]

    async def close(self) -> None:
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            assert proc.stdin is not None
            proc.stdin.close()  # the child ends when its input does
            try:
                await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                log.error("sqlite_writer_not_stopping", pid=proc.pid)
                proc.kill()
                await proc.wait()

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "storage.writer_process", cwd=_CODE_ROOT,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            self._proc = proc
            await self._ask(proc, self._setup)  # "ready": its connection is open
            return proc
        return self._proc

    async def _ask(self, proc: asyncio.subprocess.Process, request: object) -> object:
        """Send one frame, await the answer; the child's exception is raised here."""
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(frame(request))
            await proc.stdin.drain()
            header = await proc.stdout.readexactly(HEADER_SIZE)
            kind, value = unframe(await proc.stdout.readexactly(length(header)))
        except (OSError, asyncio.IncompleteReadError) as exc:
            await self._discard()
            raise Unavailable("the SQLite writer process stopped") from exc
        except BaseException:
            # Cancelled halfway through: the pipe is out of step.
            await self._discard()
            raise
        if kind == "raised":
            if request is self._setup:
                await self._discard()
            raise value
        return value

    async def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

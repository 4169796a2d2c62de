"""Group commit: one writer turns the changes of concurrent requests into one
transaction, and each request waits for its own changes to be durable.

A commit costs a round trip and (on SQLite) an fsync of the WAL; paying it
once per batch instead of once per request is what lets the service keep up
with aiohttp. While a batch is being written, new changes queue up and form
the next batch, so batches grow exactly as much as the load requires and an
idle service commits each request at once.

If a batch fails, every change queued behind it fails too: it may have been
decided on state that the failed batch was meant to persist. A refusal is
different: the database said no to one change (an agent's capacity, a
conversation another instance changed first) and the rest of the batch is
as valid as it was, so its changes are written again one by one and only
the refused ones fail; anything decided on a refused change is refused in
turn by the same guards. So is a change the database cannot store (a value
it has no room for, Unstorable): its batch is written change by change too,
and only that change fails.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence

import structlog

from router.changes import Changes
from router.ports import DuplicateMessage
from router.errors import ChangeRefused, Conflict, Unavailable

from .errors import Unstorable

log = structlog.get_logger(__name__)

# Writes a batch in one transaction; returns, per change, whether it was a
# duplicate inbound message (and so skipped).
WriteBatch = Callable[[Sequence[Changes]], Awaitable[list[bool]]]


class GroupCommitter:
    def __init__(self, write: WriteBatch, *, max_batch: int = 1000) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[tuple[Changes, asyncio.Future[None]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._failure_listeners: list[Callable[[], None]] = []
        self._closing = False
        # Changes decided on a working set older than this are refused.
        self.generation_floor = 0
        self.batches = 0
        self.committed = 0
        self.refused = 0

    def on_failure(self, listener: Callable[[], None]) -> None:
        """Called synchronously when a batch fails, before any waiter wakes."""
        self._failure_listeners.append(listener)

    def start(self) -> None:
        if self._task is None:
            self._wakeup = asyncio.Event()
            # A context of its own: started from inside the first request, the
            # writer would otherwise log that request's id on every batch.
            self._task = asyncio.create_task(self._run(), name="group-commit", context=contextvars.Context())

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        if self._task is not None and self._wakeup is not None:
            self._wakeup.set()
            await self._task
            self._task = None

    def pending(self) -> int:
        return len(self._queue)

    async def commit(self, changes: Changes) -> None:
        if self._closing:
            raise Unavailable("shutting down")
        if changes.generation < self.generation_floor:
            raise Unavailable("state was reloaded; retry")
        if self._task is None:
            self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((changes, fut))
        assert self._wakeup is not None
        self._wakeup.set()
        await fut

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            try:
                duplicates = await self._write([c for c, _ in batch])
            except (Conflict, Unstorable) as exc:
                if len(batch) == 1:
                    self._refuse(batch[0][1], exc)
                else:
                    await self._write_one_by_one(batch)
                continue
            except Exception as exc:  # noqa: BLE001 - every other failure fails the batch
                self._fail(batch, exc)
                continue
            self._settle(batch, duplicates)

    def _settle(self, batch: list[tuple[Changes, asyncio.Future[None]]], duplicates: list[bool]) -> None:
        self.batches += 1
        self.committed += len(batch)
        for (_, fut), dup in zip(batch, duplicates, strict=True):
            if not fut.done():
                if dup:
                    fut.set_exception(DuplicateMessage())
                else:
                    fut.set_result(None)

    async def _write_one_by_one(self, batch: list[tuple[Changes, asyncio.Future[None]]]) -> None:
        for i, (changes, fut) in enumerate(batch):
            try:
                duplicates = await self._write([changes])
            except (Conflict, Unstorable) as exc:
                self._refuse(fut, exc)
                continue
            except Exception as exc:  # noqa: BLE001
                self._fail(batch[i:], exc)
                return
            self._settle([(changes, fut)], duplicates)

    def _refuse(self, fut: asyncio.Future[None], exc: Conflict | Unstorable) -> None:
        self.refused += 1
        log.warning("change_refused", error=repr(exc))
        if not fut.done():
            # Deciding again cannot help a value the database cannot hold.
            fut.set_exception(exc if isinstance(exc, Unstorable) else ChangeRefused(f"{exc.message}; retry"))

    def _fail(self, batch: list[tuple[Changes, asyncio.Future[None]]], exc: Exception) -> None:
        behind, self._queue = self._queue, []
        failed = batch + behind
        log.error("group_commit_failed", error=repr(exc), changes=len(failed))
        self.generation_floor = max(c.generation for c, _ in failed) + 1
        for listener in self._failure_listeners:
            listener()
        err = Unavailable("the database could not store the change; retry")
        for _, fut in failed:
            if not fut.done():
                fut.set_exception(err)

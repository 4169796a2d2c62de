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
as valid as it was. Where the database names the changes it refused
(PostgreSQL's writer does), those fail and the others are written together
again; otherwise the changes are written again one by one and only the
refused ones fail. Anything decided on a refused change is refused in turn
by the same guards. So is a change the database cannot store (a value
it has no room for, Unstorable): its batch is written change by change too,
and only that change fails.

At moderate rates batches stay small: a commit takes less time than the gap
between messages, so nearly each one pays a commit of its own (SQLite's
WAL pages, PostgreSQL's WAL flush, a round trip), which doubled the CPU of
a message at half the saturated rate. So, like PostgreSQL's
``commit_delay``, the writer may *linger*: when the recent rate says that
waiting ``linger`` seconds would add at least half again the changes
already queued, it waits that long before taking the batch. An idle service
never waits (the first change after a quiet spell is written at once), nor
does a saturated one (its queue is already longer than a linger would add).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence

import structlog

from router.changes import Changes
from router.ports import DuplicateMessage
from router.errors import ChangeRefused, Conflict, Unavailable

from .errors import SomeRefused, Unstorable

log = structlog.get_logger(__name__)

# The arrival rate that decides lingering is counted over windows of this
# long: short enough to follow a burst, long enough to mean something.
RATE_WINDOW_SECONDS = 0.25
# Lingering is worth its latency when the changes expected to join meanwhile
# are at least this share of those already queued: for a lone change, half a
# change more expected saves a third of the commits.
LINGER_WORTH = 0.5

# Writes a batch in one transaction; returns, per change, whether it was a
# duplicate inbound message (and so skipped).
WriteBatch = Callable[[Sequence[Changes]], Awaitable[list[bool]]]


class GroupCommitter:
    def __init__(self, write: WriteBatch, *, max_batch: int = 1000, linger: float = 0.0) -> None:
        """``linger``: seconds a batch may wait for more changes (0: never)."""
        self._write = write
        self._max_batch = max_batch
        self._linger = linger
        self._rate = 0.0  # changes a second over the last full window
        self._window_start = 0.0
        self._window_arrivals = 0
        self._last_arrival = 0.0
        self._last_gap = float("inf")  # between the last two changes queued
        self._lingering: asyncio.Future[None] | None = None
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
        if self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)  # what is queued goes now
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
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        now = loop.time()
        self._last_gap, self._last_arrival = now - self._last_arrival, now
        self._window_arrivals += 1
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
            if self._linger and self._more_expected() and not self._closing:
                await self._linger_a_while()
            batch = self._queue[: self._max_batch]
            del self._queue[: len(batch)]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Changes, asyncio.Future[None]]]) -> None:
        while batch:
            try:
                duplicates = await self._write([c for c, _ in batch])
            except SomeRefused as exc:
                # The database named the changes it refused: the others are
                # written together again, not one write each.
                for i, why in exc.refused.items():
                    self._refuse(batch[i][1], why)
                batch = [entry for i, entry in enumerate(batch) if i not in exc.refused]
                continue
            except (Conflict, Unstorable) as exc:
                if len(batch) == 1:
                    self._refuse(batch[0][1], exc)
                else:
                    await self._write_one_by_one(batch)
                return
            except Exception as exc:  # noqa: BLE001 - every other failure fails the batch
                self._fail(batch, exc)
                return
            self._settle(batch, duplicates)
            return

    async def _linger_a_while(self) -> None:
        loop = asyncio.get_running_loop()
        self._lingering = done = loop.create_future()
        timer = loop.call_later(self._linger, _resolve, done)
        try:
            await done
        finally:
            timer.cancel()
            self._lingering = None

    def _more_expected(self) -> bool:
        """Whether lingering would add enough changes to this batch."""
        now = asyncio.get_running_loop().time()
        elapsed = now - self._window_start
        if elapsed >= RATE_WINDOW_SECONDS:
            self._rate = self._window_arrivals / elapsed
            self._window_start, self._window_arrivals = now, 0
        # A change after a quiet spell is written at once, whatever the rate
        # before the spell: the stream it belonged to has stopped.
        return (self._rate * self._linger >= LINGER_WORTH * len(self._queue)
                and self._last_gap < RATE_WINDOW_SECONDS)

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


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

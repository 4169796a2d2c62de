"""A read-through cache with expiring entries, for what the hot path reads
on every request (a token's principal, a channel).

No entry is served older than ``ttl`` (a revoked token stops working
within it). Past half of it, an entry is read again once, in the
background, while requests keep the value they have: when it expired for
everyone at once, a busy channel's concurrent requests all queued behind
database reads every ``ttl`` (64 requests, up to ~470 ms, measured before
f79b326). A key not yet known, or an entry too old
to serve, is read once however many requests ask for it at the same time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

K = TypeVar("K")
V = TypeVar("V")


class ReadThrough(Generic[K, V]):
    def __init__(self, load: Callable[[K], Awaitable[V]], ttl: float, *, max_entries: int = 50_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._reads: dict[K, asyncio.Task[V]] = {}
        # Moved on by forget(): a read that began before is not kept.
        self._generation = 0

    async def get(self, key: K) -> V:
        hit = self._entries.get(key)
        if hit is not None:
            age = self._clock() - hit[0]
            if age < self._ttl:
                if age >= self._ttl / 2:
                    self._read(key)
                return hit[1]
        # shield: a request that gives up must not cancel a read others await.
        return await asyncio.shield(self._read(key))

    def forget(self, stale: Callable[[V], bool] | None = None) -> None:
        """Drop the entries whose value is ``stale`` (all of them without
        it); reads under way are not kept either."""
        self._generation += 1
        if stale is None:
            self._entries.clear()
            return
        for key, (_, value) in list(self._entries.items()):
            if stale(value):
                del self._entries[key]

    async def close(self) -> None:
        reads = list(self._reads.values())
        for task in reads:
            task.cancel()
        await asyncio.gather(*reads, return_exceptions=True)

    def _read(self, key: K) -> asyncio.Task[V]:
        task = self._reads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read_and_keep(key, self._generation))
            self._reads[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return task

    async def _read_and_keep(self, key: K, generation: int) -> V:
        value = await self._load(key)
        if generation == self._generation:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (self._clock(), value)
        return value

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]
        # A background read's failure has nobody awaiting it: say so here.
        if not task.cancelled() and task.exception() is not None:
            log.warning("cache_read_failed", error=repr(task.exception()))

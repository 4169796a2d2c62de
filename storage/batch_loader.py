"""Look-ups that arrive together share one query, and one query runs at a
time: those that arrive while it runs share the next one.

Under load a new query would otherwise start every event-loop turn, each on
a connection of its own: on PostgreSQL, each one a pool check-out (with its
ping, a round trip of its own) and SQLAlchemy's bookkeeping, ~6 % of the
loop's samples on the FAQ path (py-spy, before 2f5b99c); on SQLite
they queued for the one look-up thread anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchLoader(Generic[K, V]):
    def __init__(self, fetch_many: Callable[[list[K]], Awaitable[dict[K, V]]]) -> None:
        self._fetch_many = fetch_many
        # Each caller waits on a future of its own, so one caller giving up
        # (a client hanging up) cancels nothing for the others.
        self._pending: dict[K, list[asyncio.Future[V | None]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        if not self._pending and self._running is None:
            loop.call_soon(self._flush)
        fut: asyncio.Future[V | None] = loop.create_future()
        self._pending.setdefault(key, []).append(fut)
        return await fut

    def _flush(self) -> None:
        if not self._pending or self._running is not None:
            return
        batch, self._pending = self._pending, {}
        self._running = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add_done_callback(self._next)

    def _next(self, _done: asyncio.Task[None]) -> None:
        self._running = None
        self._flush()  # what arrived meanwhile

    async def _run(self, batch: dict[K, list[asyncio.Future[V | None]]]) -> None:
        try:
            found = await self._fetch_many(list(batch))
        except BaseException as exc:
            for futures in batch.values():
                for fut in futures:
                    if not fut.done():
                        fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, futures in batch.items():
            value = found.get(key)
            for fut in futures:
                if not fut.done():
                    fut.set_result(value)

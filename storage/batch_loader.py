"""Look-ups that arrive in the same event-loop turn share one query."""

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
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        fut: asyncio.Future[V | None] = loop.create_future()
        self._pending.setdefault(key, []).append(fut)
        return await fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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

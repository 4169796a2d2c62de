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
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> V | None:
        fut = self._pending.get(key)
        if fut is None:
            loop = asyncio.get_running_loop()
            if not self._pending:
                loop.call_soon(self._flush)
            fut = self._pending[key] = loop.create_future()
        return await asyncio.shield(fut)

    def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await self._fetch_many(list(batch))
        except BaseException as exc:
            for fut in batch.values():
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # a caller that gave up must not warn
            if not isinstance(exc, Exception):
                raise
            return
        for key, fut in batch.items():
            if not fut.done():
                fut.set_result(found.get(key))

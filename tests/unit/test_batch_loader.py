"""storage/batch_loader.py: look-ups that arrive together share a query, one
query runs at a time, and what arrives meanwhile shares the next."""

from __future__ import annotations

import asyncio

import pytest

from storage.batch_loader import BatchLoader


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def fetch(self, keys: list[str]) -> dict[str, str]:
        self.batches.append(sorted(keys))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            if self.fail is not None:
                raise self.fail
            return {k: k.upper() for k in keys if not k.startswith("missing")}
        finally:
            self.running -= 1


async def test_lookups_while_one_runs_wait_and_share_the_next_query() -> None:
    r = Recorder()
    loader: BatchLoader[str, str] = BatchLoader(r.fetch)
    first = [asyncio.create_task(loader.get(k)) for k in ("a", "b", "a")]
    await asyncio.sleep(0.01)
    assert r.batches == [["a", "b"]]
    later = [asyncio.create_task(loader.get(k)) for k in ("c", "missing-d")]
    await asyncio.sleep(0.01)
    more = asyncio.create_task(loader.get("e"))
    await asyncio.sleep(0.01)
    assert r.batches == [["a", "b"]]  # still one query, the rest waiting
    r.release.set()
    assert await asyncio.gather(*first) == ["A", "B", "A"]
    assert await asyncio.gather(*later, more) == ["C", None, "E"]
    assert r.batches == [["a", "b"], ["c", "e", "missing-d"]]
    assert r.most_running == 1


async def test_a_failed_query_fails_its_callers_only_and_the_next_runs() -> None:
    r = Recorder()
    loader: BatchLoader[str, str] = BatchLoader(r.fetch)
    r.fail = RuntimeError("database gone")
    doomed = asyncio.create_task(loader.get("a"))
    await asyncio.sleep(0.01)
    waiting = asyncio.create_task(loader.get("b"))
    await asyncio.sleep(0)
    r.release.set()
    with pytest.raises(RuntimeError, match="database gone"):
        await doomed
    r.fail = None
    assert await waiting == "B"
    assert r.batches == [["a"], ["b"]]


async def test_a_caller_that_gives_up_cancels_nothing_for_the_others() -> None:
    r = Recorder()
    loader: BatchLoader[str, str] = BatchLoader(r.fetch)
    impatient = asyncio.create_task(loader.get("a"))
    patient = asyncio.create_task(loader.get("a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    r.release.set()
    assert await patient == "A"
    assert impatient.cancelled()

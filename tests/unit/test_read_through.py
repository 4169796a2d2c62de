"""The read-through cache of tokens and channels (tierdesk/web/read_through.py)."""

from __future__ import annotations

import asyncio

import pytest

from tierdesk.web.read_through import ReadThrough


class Source:
    """A database stand-in: each read takes until ``release`` is set."""

    def __init__(self) -> None:
        self.value = "v1"
        self.reads = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail = False

    async def load(self, key: str) -> str:
        self.reads += 1
        await self.release.wait()
        if self.fail:
            raise RuntimeError("database away")
        return f"{key}:{self.value}"


async def settle() -> None:
    """Let the reads in the background finish."""
    for _ in range(5):
        await asyncio.sleep(0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_key_asked_for_by_many_requests_at_once_is_read_once(source: Source, clock: Clock) -> None:
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    source.release.clear()
    waiting = [asyncio.create_task(cache.get("k")) for _ in range(64)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*waiting) == ["k:v1"] * 64
    assert source.reads == 1
    assert await cache.get("k") == "k:v1" and source.reads == 1


async def test_an_entry_past_half_its_time_is_read_again_in_the_background_while_requests_keep_it(
        source: Source, clock: Clock) -> None:
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    await cache.get("k")
    assert await cache.get("k") == "k:v1" and source.reads == 1  # fresh: no read
    source.value, clock.t = "v2", clock.t + 16
    source.release.clear()
    # Nobody waits for the read: every request gets the value there is, and
    # only one read goes to the database.
    assert [await cache.get("k") for _ in range(64)] == ["k:v1"] * 64
    await settle()
    assert source.reads == 2
    source.release.set()
    await settle()
    assert await cache.get("k") == "k:v2" and source.reads == 2


async def test_an_entry_older_than_its_time_is_not_served(source: Source, clock: Clock) -> None:
    # A revoked token stops working within the time, whatever happens.
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    await cache.get("k")
    clock.t += 30
    source.fail = True
    with pytest.raises(RuntimeError):
        await cache.get("k")


async def test_a_failed_background_read_keeps_the_value_until_it_is_too_old(source: Source, clock: Clock) -> None:
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    await cache.get("k")
    clock.t += 16
    source.fail = True
    assert await cache.get("k") == "k:v1"
    await settle()
    assert await cache.get("k") == "k:v1"  # the failed read is not kept; another is tried
    await settle()
    assert source.reads == 3


async def test_a_read_under_way_when_entries_are_forgotten_is_not_kept(source: Source, clock: Clock) -> None:
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    source.release.clear()
    pending = asyncio.create_task(cache.get("k"))
    await asyncio.sleep(0)
    cache.forget()  # a revocation while the token was being read
    source.release.set()
    assert await pending == "k:v1"  # asked before the revocation
    source.value = "v2"
    assert await cache.get("k") == "k:v2" and source.reads == 2


async def test_forgetting_some_values_keeps_the_others(source: Source, clock: Clock) -> None:
    cache: ReadThrough[str, str] = ReadThrough(source.load, 30.0, clock=clock)
    await cache.get("a")
    await cache.get("b")
    cache.forget(lambda v: v.startswith("a:"))
    source.value = "v2"
    assert await cache.get("a") == "a:v2"
    assert await cache.get("b") == "b:v1"

"""What a failed or refused batch does to the changes in it and behind it
(the group committer over a scripted write)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from router.changes import Changes
from storage.errors import SomeRefused
from storage.group_commit import GroupCommitter
from tierdesk.errors import CapacityExceeded, Unavailable


class ScriptedWrite:
    """Writes batches; refuses (a Conflict, or naming them) any batch holding
    a change marked refused, fails (the database is away) any holding one
    marked broken."""

    def __init__(self) -> None:
        self.refused: set[int] = set()
        self.broken: set[int] = set()
        self.written: list[int] = []
        self.batches: list[int] = []
        self.naming = False  # whether a refusal names the changes refused (as PostgreSQL's writer does)

    async def __call__(self, batch: Sequence[Changes]) -> list[bool]:
        await asyncio.sleep(0)
        self.batches.append(len(batch))
        ids = [id(c) for c in batch]
        if self.broken & set(ids):
            raise OSError("connection lost")
        if self.refused & set(ids):
            if self.naming:
                raise SomeRefused({i: CapacityExceeded("agent 'a1' would exceed capacity")
                                   for i, c in enumerate(ids) if c in self.refused})
            raise CapacityExceeded("agent 'a1' would exceed capacity")
        self.written += ids
        return [False] * len(batch)


async def _all(committer: GroupCommitter, changes: list[Changes]) -> list[BaseException | None]:
    return await asyncio.gather(*(committer.commit(c) for c in changes), return_exceptions=True)


async def test_a_refused_change_fails_alone_and_the_rest_of_its_batch_is_written() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write)
    failures: list[int] = []
    committer.on_failure(lambda: failures.append(1))
    changes = [Changes() for _ in range(6)]
    write.refused.add(id(changes[3]))
    results = await _all(committer, changes)
    assert [i for i, r in enumerate(results) if r is not None] == [3]
    assert isinstance(results[3], Unavailable) and "capacity" in str(results[3])
    assert sorted(write.written) == sorted(id(c) for i, c in enumerate(changes) if i != 3)
    assert failures == [] and committer.refused == 1 and committer.generation_floor == 0
    await committer.close()


async def test_changes_the_database_names_as_refused_fail_and_the_rest_is_written_together() -> None:
    write = ScriptedWrite()
    write.naming = True
    committer = GroupCommitter(write)
    changes = [Changes() for _ in range(7)]
    write.refused |= {id(changes[2]), id(changes[5])}
    results = await _all(committer, changes)
    assert [i for i, r in enumerate(results) if r is not None] == [2, 5]
    assert all(isinstance(results[i], Unavailable) and "capacity" in str(results[i]) for i in (2, 5))
    assert sorted(write.written) == sorted(id(c) for i, c in enumerate(changes) if i not in (2, 5))
    # the batch, then the five others together: no write of one change each
    assert write.batches == [7, 5] and committer.refused == 2
    await committer.close()


async def test_a_batch_the_database_fails_fails_everything_queued_behind_it() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write)
    failures: list[int] = []
    committer.on_failure(lambda: failures.append(1))
    first = [Changes(generation=2) for _ in range(3)]
    write.broken.add(id(first[1]))
    results = await _all(committer, first)
    assert all(isinstance(r, Unavailable) for r in results)
    assert write.written == [] and failures == [1]
    # Decided before the failure: refused; decided after it: written.
    with pytest.raises(Unavailable):
        await committer.commit(Changes(generation=2))
    await committer.commit(Changes(generation=committer.generation_floor))
    assert len(write.written) == 1
    await committer.close()


async def test_an_idle_committer_writes_at_once_whatever_the_linger() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write, linger=30.0)
    # The first change after a quiet spell sees no rate: it is not held back.
    await asyncio.wait_for(committer.commit(Changes()), timeout=10.0)
    assert write.batches == [1]
    await committer.close()


async def test_under_a_steady_rate_batches_linger_and_gather_changes() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write, linger=0.2)
    # A change every 5 ms for 0.4 s: once a rate window (0.25 s) has passed,
    # a linger of 0.2 s expects dozens more, so the writer waits and batches
    # grow. (Only a machine slowing each 5 ms sleep fifty-fold, to a gap of a
    # whole rate window, would keep the batches at one.)
    pending = []
    for _ in range(80):
        pending.append(asyncio.ensure_future(committer.commit(Changes())))
        await asyncio.sleep(0.005)
    await asyncio.gather(*pending)
    assert sum(write.batches) == 80
    assert max(write.batches) >= 3 and len(write.batches) <= 60, write.batches
    await committer.close()


async def test_closing_does_not_linger() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write, linger=30.0)
    for _ in range(30):  # a rate that would linger
        asyncio.ensure_future(committer.commit(Changes()))
        await asyncio.sleep(0.01)
    await asyncio.wait_for(committer.close(), timeout=10.0)
    assert sum(write.batches) == 30


async def test_the_first_change_after_a_quiet_spell_does_not_linger() -> None:
    write = ScriptedWrite()
    committer = GroupCommitter(write, linger=0.05)
    for _ in range(30):  # a rate that lingers...
        asyncio.ensure_future(committer.commit(Changes()))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.4)  # ...then a pause longer than the rate's window
    committer._linger = 30.0  # a change that lingered now would time out below
    before = len(write.batches)
    await asyncio.wait_for(committer.commit(Changes()), timeout=10.0)
    assert write.batches[before:] == [1]
    await asyncio.wait_for(committer.close(), timeout=10.0)

"""The group-commit writer runs outside the request that happened to start it."""

from __future__ import annotations

import asyncio

from router.changes import Changes
from storage.group_commit import GroupCommitter
from tierdesk.logging import _request_context, begin_request


async def test_the_writer_does_not_inherit_the_first_requests_log_context() -> None:
    seen: list[object] = []

    async def write(batch):  # type: ignore[no-untyped-def]
        seen.append(_request_context.get())
        return [False] * len(batch)

    committer = GroupCommitter(write)

    async def request(rid: str) -> None:
        begin_request(request_id=rid)
        await committer.commit(Changes())

    await asyncio.gather(asyncio.create_task(request("r1")), asyncio.create_task(request("r2")))
    await committer.close()
    assert seen and all(ctx is None for ctx in seen)

"""storage/lookup.py's StoredKeys: the filter of stored conversation keys as
it is built while keys are being noted, with the scan of the table faked."""

from __future__ import annotations

import asyncio

from storage.key_filter import KeyFilter
from storage.lookup import StoredKeys


async def test_keys_noted_while_it_is_built_are_all_kept_and_added_a_step_at_a_time() -> None:
    scanned = asyncio.Event()

    async def scan(capacity: int) -> KeyFilter:
        await scanned.wait()
        built = KeyFilter(capacity)
        built.update([("ch", "stored")])
        return built

    keys = StoredKeys(scan)
    keys.start_build()
    await asyncio.sleep(0)
    assert not keys.surely_absent(("ch", "anything"))  # nothing ruled out before it is built
    noted = [("ch", f"noted{i}") for i in range(3 * StoredKeys.NOTED_PER_STEP + 5)]
    keys.note(noted)
    turns = 0

    async def meanwhile() -> None:
        nonlocal turns
        while not keys.surely_absent(("ch", "never stored")):
            turns += 1
            if turns == 2:
                keys.note([("ch", "noted while they are added")])
            await asyncio.sleep(0)

    other = asyncio.create_task(meanwhile())
    scanned.set()
    await keys.built()
    await other
    assert turns >= 3  # the loop ran between the steps of adding them
    for key in [("ch", "stored"), *noted, ("ch", "noted while they are added")]:
        assert not keys.surely_absent(key), key

"""The event loop's longest step (tierdesk/loop_watch.py), judged on the CPU
time the step burned, never on the wall clock."""

from __future__ import annotations

import asyncio
import time

import uvloop

from tierdesk.loop_watch import LoopWatch


def burn(cpu_seconds: float) -> float:
    """Hold the loop's thread for this much of its own CPU time; what it took."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < cpu_seconds:
        sum(range(1000))
    return time.thread_time() - t0


async def beats(watch: LoopWatch, n: int) -> None:
    target = watch.beats + n
    while watch.beats < target:
        await asyncio.sleep(watch.period)


async def watched_burn(cpu_seconds: float) -> tuple[float, float]:
    watch = LoopWatch()
    watch.start(asyncio.get_running_loop())
    try:
        await beats(watch, 2)
        burned = burn(cpu_seconds)
        await beats(watch, 2)  # the heartbeat after the step has run
        return burned, watch.longest
    finally:
        watch.stop()


async def test_a_step_that_burns_cpu_is_recorded_whole() -> None:
    burned, longest = await watched_burn(0.03)
    assert longest >= burned >= 0.03


def test_on_uvloop_too() -> None:
    burned, longest = uvloop.run(watched_burn(0.03))
    assert longest >= burned >= 0.03


async def test_stopped_it_schedules_nothing() -> None:
    watch = LoopWatch()
    watch.start(asyncio.get_running_loop())
    await beats(watch, 1)
    watch.stop()
    seen = watch.beats
    await asyncio.sleep(watch.period * 4)
    assert watch.beats == seen

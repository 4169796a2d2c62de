"""`tierdesk serve`, with every step of its event loop timed in CPU.

    python bench/step_probe.py OUT.json serve [args of tierdesk serve]

The server's own gauge (tierdesk_loop_longest_step_cpu_seconds,
tierdesk/loop_watch.py) is an upper bound: the CPU between two heartbeats,
which at saturation spans a whole loop iteration of many steps. This probe
names the steps themselves, from when the server is ready (when its
LoopWatch starts: the same window as the gauge's). It runs the server on asyncio's own loop
(uvloop runs callbacks from C, with no place to time them) and wraps the
one method every callback and task step goes through, so it costs on every
step: use it to find what the long steps are, not to measure the server's
speed. The garbage collector's time inside each step is counted apart.

Every 2 s, and at exit, OUT.json gets the slowest steps (CPU ms, the
garbage collector's part, the callback or coroutine, seconds after the
server was ready) and a histogram of all steps' CPU time.
"""

from __future__ import annotations

import asyncio.events
import atexit
import gc
import heapq
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

KEEP = 40
# Upper edges, ms, of the histogram's buckets.
EDGES = (0.1, 0.5, 1, 2, 5, 10, 20, 50, 100, float("inf"))


def describe(handle: asyncio.events.Handle) -> str:
    callback = handle._callback  # noqa: SLF001 - what the step runs is the point
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}" if frame else ""
        return f"task {getattr(coro, '__qualname__', coro)}{where}"
    return f"callback {getattr(callback, '__qualname__', repr(callback))}"


class Probe:
    def __init__(self, out: str) -> None:
        self.out = out
        self.slowest: list[tuple[float, float, str, float]] = []  # a min-heap of (cpu, gc, what, at)
        self.buckets: Counter[str] = Counter()
        self.steps = 0
        self.recording = False
        self.started = 0.0  # when recording began, time.monotonic()
        self.gc_cpu = 0.0
        self._gc_started = 0.0
        self._loop_thread = threading.get_ident()

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self._loop_thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        else:
            self.gc_cpu += time.thread_time() - self._gc_started

    def record(self, cpu: float, gc_cpu: float, handle: asyncio.events.Handle) -> None:
        self.steps += 1
        ms = cpu * 1000
        self.buckets[next(f"<= {e:g} ms" for e in EDGES if ms <= e)] += 1
        if len(self.slowest) < KEEP or cpu > self.slowest[0][0]:
            item = (cpu, gc_cpu, describe(handle), time.monotonic() - self.started)
            if len(self.slowest) < KEEP:
                heapq.heappush(self.slowest, item)
            else:
                heapq.heapreplace(self.slowest, item)

    def dump(self) -> None:
        report = {
            "steps": self.steps,
            "histogram": {f"<= {e:g} ms": self.buckets[f"<= {e:g} ms"] for e in EDGES},
            "slowest": [{"cpu_ms": round(c * 1000, 3), "gc_ms": round(g * 1000, 3), "what": w,
                         "at_s": round(at, 3)} for c, g, w, at in sorted(self.slowest, reverse=True)],
        }
        tmp = self.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, self.out)


def install(out: str, *, dump_every: float | None = 2.0) -> tuple[Probe, Callable[[], None]]:
    """The probe, and what takes it out again."""
    probe = Probe(out)
    run = asyncio.events.Handle._run

    def timed_run(handle: asyncio.events.Handle) -> None:
        if not probe.recording:
            return run(handle)
        gc_before = probe.gc_cpu
        started = time.thread_time()
        run(handle)
        probe.record(time.thread_time() - started, probe.gc_cpu - gc_before, handle)

    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    gc.callbacks.append(probe.on_gc)

    if dump_every:
        def dump_now_and_then() -> None:
            while True:
                time.sleep(dump_every)
                probe.dump()

        threading.Thread(target=dump_now_and_then, daemon=True).start()
        atexit.register(probe.dump)

    def remove() -> None:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]
        gc.callbacks.remove(probe.on_gc)

    return probe, remove


def main() -> None:
    out, *argv = sys.argv[1:]
    sys.modules["uvloop"] = None  # type: ignore[assignment] - asyncio's loop: its steps can be timed
    probe, _ = install(out)
    from tierdesk.cli import main as tierdesk
    from tierdesk.loop_watch import LoopWatch

    watch_start = LoopWatch.start

    def start_and_record(watch: LoopWatch, loop: asyncio.AbstractEventLoop) -> None:
        probe.started = time.monotonic()
        probe.recording = True
        watch_start(watch, loop)

    LoopWatch.start = start_and_record  # type: ignore[method-assign]

    sys.argv = ["tierdesk", *argv]
    raise SystemExit(tierdesk())


if __name__ == "__main__":
    main()

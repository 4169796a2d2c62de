"""The longest step of the event loop, in CPU time of its thread.

A step that runs long (a callback, a task between two awaits, a collection
of the garbage collector that lands in it) holds every request in flight
for as long as it runs. uvloop runs callbacks from C and offers no hook
around each one, and timing each one from Python (asyncio's debug mode and
its ``slow_callback_duration``) costs on every step of every request.

So a heartbeat instead: a timer every ``HEARTBEAT_SECONDS`` reads the
thread's CPU clock (``time.thread_time``: time spent waiting for I/O or
preempted by other processes does not count). Every step runs entirely
between two heartbeats, as both run on the loop's one thread, so the CPU
between two heartbeats bounds from above every step that ran between them;
a step longer than the period delays the next heartbeat and still falls
between two. The longest such gap since the server was ready is therefore
an upper bound of its longest step, loose by at most the period plus the
rest of the loop iteration the step ran in (the loop runs its timers once
per iteration). The cost is one timer callback every 5 ms whatever the
load, nothing per message: on an idle uvloop loop 33 µs a heartbeat with
its wake-up, 0.6 % of a core (2026-12-05, the 2-core test machine); a busy
loop runs them in iterations it runs anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HEARTBEAT_SECONDS = 0.005


class LoopWatch:
    def __init__(self, period: float = HEARTBEAT_SECONDS, clock: Callable[[], float] = time.thread_time) -> None:
        self.period = period
        self._clock = clock
        # CPU seconds of the longest gap between two heartbeats; heartbeats run.
        self.longest = 0.0
        self.beats = 0
        self._last = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop's own thread: the clock is that thread's."""
        self._loop = loop
        self._last = self._clock()
        self._timer = loop.call_later(self.period, self._beat)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _beat(self) -> None:
        now = self._clock()
        if now - self._last > self.longest:
            self.longest = now - self._last
        self._last = now
        self.beats += 1
        assert self._loop is not None
        self._timer = self._loop.call_later(self.period, self._beat)

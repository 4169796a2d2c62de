"""The waits customers are told, from recent history in the database
(router/estimates.py has the method), cached briefly: every customer of a
skill asking at once costs one query."""

from __future__ import annotations

import time

from router.estimates import WaitEstimate, expected_wait, usual_first_reply
from router.ports import Clock
from storage.channels import ChannelData

CACHE_SECONDS = 10.0


class WaitEstimator:
    def __init__(self, data: ChannelData, clock: Clock, *, window: float, min_samples: int,
                 reply_window: float = 86400.0) -> None:
        self.data, self.clock = data, clock
        self.window, self.min_samples, self.reply_window = window, min_samples, reply_window
        # skill -> (good until, monotonic; read at, the clock's time; taken at)
        self._taken: dict[str, tuple[float, float, list[float]]] = {}
        self._usual: tuple[float, float | None] | None = None

    async def wait(self, skill: str, position: int | None) -> WaitEstimate:
        now = self.clock.now()
        hit = self._taken.get(skill)
        # Stale after CACHE_SECONDS by either clock (the desk's may be a
        # test's, moved at will).
        if hit is None or hit[0] < time.monotonic() or abs(now - hit[1]) > CACHE_SECONDS:
            taken = await self.data.taken_from_queue(skill, now - self.window)
            hit = (time.monotonic() + CACHE_SECONDS, now, taken)
            self._taken[skill] = hit
        return expected_wait(position, hit[2], now, self.window, self.min_samples)

    async def usual_reply(self) -> float | None:
        """How soon a person usually replies after a handoff (None: unknown)."""
        if self._usual is None or self._usual[0] < time.monotonic():
            values = await self.data.first_replies(self.clock.now() - self.reply_window)
            self._usual = (time.monotonic() + 6 * CACHE_SECONDS, usual_first_reply(values))
        return self._usual[1]

    def forget(self) -> None:
        self._taken.clear()
        self._usual = None

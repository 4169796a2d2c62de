"""What a waiting customer is told: their expected wait, and how soon the
team usually replies. Plain arithmetic on recent history, and honest about
how little of it there may be.

**Expected wait.** The handoffs of the customer's skill that agents took
*from the queue* (assigned after waiting, not at once) in the last
``window`` seconds show how fast that queue moves: ``rate = taken / window``.
A customer at queue position ``p`` waits about ``p / rate``. With fewer
than ``min_samples`` taken in the window there is too little to go on and
the wait is *unknown*: a customer is told that rather than a made-up
number. The estimate errs long when the queue was empty for part of the
window (agents were not the limit then, yet the window counts that time);
it does not foresee agents coming online or going away.

**Usual reply.** The median time from a handoff to the agent's first reply
over the last ``window`` (a day by default), from at least ``min_samples``
handoffs; else unknown.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """``seconds`` None: unknown (too few handoffs taken lately). ``position``
    None: a person already has the conversation (no wait)."""

    position: int | None
    seconds: float | None
    # What the figure rests on: handoffs taken from the queue in the window.
    taken: int
    window_seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"queue_position": self.position,
                "expected_wait_seconds": None if self.seconds is None else round(self.seconds, 1),
                "basis": {"taken_from_queue": self.taken, "window_seconds": self.window_seconds}}


def expected_wait(position: int | None, taken_at: Sequence[float], now: float, window: float,
                  min_samples: int = 3) -> WaitEstimate:
    taken = sum(1 for t in taken_at if now - window <= t <= now)
    if position is None:
        return WaitEstimate(None, 0.0, taken, window)
    if taken < min_samples or window <= 0:
        return WaitEstimate(position, None, taken, window)
    return WaitEstimate(position, position * window / taken, taken, window)


def usual_first_reply(first_reply_seconds: Sequence[float], min_samples: int = 5) -> float | None:
    """The median first reply, or None with fewer than ``min_samples``."""
    values = [v for v in first_reply_seconds if v >= 0]
    if len(values) < min_samples:
        return None
    return float(statistics.median(values))

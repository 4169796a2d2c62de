"""The garbage collector's policy for a long-running server process.

CPython's cyclic collector re-scans everything that has lived through two
young collections every time the oldest generation is collected, and it is
collected once a quarter of it is new. A server keeps tens of thousands of
conversations in memory (five tracked objects each), so those full
collections grew to 0.2-0.4 s, every ten seconds or so at a busy hour, and
the middle generation's took 20-35 ms every two seconds: they were most of
the p99 of the FAQ path (gc.callbacks under load, before 36766d9; what the
policy costs and saves: docs/performance.md, "Latency").

So what survives a middle collection is frozen (``gc.freeze``): it leaves the
collector's sight, as the model and the start-up working set already did.
Freezing right after a middle or full collection is the one moment no
unreachable cycle is among the survivors: both younger generations have just
been scanned. Frozen objects still go the moment their reference count
drops to zero (an evicted conversation, a finished request); only an object
that ends in a reference cycle after it was frozen stays, and ``reclaim``,
run every ``TIERDESK_GC_RECLAIM_SECONDS``, collects those with one full
collection (one pause of the old kind, every ten minutes by default instead
of every ten seconds).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

# Young collections every this many container allocations (the default is
# 700), a middle one every third young one. Both are smaller than they were
# before survivors were frozen (10,000 and 10): a middle collection now scans
# at most ~3 x 3,000 objects, ~1 ms, where it scanned up to 100,000 (7-35 ms).
YOUNG_THRESHOLD = 3_000
MIDDLE_THRESHOLD = 2
# ...and a middle collection at least this often. CPython counts allocations
# net of deallocations, and once the conversation cache is full each new
# conversation frees an old one: the count stays near zero while the young
# generation grows unscanned, until a collection finally meets tens of
# thousands of objects (a 60 ms pause at 2,700 FAQ messages/s, probe with
# gc.callbacks). On a timer the young generations stay small whatever the count.
YOUNG_SECONDS = 0.1
# With the policy off (TIERDESK_GC_FREEZE_SURVIVORS=false): CPython's schedule,
# young collections only less often than its 700, so that most of a
# request's short-lived objects are gone before one runs (since 11feaec).
UNFROZEN_YOUNG_THRESHOLD = 10_000


@dataclass(frozen=True, slots=True)
class Reclaimed:
    collected: int  # unreachable objects freed
    seconds: float  # how long the full collection held the process
    frozen: int  # objects out of the collector's sight afterwards


class HeapPolicy:
    """Installed once per server process, after the model and the working
    set are loaded (``settle``); ``remove`` puts the collector back."""

    def __init__(self, freeze_survivors: bool = True) -> None:
        self.freeze_survivors = freeze_survivors
        # The collector's thresholds before settle(); None when not installed.
        self._thresholds: tuple[int, int, int] | None = None
        # Objects frozen, counted at settle() and at each reclaim() only:
        # gc.get_freeze_count() walks every frozen object (5 ms for 600,000
        # freshly allocated ones, more in a server's scattered heap), which
        # each worker's metrics, published once a second, paid: ~2 % of a
        # core per idle worker, and a stall of its loop each time.
        self.frozen_counted = 0

    def settle(self) -> None:
        # What is loaded now lives as long as the process: out of sight.
        gc.collect()
        gc.freeze()
        self.frozen_counted = gc.get_freeze_count()
        self._thresholds = gc.get_threshold()
        if self.freeze_survivors:
            gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, self._thresholds[2])
            gc.callbacks.append(self._after_collection)
        else:
            gc.set_threshold(UNFROZEN_YOUNG_THRESHOLD, *self._thresholds[1:])

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] >= 1:
            gc.freeze()

    def collect_young(self) -> None:
        """A middle collection (the young generations), whose survivors the
        callback then freezes."""
        gc.collect(1)

    def reclaim(self) -> Reclaimed:
        """Collect the cycles among frozen objects: a full collection over
        everything, then everything that survives is frozen again."""
        start = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.frozen_counted = gc.get_freeze_count()
        return Reclaimed(collected, time.perf_counter() - start, self.frozen_counted)

    def remove(self) -> None:
        if self._thresholds is None:
            return
        if self._after_collection in gc.callbacks:
            gc.callbacks.remove(self._after_collection)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()
        self._thresholds = None

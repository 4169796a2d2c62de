"""A Bloom filter of the conversation keys SQLite holds.

The first message of a conversation the service does not hold in memory
asks the database whether the conversation exists; nearly always it does
not. On SQLite that question is a hop to a reading thread and back, and on
this project's 2-core test machine every such hop costs more than the query
(at 1,600 FAQ answers a second the filter took p50 from 15.8–25 to 6.4 ms,
96880fc). A filter of every stored key answers "certainly not" in a few
microseconds; only a "maybe" (a key stored, or a 1 % false positive) goes
to the database.

It may only err towards "maybe": a stored key the filter missed would make
the service start a second conversation under the key, which the database
refuses. So keys are added after every write of their conversation, whatever
its outcome, and a rebuild keeps the keys noted while it scanned.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable

_LN2 = math.log(2)


class KeyFilter:
    def __init__(self, capacity: int, error_rate: float = 0.01) -> None:
        if capacity < 1 or not 0 < error_rate < 1:
            raise ValueError("capacity must be positive and error_rate in (0, 1)")
        self.capacity = capacity
        self.error_rate = error_rate
        self._m = max(64, math.ceil(-capacity * math.log(error_rate) / _LN2**2))
        self._k = max(1, round(self._m / capacity * _LN2))
        self._bits = bytearray((self._m + 7) // 8)
        self.count = 0

    @property
    def full(self) -> bool:
        """More keys than it was sized for: the false-positive rate climbs."""
        return self.count > self.capacity

    @property
    def size_bytes(self) -> int:
        return len(self._bits)

    def _positions(self, key: Hashable) -> Iterable[int]:
        # Double hashing over the two halves of Python's 64-bit hash (random
        # per process, which is fine for a filter that lives in one).
        h = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        h1, h2 = h & 0xFFFF_FFFF, (h >> 32) | 1
        m = self._m
        return ((h1 + i * h2) % m for i in range(self._k))

    def add(self, key: Hashable) -> None:
        bits = self._bits
        for p in self._positions(key):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def update(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            self.add(key)

    def __contains__(self, key: Hashable) -> bool:
        bits = self._bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self._positions(key))

"""The conversations the Desk holds in memory, by (channel, customer's
conversation id), bounded in number: the bot tier's are dropped least
recently used first, the human tier's stay.

Those the human tier holds (queued or with an agent) are kept apart from
the eviction order. In one order with the rest, a long queue sat at its
head, and every new conversation looked at (and sent to the back) a run
of them before finding one it could drop: a flooded queue made every
message dearer. Apart, making room looks at evictable conversations only.
A conversation changes tier without the cache being told (a handoff is
made or ends inside a use case), so each side is checked lazily: the
order's scan sends what has become human to the held side, and each time
room is made the held side's oldest entry is looked at again and rejoins
the order once its handoff has ended — a bounded cost per new
conversation, and a conversation that leaves the human tier is evictable
within one lap of the held side.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator

from .model import Conversation, Tier

Key = tuple[str, str]

# The most evictable conversations one new conversation looks at to make room.
EVICTION_SCAN = 16


def key_of(c: Conversation) -> Key:
    return (c.channel_id, c.external_id)


class ConversationCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._order: OrderedDict[Key, Conversation] = OrderedDict()  # least recently used first
        # The human tier's, in the order they are looked at again. An
        # OrderedDict: a dict's first entry, once entries before it were
        # popped, is found by skipping their holes (the lap turned O(n)).
        self._held: OrderedDict[Key, Conversation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order) + len(self._held)

    def __iter__(self) -> Iterator[Key]:
        yield from self._order
        yield from self._held

    def get(self, key: Key) -> Conversation | None:
        c = self._order.get(key)
        return c if c is not None else self._held.get(key)

    def use(self, key: Key) -> Conversation | None:
        """The conversation, marked as the most recently used."""
        c = self._order.get(key)
        if c is not None:
            self._order.move_to_end(key)
            return c
        return self._held.get(key)

    def put(self, c: Conversation) -> None:
        """Hold ``c`` under its key, in place of whatever copy was there."""
        key = key_of(c)
        self._held.pop(key, None)
        if c.tier is Tier.HUMAN:
            self._order.pop(key, None)
            self._held[key] = c
        else:
            self._order[key] = c
            self._order.move_to_end(key)

    def discard(self, key: Key, copy: Conversation) -> bool:
        """Drop the key if it holds this copy (it may hold a newer one)."""
        for side in (self._order, self._held):
            if side.get(key) is copy:
                del side[key]
                return True
        return False

    def clear(self) -> None:
        self._order.clear()
        self._held.clear()

    def evict(self, keep: Key, busy: Callable[[Conversation], bool]) -> list[Conversation]:
        """Make room down to the size, if over it, from the least recently
        used bot-tier conversations, never ``keep`` nor one ``busy`` says is
        in use; returns those dropped. Once more must stay than the cache
        holds, the excess itself is large, so what is looked at is capped."""
        excess = len(self) - self.size
        if excess <= 0:
            return []
        if self._held:
            oldest, c = next(iter(self._held.items()))
            if c.tier is Tier.HUMAN:
                self._held.move_to_end(oldest)  # to the back of the lap
            else:
                del self._held[oldest]
                self._order[oldest] = c
                self._order.move_to_end(oldest, last=False)  # long unused: first to go
        dropped: list[Conversation] = []
        for key, c in list(itertools.islice(self._order.items(), min(excess * 2, EVICTION_SCAN))):
            if c.tier is Tier.HUMAN:
                del self._order[key]
                self._held[key] = c
            elif key == keep or busy(c):
                self._order.move_to_end(key)
            else:
                del self._order[key]
                dropped.append(c)
                excess -= 1
                if excess <= 0:
                    break
        return dropped

"""The Desk's conversation cache: bounded, least recently used bot-tier
conversations dropped first, the human tier's kept apart and never dropped."""

from __future__ import annotations

from router.conversation_cache import EVICTION_SCAN, ConversationCache, key_of
from router.model import Conversation, ConversationStatus, Customer


def conv(name: str, status: ConversationStatus = ConversationStatus.BOT) -> Conversation:
    return Conversation(id=f"id-{name}", channel_id="web", external_id=name, customer=Customer(id=name),
                        created_at=0.0, updated_at=0.0, status=status)


def fill(cache: ConversationCache, *convs: Conversation) -> None:
    for c in convs:
        cache.put(c)
        cache.evict(key_of(c), busy=lambda _: False)


def test_least_recently_used_bot_conversations_go_first() -> None:
    cache = ConversationCache(3)
    a, b, c, d = (conv(n) for n in "abcd")
    fill(cache, a, b, c)
    assert cache.use(key_of(a)) is a  # a is now the most recently used
    cache.put(d)
    assert cache.evict(key_of(d), busy=lambda _: False) == [b]
    assert set(cache) == {key_of(x) for x in (a, c, d)}


def test_the_human_tier_stays_and_is_not_scanned_again() -> None:
    cache = ConversationCache(2)
    queued = [conv(f"q{i}", ConversationStatus.QUEUED) for i in range(50)]
    fill(cache, *queued)
    assert len(cache) == 50 and len(cache._order) == 0  # all held apart
    bots = [conv(f"b{i}") for i in range(10)]
    for b in bots:
        cache.put(b)
        dropped = cache.evict(key_of(b), busy=lambda _: False)
        assert len(dropped) <= 1
    assert len(cache._order) <= 1 and all(cache.get(key_of(q)) is q for q in queued)


def test_a_conversation_that_became_human_in_the_order_moves_to_the_held_side() -> None:
    cache = ConversationCache(2)
    a, b = conv("a"), conv("b")
    fill(cache, a, b)
    a.status = ConversationStatus.ASSIGNED  # handed off inside a use case; the cache is not told
    c = conv("c")
    cache.put(c)
    assert cache.evict(key_of(c), busy=lambda _: False) == [b]
    assert cache.get(key_of(a)) is a and key_of(a) in cache._held


def test_a_held_conversation_whose_handoff_ended_rejoins_the_order_first_in_line() -> None:
    cache = ConversationCache(2)
    q = conv("q", ConversationStatus.QUEUED)
    fill(cache, q, conv("a"))
    q.status = ConversationStatus.RESOLVED
    b = conv("b")
    cache.put(b)
    assert cache.evict(key_of(b), busy=lambda _: False) == [q]  # looked at again, and oldest


def test_busy_and_kept_conversations_are_not_dropped() -> None:
    cache = ConversationCache(1)
    a, b = conv("a"), conv("b")
    fill(cache, a)
    cache.put(b)
    assert cache.evict(key_of(b), busy=lambda c: c is a) == []
    assert len(cache) == 2  # over the size until a is done with


def test_what_one_new_conversation_looks_at_is_capped() -> None:
    cache = ConversationCache(1)
    busy = [conv(f"x{i}") for i in range(100)]
    for c in busy:
        cache.put(c)
    looked: list[Conversation] = []

    def is_busy(c: Conversation) -> bool:
        looked.append(c)
        return True

    new = conv("new")
    cache.put(new)
    assert cache.evict(key_of(new), is_busy) == []
    assert len(looked) == EVICTION_SCAN


def test_put_replaces_a_copy_on_either_side_and_discard_only_drops_that_copy() -> None:
    cache = ConversationCache(10)
    old = conv("a", ConversationStatus.QUEUED)
    cache.put(old)
    new = conv("a")
    cache.put(new)
    assert cache.get(key_of(new)) is new and len(cache) == 1
    assert not cache.discard(key_of(new), old)
    assert cache.discard(key_of(new), new) and len(cache) == 0

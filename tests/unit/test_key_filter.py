"""The Bloom filter of stored conversation keys: it may say "maybe" wrongly,
never "no" wrongly."""

from __future__ import annotations

import pytest

from storage.key_filter import KeyFilter


def test_every_key_added_is_found() -> None:
    f = KeyFilter(50_000)
    keys = [("web", f"conv-{i}") for i in range(50_000)]
    f.update(keys)
    assert all(k in f for k in keys)
    assert f.count == 50_000 and not f.full


def test_false_positives_stay_near_the_rate_it_was_sized_for() -> None:
    f = KeyFilter(20_000, error_rate=0.01)
    f.update(("web", f"stored-{i}") for i in range(20_000))
    wrong = sum(("web", f"never-{i}") in f for i in range(20_000))
    assert wrong / 20_000 < 0.02
    assert f.size_bytes < 20_000 * 10 / 8 + 16  # ~9.6 bits a key


def test_an_empty_filter_finds_nothing_and_an_outgrown_one_says_so() -> None:
    f = KeyFilter(10)
    assert ("web", "x") not in f
    f.update(("web", str(i)) for i in range(11))
    assert f.full


@pytest.mark.parametrize("capacity, rate", [(0, 0.01), (10, 0.0), (10, 1.0)])
def test_nonsense_sizes_are_refused(capacity: int, rate: float) -> None:
    with pytest.raises(ValueError):
        KeyFilter(capacity, rate)

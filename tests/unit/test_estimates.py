"""The waits a customer is told (router/estimates.py): from recent
throughput, and "unknown" rather than a guess when there is too little."""

from __future__ import annotations

import pytest

from router.estimates import expected_wait, usual_first_reply


def test_the_wait_is_the_position_over_the_rate_the_queue_was_taken() -> None:
    now = 10_000.0
    taken = [now - 60 * i for i in range(1, 11)]  # ten taken in the last 10 minutes
    est = expected_wait(3, taken, now, window=1800.0)
    # 10 in 30 minutes: one every 180 s; third in line: 540 s
    assert est.seconds == pytest.approx(540.0)
    assert (est.position, est.taken, est.window_seconds) == (3, 10, 1800.0)


def test_too_few_taken_lately_is_unknown_not_a_number() -> None:
    now = 10_000.0
    assert expected_wait(1, [now - 10, now - 20], now, window=1800.0).seconds is None
    # old ones do not count
    assert expected_wait(1, [now - 5000] * 50, now, window=1800.0).seconds is None
    assert expected_wait(1, [now - 10] * 3, now, window=1800.0, min_samples=3).seconds is not None


def test_no_wait_once_a_person_has_it() -> None:
    est = expected_wait(None, [], 0.0, window=1800.0)
    assert est.position is None and est.seconds == 0.0
    assert est.as_dict() == {"queue_position": None, "expected_wait_seconds": 0.0,
                             "basis": {"taken_from_queue": 0, "window_seconds": 1800.0}}


def test_usual_first_reply_is_the_median_or_unknown() -> None:
    assert usual_first_reply([10, 20, 30, 40, 500]) == 30
    assert usual_first_reply([10, 20]) is None

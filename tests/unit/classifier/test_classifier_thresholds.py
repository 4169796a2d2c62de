from __future__ import annotations

import pytest

from classifier.thresholds import (
    Thresholds,
    lowest_threshold_meeting,
    precision_coverage_curve,
    select_thresholds,
)


def test_lowest_threshold_meeting_target_with_known_answer():
    # Precision by cut: .9->1, .8->1, .7->2/3, .6->3/4, .5->4/5, .4->4/6.
    # Precision is not monotone; the lowest cut with >= 0.75 is 0.5.
    conf = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    correct = [True, True, False, True, True, False]
    choice = lowest_threshold_meeting(conf, correct, 0.75)
    assert choice.met
    assert choice.threshold == 0.5
    assert choice.precision == pytest.approx(0.8)
    assert choice.answered == 5 and choice.support == 6
    assert lowest_threshold_meeting(conf, correct, 0.95).threshold == 0.8
    assert lowest_threshold_meeting(conf, correct, 0.5).threshold == 0.4


def test_input_order_does_not_matter():
    conf = [0.4, 0.9, 0.6, 0.5, 0.8, 0.7]
    correct = [False, True, True, True, True, False]
    assert lowest_threshold_meeting(conf, correct, 0.75).threshold == 0.5


def test_tied_confidences_are_answered_together():
    # Cutting between the two 0.5s would claim precision 1.0 at threshold
    # 0.5, but a threshold of 0.5 answers both (precision 2/3).
    choice = lowest_threshold_meeting([0.9, 0.5, 0.5], [True, True, False], 0.9)
    assert choice.threshold == 0.9


def test_unreachable_target_answers_nothing():
    choice = lowest_threshold_meeting([0.9, 0.8], [False, True], 0.97)
    assert not choice.met and choice.threshold == 1.0
    empty = lowest_threshold_meeting([], [], 0.97)
    assert not empty.met and empty.support == 0


def test_select_thresholds_per_intent_and_global_fallback():
    # Intent "a": 8 predictions, the two least confident wrong -> 0.6.
    # Intent "b": only 2 predictions -> falls back to the global threshold.
    # "oos" predictions never count towards precision.
    pred = ["a"] * 8 + ["b", "b"] + ["oos"] * 3
    conf = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.99, 0.3, 0.2, 0.99, 0.1]
    true = ["a"] * 6 + ["x", "x"] + ["b", "x"] + ["oos", "a", "oos"]
    thresholds, details = select_thresholds(
        pred, conf, true, target_precision=0.97, never_answered=["oos"], min_support=5
    )
    assert thresholds.per_intent == {"a": 0.6}
    assert "b" not in thresholds.per_intent
    assert thresholds.for_intent("b") == thresholds.global_threshold
    # Global over a+b sorted by confidence: .99 b ok, .95..0.6 a ok (7 of 7),
    # then .5 wrong -> lowest cut keeping >= 97% is 0.6.
    assert thresholds.global_threshold == 0.6
    assert details["intents"]["b"]["source"] == "global"


def test_thresholds_serialisation_validates():
    t = Thresholds(0.5, {"a": 0.25})
    assert Thresholds.from_dict(t.to_dict()) == t
    with pytest.raises(ValueError):
        Thresholds.from_dict({"global": 1.5})
    with pytest.raises(ValueError):
        Thresholds.from_dict({"global": 0.5, "per_intent": {"a": True}})


def test_precision_coverage_curve_counts_oos_against_precision():
    pred = ["a", "b", "a", "oos"]
    conf = [0.9, 0.8, 0.3, 0.95]
    true = ["a", "oos", "b", "oos"]
    curve = dict(
        (t, (p, c))
        for t, p, c in precision_coverage_curve(
            pred, conf, true, out_of_scope=["oos"], thresholds=[0.0, 0.5, 0.85, 0.99]
        )
    )
    assert curve[0.0] == (pytest.approx(1 / 3), 1.0)  # 3 answered, in-scope a,b both answered
    assert curve[0.5] == (0.5, 0.5)
    assert curve[0.85] == (1.0, 0.5)
    assert curve[0.99] == (None, 0.0)

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


def test_select_thresholds_global_fallback_and_out_of_scope():
    # Intent "a": 8 predictions, the two least confident wrong.
    # Intent "b": only 2 predictions -> the global threshold.
    # "oos" predictions never count towards precision.
    pred = ["a"] * 8 + ["b", "b"] + ["oos"] * 3
    conf = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.99, 0.3, 0.2, 0.99, 0.1]
    true = ["a"] * 6 + ["x", "x"] + ["b", "x"] + ["oos", "a", "oos"]
    thresholds, details = select_thresholds(
        pred, conf, true, target_precision=0.97, never_answered=["oos"], min_support=5
    )
    # Global over a+b sorted by confidence: .99 b ok, .95..0.6 a ok (7 of 7),
    # then .5 wrong -> lowest cut keeping >= 97% is 0.6.
    assert thresholds.global_threshold == 0.6
    # Six right answers do not show 97% precision (the lower bound of 6/6 is
    # 61%): "a" gets no threshold of its own, however perfect its sample.
    assert thresholds.per_intent == {}
    assert details["intents"]["a"]["source"] == "global"
    assert details["intents"]["b"]["why"] == "too few held-out predictions"


def _intent_sample(n_right: int, n_wrong: int, wrong_conf: float = 0.1) -> tuple[list, list, list]:
    conf = [0.2 + 0.7 * i / max(n_right - 1, 1) for i in range(n_right)] + [wrong_conf] * n_wrong
    return ["a"] * (n_right + n_wrong), conf, ["a"] * n_right + ["x"] * n_wrong


def test_an_intent_threshold_below_the_global_needs_a_lower_bound_and_keeps_the_floor():
    # 300 right answers for "a" with confidences from 0.2 up: the lower bound
    # of its precision is far above 97% even at 0.2, but its threshold stops
    # at the floor. The global threshold is held high by "b"'s errors.
    pred_a, conf_a, true_a = _intent_sample(300, 0)
    pred_b = ["b"] * 200
    conf_b = [0.95] * 100 + [0.85] * 100
    true_b = ["b"] * 150 + ["x"] * 50
    thresholds, details = select_thresholds(
        pred_a + pred_b, conf_a + conf_b, true_a + true_b, target_precision=0.97, floor=0.5
    )
    assert thresholds.global_threshold > 0.5
    assert thresholds.per_intent["a"] == 0.5
    assert details["intents"]["a"]["source"] == "intent"
    assert "lower bound" in details["intents"]["a"]["why"]
    # The same sample with a lower floor goes lower, never below the floor.
    low, _ = select_thresholds(pred_a + pred_b, conf_a + conf_b, true_a + true_b,
                               target_precision=0.97, floor=0.3)
    assert 0.3 <= low.per_intent["a"] < 0.5


def test_an_intent_clearly_below_the_target_gets_a_higher_threshold():
    # "a" is right 170 times at 0.95 and up and wrong 30 times at 0.9; "b" is
    # right 2,000 times at 0.9, so the global threshold is 0.9, where the
    # upper bound of "a"'s precision (170/200) is under 97%.
    pred = ["a"] * 200 + ["b"] * 2000
    conf = [0.95] * 150 + [0.9] * 30 + [0.99] * 20 + [0.9] * 2000
    true = ["a"] * 150 + ["x"] * 30 + ["a"] * 20 + ["b"] * 2000
    thresholds, details = select_thresholds(pred, conf, true, target_precision=0.97)
    assert thresholds.global_threshold == 0.9
    assert thresholds.per_intent["a"] == 0.95
    assert "upper bound" in details["intents"]["a"]["why"]


def test_needs_human_intents_only_pick_a_skill_and_count_in_no_precision():
    pred = ["h"] * 10 + ["a"] * 10
    conf = [0.6] * 10 + [0.9] * 10
    true = ["x"] * 10 + ["a"] * 10
    thresholds, details = select_thresholds(pred, conf, true, target_precision=0.97, routing_only=["h"])
    assert thresholds.global_threshold == 0.9  # h's ten wrong guesses did not count
    assert thresholds.per_intent == {"h": 0.5}
    assert details["intents"]["h"]["source"] == "routing"


def test_weighted_lower_bound_uses_the_effective_sample_size():
    # 200 right at weight 1 vs the same 200 at weight 10 (as unknown
    # questions are weighted): the same precision, the same evidence.
    conf = [0.9] * 200
    plain = lowest_threshold_meeting(conf, [True] * 200, 0.97, lower_bound=True)
    heavy = lowest_threshold_meeting(conf, [True] * 200, 0.97, [10.0] * 200, lower_bound=True)
    assert plain.met and heavy.met and plain.threshold == heavy.threshold
    assert not lowest_threshold_meeting(conf[:50], [True] * 50, 0.97, lower_bound=True).met


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

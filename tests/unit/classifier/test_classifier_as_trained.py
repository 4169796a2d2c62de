"""`faq eval --as-trained`'s test figures, on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.as_trained import measure


def test_unknown_and_out_of_scope_answers_are_wrong_and_catch_alls_stand_out():
    true = np.array(["a", "b", "u", "u", "oos", "oos", "oos", "oos", "oos"], dtype=object)
    pred = np.array(["a", "a", "a", "b", "a", "a", "a", "b", "oos"], dtype=object)
    conf = np.array([0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.3, 0.9, 0.99])
    m = measure(true, pred, conf, np.full(9, 0.5), unknown={"u"}, oos="oos", shares={"a": 0.8, "b": 0.2})
    # Answered: a, a (wrong: b), a (unknown), a, a (out-of-scope), b (out-of-scope).
    assert m["answered"] == 6 and m["precision"] == pytest.approx(1 / 6)
    assert m["coverage"] == 1.0 and m["unknown_answered"] == 0.5
    assert m["off_topic_answered"] == pytest.approx(3 / 5)
    spread = m["off_topic_by_intent"]
    # Four out-of-scope sentences went to an intent: a took 3 (0.75 of them
    # on 0.8 of the examples), b took 1 (0.25 on 0.2).
    assert spread["predicted"]["n"] == 4
    assert spread["predicted"]["max_ratio_intent"] == "b"
    assert spread["predicted"]["max_ratio"] == pytest.approx(1.25)
    assert spread["predicted"]["largest_intent"] == "a"
    assert spread["predicted"]["largest_intent_ratio"] == pytest.approx(0.75 / 0.8)
    assert spread["answered"]["n"] == 3
    assert spread["answered"]["max_ratio"] == pytest.approx((1 / 3) / 0.2)


def test_test_chosen_coverage_is_the_best_a_single_threshold_gets():
    from classifier.as_trained import test_chosen

    # Confidence order: right, right, unknown (wrong), right, out-of-scope
    # predicted as such (never answered), right.
    true = np.array(["a", "b", "u", "a", "oos", "b"], dtype=object)
    pred = np.array(["a", "b", "a", "a", "oos", "b"], dtype=object)
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.5])
    in_scope = np.array([True, True, False, True, False, True])
    chosen = test_chosen(true, pred, conf, in_scope=in_scope, oos="oos")
    # 97 %: the two most confident (half the in-scope ones); 93 % the same;
    # all five answerable ones are 80 % right, so nothing lower qualifies.
    assert chosen == {"0.93": 0.5, "0.95": 0.5, "0.97": 0.5}
    assert test_chosen(true, pred, conf * 0 + 0.5, in_scope=in_scope, oos="oos")["0.93"] is None

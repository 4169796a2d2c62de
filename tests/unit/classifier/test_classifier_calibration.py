"""The confidence `faq train` ships: a Platt map of (margin, log p) fitted on
held-out predictions, the same in the estimator's terms and the fast path's."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.calibration import (
    ConfidenceCalibration,
    calibration_report,
    fit_confidence_calibration,
    top_features,
)
from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier


def test_top_features_are_the_margin_and_the_log_softmax_of_the_top_class():
    scores = np.array([[2.0, 5.0, 4.5], [0.0, -1.0, -3.0]])
    best, features = top_features(scores)
    assert best.tolist() == [1, 0]
    np.testing.assert_allclose(features[:, 0], [0.5, 1.0])
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(features[:, 1], log_p.max(axis=1))


def test_fitted_confidence_is_the_chance_of_being_right():
    # Right with probability sigmoid(2 * margin - 3) (log p carries nothing
    # more here): the fit must read that back, so confidence means what it says.
    rng = np.random.default_rng(20261205)
    margin = rng.uniform(0.0, 4.0, 40_000)
    log_p = -np.exp(-margin)
    truth = 1.0 / (1.0 + np.exp(-(2.0 * margin - 3.0)))
    right = rng.random(margin.size) < truth
    calibration = fit_confidence_calibration(np.column_stack([margin, log_p]), right)
    confidence = calibration(np.column_stack([margin, log_p]))
    assert np.abs(confidence - truth).max() < 0.05
    assert calibration_report(confidence, right)["ece"] < 0.02


def test_an_all_right_sample_does_not_fit_certainty():
    features = np.column_stack([np.linspace(0.5, 3.0, 20), np.full(20, -0.1)])
    calibration = fit_confidence_calibration(features, np.ones(20, dtype=bool))
    assert calibration(features).max() < 1.0
    # 20 right answers out of 20 support about 21/22, not certainty.
    assert calibration(features).mean() == pytest.approx(21 / 22, abs=0.02)


def test_weights_count_like_repeated_predictions():
    rng = np.random.default_rng(3)
    features = np.column_stack([rng.uniform(0, 3, 300), -rng.uniform(0, 1, 300)])
    right = rng.random(300) < 0.7
    doubled = fit_confidence_calibration(np.vstack([features, features[:100]]),
                                         np.concatenate([right, right[:100]]))
    weighted = fit_confidence_calibration(features, right, np.where(np.arange(300) < 100, 2.0, 1.0))
    assert weighted.margin_weight == pytest.approx(doubled.margin_weight, rel=1e-3, abs=1e-4)
    assert weighted.intercept == pytest.approx(doubled.intercept, rel=1e-3, abs=1e-4)


def test_confidence_never_falls_as_the_margin_grows():
    # Wrong more often at large margins (a pathological sample): the weight
    # is held at 0 rather than ranking confident predictions last.
    features = np.column_stack([np.linspace(0, 3, 200), np.zeros(200)])
    calibration = fit_confidence_calibration(features, np.arange(200) < 100)
    assert calibration.margin_weight >= 0.0 and calibration.log_prob_weight >= 0.0


@pytest.mark.parametrize("bad", [
    {"kind": "sigmoid(margin, log_p)", "margin_weight": -1.0, "log_prob_weight": 1.0, "intercept": 0.0},
    {"kind": "sigmoid(margin, log_p)", "margin_weight": float("nan"), "log_prob_weight": 1.0, "intercept": 0.0},
    {"kind": "sigmoid(margin, log_p)", "margin_weight": True, "log_prob_weight": 1.0, "intercept": 0.0},
    {"kind": "isotonic", "margin_weight": 1.0, "log_prob_weight": 1.0, "intercept": 0.0},
])
def test_invalid_calibrations_are_refused(bad):
    with pytest.raises(ValueError):
        ConfidenceCalibration.from_dict(bad)


def test_fast_path_confidence_matches_the_estimator(small_kb):
    texts, labels = small_kb.training_data()
    model = IntentClassifier().fit(texts, labels)
    calibration = ConfidenceCalibration(0.7, 1.3, 0.2)
    compiled = CompiledClassifier.from_fitted(model, calibration)
    queries = ["hello there", "I want my money back", "what's the weather", "", "再见", "bye bye bye"]
    best, features = top_features(model.decision_function(queries))
    expected = calibration(features)
    got_best, got = compiled.top_many(queries)
    assert got_best.tolist() == best.tolist()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    for q, k, c in zip(queries, best, expected):
        one = compiled.top_one(q)
        assert one[0] == k and one[1] == pytest.approx(c, abs=1e-9)
    # Without a calibration, confidence is the softmax probability of the top class.
    plain = CompiledClassifier.from_fitted(model)
    np.testing.assert_allclose(plain.top_many(queries)[1], model.predict_proba(queries).max(axis=1), atol=1e-9)


def test_trained_model_ships_its_calibration(demo_trained):
    calibration = demo_trained.compiled.calibration
    assert calibration is not None
    assert demo_trained.evaluation["confidence"] == calibration.to_dict()
    # The reliability table covers the traffic the confidence is fitted for:
    # the knowledge base's questions and the simulated unknown ones.
    evaluation = demo_trained.evaluation
    assert evaluation["calibration"]["n"] == evaluation["heldout_examples"] + evaluation["estimate"]["unknown"]

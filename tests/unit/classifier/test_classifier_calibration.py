"""The confidence `faq train` ships: a Platt map of (margin, log p,
similarity, seen) fitted on held-out predictions, the same in the estimator's
terms and the fast path's."""

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
    # Right with probability sigmoid(2 * margin + 3 * similarity - 4) (log p
    # carries nothing more here): the fit must read that back, so confidence
    # means what it says.
    rng = np.random.default_rng(20261205)
    margin = rng.uniform(0.0, 4.0, 40_000)
    log_p = -np.exp(-margin)
    similarity = rng.uniform(0.0, 1.0, margin.size)
    seen = rng.uniform(0.0, 1.0, margin.size)
    truth = 1.0 / (1.0 + np.exp(-(2.0 * margin + 3.0 * similarity + 1.5 * seen - 5.0)))
    right = rng.random(margin.size) < truth
    features = np.column_stack([margin, log_p, similarity, seen])
    calibration = fit_confidence_calibration(features, right)
    confidence = calibration(features)
    assert np.abs(confidence - truth).max() < 0.05
    assert calibration.similarity_weight == pytest.approx(3.0, abs=0.3)
    assert calibration.seen_weight == pytest.approx(1.5, abs=0.3)
    assert calibration_report(confidence, right)["ece"] < 0.02


def test_an_all_right_sample_does_not_fit_certainty():
    features = np.column_stack([np.linspace(0.5, 3.0, 20), np.full(20, -0.1), np.linspace(0.3, 0.9, 20),
                                np.full(20, 0.8)])
    calibration = fit_confidence_calibration(features, np.ones(20, dtype=bool))
    assert calibration(features).max() < 1.0
    # 20 right answers out of 20 support about 21/22, not certainty.
    assert calibration(features).mean() == pytest.approx(21 / 22, abs=0.02)


def test_weights_count_like_repeated_predictions():
    rng = np.random.default_rng(3)
    features = np.column_stack([rng.uniform(0, 3, 300), -rng.uniform(0, 1, 300), rng.uniform(0, 1, 300),
                                rng.uniform(0, 1, 300)])
    right = rng.random(300) < 0.7
    doubled = fit_confidence_calibration(np.vstack([features, features[:100]]),
                                         np.concatenate([right, right[:100]]))
    weighted = fit_confidence_calibration(features, right, np.where(np.arange(300) < 100, 2.0, 1.0))
    assert weighted.margin_weight == pytest.approx(doubled.margin_weight, rel=1e-3, abs=1e-4)
    assert weighted.similarity_weight == pytest.approx(doubled.similarity_weight, rel=1e-3, abs=1e-4)
    assert weighted.seen_weight == pytest.approx(doubled.seen_weight, rel=1e-3, abs=1e-4)
    assert weighted.intercept == pytest.approx(doubled.intercept, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_confidence_never_falls_as_an_input_grows(column):
    # Wrong more often where an input is larger (a pathological sample): its
    # weight is held at 0 rather than ranking confident predictions last.
    features = np.zeros((200, 4))
    features[:, column] = np.linspace(0, 3, 200)
    calibration = fit_confidence_calibration(features, np.arange(200) < 100)
    weights = (calibration.margin_weight, calibration.log_prob_weight, calibration.similarity_weight,
               calibration.seen_weight)
    assert min(weights) >= 0.0
    assert weights[column] == pytest.approx(0.0, abs=1e-6)


GOOD = {"kind": "sigmoid(margin, log_p, similarity, seen)", "margin_weight": 1.0, "log_prob_weight": 1.0,
        "similarity_weight": 1.0, "seen_weight": 1.0, "intercept": 0.0}


def test_a_calibration_round_trips():
    assert ConfidenceCalibration.from_dict(GOOD).to_dict() == GOOD


@pytest.mark.parametrize("bad", [
    {**GOOD, "margin_weight": -1.0},
    {**GOOD, "similarity_weight": -0.1},
    {**GOOD, "seen_weight": -0.1},
    {**GOOD, "margin_weight": float("nan")},
    {**GOOD, "margin_weight": True},
    {k: v for k, v in GOOD.items() if k != "seen_weight"},
    # Format 2's map of two inputs.
    {"kind": "sigmoid(margin, log_p)", "margin_weight": 1.0, "log_prob_weight": 1.0, "intercept": 0.0},
    {**GOOD, "kind": "isotonic"},
])
def test_invalid_calibrations_are_refused(bad):
    with pytest.raises(ValueError):
        ConfidenceCalibration.from_dict(bad)


def test_fast_path_confidence_matches_the_estimator(small_kb):
    texts, labels = small_kb.training_data()
    model = IntentClassifier().fit(texts, labels)
    queries = ["hello there", "I want my money back", "what's the weather", "", "再见", "bye bye bye"]
    best, features = model.confidence_features(queries)
    np.testing.assert_array_equal(best, top_features(model.decision_function(queries))[0])
    # Every input weighted, then the similarity and then `seen` weighted 0,
    # which the fast path skips computing: the same confidence either way.
    for calibration in (ConfidenceCalibration(0.7, 1.3, 2.5, 1.7, 0.2), ConfidenceCalibration(0.7, 1.3, 0.0, 1.7, 0.2),
                        ConfidenceCalibration(0.7, 1.3, 2.5, 0.0, 0.2)):
        compiled = CompiledClassifier.from_fitted(model, calibration)
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


def test_similarity_is_the_nearest_training_example_of_the_predicted_intent(small_kb):
    texts, labels = small_kb.training_data()
    model = IntentClassifier().fit(texts, labels)
    # A training example itself is at similarity 1 from its intent (when
    # predicted as it); a message with no known n-gram at 0.
    best, features = model.confidence_features(texts)
    hits = model.classes_[best] == np.asarray(labels)
    assert hits.any()
    np.testing.assert_allclose(features[hits, 2], 1.0, atol=1e-6)
    np.testing.assert_allclose(features[:, 3], 1.0)
    assert model.confidence_features([""])[1][0, 2:].tolist() == [0.0, 0.0]
    # Against a brute-force cosine over the predicted intent's examples.
    queries = ["I want my money back please", "hello, how are you", "what's the weather like"]
    best, features = model.confidence_features(queries)
    train = model.transform(texts).toarray()
    query = model.transform(queries).toarray()
    for row, k in enumerate(best):
        mine = train[np.asarray(labels) == model.classes_[k]]
        cosines = mine @ query[row] / (np.linalg.norm(mine, axis=1) * np.linalg.norm(query[row]))
        assert features[row, 2] == pytest.approx(cosines.max(), abs=1e-6)


def test_seen_is_the_share_of_words_the_predicted_intents_examples_use(small_kb):
    texts, labels = small_kb.training_data()
    model = IntentClassifier().fit(texts, labels)
    k = int(np.flatnonzero(model.classes_ == labels[0])[0])
    words = set()
    for text, label in zip(texts, labels):
        if label == labels[0]:
            words.update(text.lower().replace(",", " ").replace("?", " ").split())
    known = sorted(w for w in words if len(w) >= 2)[0]
    # One known word, one no example uses; "a" is no word token (two
    # characters at least), and case and full-width letters fold.
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in known.upper())
    message = f"{full_width} a zzqxv"
    assert model.neighbours_.seen([message], np.array([k]))[0] == pytest.approx(0.5)
    assert model.neighbours_.seen_one("", k) == 0.0


def test_a_farther_question_gets_less_confidence():
    # Same margin and probability, lower similarity or fewer known words:
    # less confidence, so a question far from every example of its intent is
    # handed off first.
    calibration = ConfidenceCalibration(0.5, 1.0, 3.0, 2.0, -1.0)
    near, far, strange = calibration(np.array([[1.0, -0.2, 0.9, 1.0], [1.0, -0.2, 0.3, 1.0],
                                               [1.0, -0.2, 0.9, 0.5]]))
    assert far < near and strange < near


def test_similarity_ignores_columns_past_the_tfidf_blocks():
    # With the embedding block the estimator's rows carry dense columns after
    # the n-gram ones; the similarity is over the n-gram blocks only.
    import scipy.sparse as sp

    from classifier.neighbours import Neighbours

    examples = sp.csr_matrix(np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]]))
    neighbours = Neighbours.of(["a b", "c", "a c"], examples, np.array([0, 0, 1]), 2)
    query = np.array([[1.0, 0.0, 0.0]])
    wider = sp.csr_matrix(np.hstack([query, [[5.0, -3.0]]]))
    got = neighbours.nearest(wider, np.array([0]))
    assert got == pytest.approx(neighbours.nearest(sp.csr_matrix(query), np.array([0])))
    assert got[0] == pytest.approx(1 / np.sqrt(2))
    assert neighbours.nearest_one(np.array([0]), np.array([3.0]), 1) == pytest.approx(1 / np.sqrt(2))

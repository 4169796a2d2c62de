"""The split-half estimate against what the thresholds really do on fresh
traffic from the same (seeded, known) distribution."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.estimate import HeldOut, answered_mask, halves, split_half_estimate, wilson
from classifier.thresholds import select_thresholds

INTENTS = [f"i{k}" for k in range(20)]


def _traffic(rng: np.random.Generator, n_known: int, n_unknown: int) -> HeldOut:
    """Known questions: confidence ~ Beta(5, 1.5), right with probability
    equal to it (each intent a little easier or harder); unknown ones (no
    intent covers them): confidence ~ Beta(2, 3), always wrong."""
    true = rng.choice(INTENTS, n_known)
    conf = rng.beta(5, 1.5, n_known)
    skill = np.array([0.9 + 0.1 * (int(t[1:]) % 3) / 2 for t in true])
    right = rng.random(n_known) < np.minimum(conf * skill + 0.05, 1.0)
    wrong_guess = rng.choice(INTENTS, n_known)
    # A wrong guess is another intent than the true one.
    wrong_guess = np.where(wrong_guess == true, np.where(true == "i0", "i1", "i0"), wrong_guess)
    pred = np.where(right, true, wrong_guess)
    u_true = np.array([f"u{k}" for k in rng.integers(0, 5, n_unknown)], dtype=object)
    u_pred = rng.choice(INTENTS, n_unknown)
    u_conf = rng.beta(2, 3, n_unknown)
    return HeldOut.join((true.astype(object), pred.astype(object), conf),
                        (u_true, u_pred.astype(object), u_conf))


def _precision(held: HeldOut, thresholds, unknown_share: float) -> tuple[float, float]:
    answered = answered_mask(held, thresholds, ())
    w = held.weights(unknown_share)
    right = held.pred == held.true
    precision = float((w * right)[answered].sum() / w[answered].sum())
    coverage = float(answered[~held.unknown].mean())
    return precision, coverage


def _choose(min_support: int = 8, lower_bound: bool = True):
    def choose(part: HeldOut, weights: np.ndarray):
        kwargs = {} if lower_bound else {"floor": 0.0}
        thresholds, _ = select_thresholds(part.pred, part.conf, part.true, target_precision=0.95,
                                          min_support=min_support, weights=weights, **kwargs)
        if not lower_bound:
            # The old rule: an intent's own threshold wherever its sample
            # reaches the target, judged on the point estimate alone.
            from classifier.thresholds import lowest_threshold_meeting
            own = {}
            for intent in set(part.pred):
                m = part.pred == intent
                if m.sum() >= min_support:
                    own[intent] = lowest_threshold_meeting(part.conf[m], (part.pred == part.true)[m], 0.95,
                                                           weights[m]).threshold
            thresholds = type(thresholds)(thresholds.global_threshold, own)
        return thresholds
    return choose


def test_wilson_interval_known_values():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) is None
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_halves_are_stratified_by_intent_and_kind():
    held = _traffic(np.random.default_rng(1), 400, 100)
    first = halves(held, seed=0)
    for intent in set(held.true):
        m = held.true == intent
        assert abs(int(first[m].sum()) - int((~first[m]).sum())) <= 1
    assert abs(int(first.sum()) - len(first) / 2) <= 1 + len(set(held.true)) / 2


def test_split_half_estimate_is_within_three_points_of_fresh_traffic():
    rng = np.random.default_rng(20261205)
    sample = _traffic(rng, 1500, 600)
    fresh = _traffic(rng, 200_000, 80_000)
    share = 0.25
    choose = _choose()
    shipped = choose(sample, sample.weights(share))
    estimate = split_half_estimate(sample, choose, never_answered=(), out_of_scope=(), unknown_share=share)
    measured_precision, measured_coverage = _precision(fresh, shipped, share)
    assert abs(estimate["precision"] - measured_precision) <= 0.03
    assert abs(estimate["coverage"] - measured_coverage) <= 0.05
    low, high = estimate["precision_interval"]
    assert low <= measured_precision <= high
    assert estimate["answered"] > 0 and estimate["unknown"] == 600 and estimate["in_scope"] == 1500


def test_scoring_thresholds_on_their_own_sample_overstates_precision():
    # What `faq train` printed before: per-intent thresholds from small
    # samples, scored on those very samples.
    rng = np.random.default_rng(7)
    sample = _traffic(rng, 400, 0)
    fresh = _traffic(rng, 200_000, 0)
    old = _choose(lower_bound=False)(sample, sample.weights(0.0))
    in_sample, _ = _precision(sample, old, 0.0)
    measured, _ = _precision(fresh, old, 0.0)
    assert in_sample - measured > 0.03
    estimate = split_half_estimate(sample, _choose(lower_bound=False), never_answered=(), out_of_scope=(),
                                   unknown_share=0.0)
    assert estimate["precision"] < in_sample

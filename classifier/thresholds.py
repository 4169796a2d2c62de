"""Confidence thresholds: how they are chosen and how they are looked up.

A prediction is *answered* (acted on automatically) when its confidence is at
or above the threshold of the predicted intent and the predicted intent is not
out-of-scope. Precision is the share of answered predictions that were right;
coverage is the share of in-scope messages that were answered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_TARGET_PRECISION = 0.97
# Below this many validation predictions for one intent, a per-intent
# precision estimate is noise (one error moves it by >10 points); such intents
# use the global threshold instead.
MIN_INTENT_SUPPORT = 8
# An intent's own threshold is never below this: a lower one would answer
# guesses the model itself rates as more likely wrong than right.
INTENT_THRESHOLD_FLOOR = 0.5
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Thresholds:
    global_threshold: float
    per_intent: Mapping[str, float] = field(default_factory=dict)

    def for_intent(self, intent_id: str) -> float:
        return self.per_intent.get(intent_id, self.global_threshold)

    def to_dict(self) -> dict[str, object]:
        return {"global": self.global_threshold, "per_intent": dict(sorted(self.per_intent.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> "Thresholds":
        per_intent = data.get("per_intent") or {}
        if not isinstance(per_intent, Mapping):
            raise ValueError("per_intent thresholds must be a mapping")
        values = {str(k): _unit_float(v) for k, v in per_intent.items()}
        return cls(_unit_float(data["global"]), values)


def _unit_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"threshold {value!r} is not a number")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"threshold {value} is outside [0, 1]")
    return value


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    met: bool  # False: even the most confident predictions miss the target
    precision: float | None  # at the chosen threshold; None when nothing is answered
    answered: int
    support: int


def lowest_threshold_meeting(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    target_precision: float,
    weights: Sequence[float] | np.ndarray | None = None,
    *,
    lower_bound: bool = False,
) -> ThresholdChoice:
    """Lowest threshold t such that precision over {confidence >= t} >= target.

    With ``lower_bound``, the 95 % Wilson lower bound of that precision must
    reach the target, not the point estimate: what a small sample supports.

    Candidate thresholds are the observed confidences themselves: precision
    only changes at those points, and the lowest qualifying one maximises
    coverage. Precision is not monotone in t, so this is deliberately the
    lowest *qualifying* point, not the start of a qualifying tail.

    ``weights`` re-weight examples in the precision estimate, e.g. to make the
    out-of-scope share of a validation set match the traffic it stands for.
    """
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape:
        raise ValueError("confidences and correct must have the same length")
    if conf.size == 0:
        return ThresholdChoice(1.0, False, None, 0, 0)
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    w = np.ones(conf.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != conf.shape:
        raise ValueError("weights must have the same length as confidences")
    cum_correct = np.cumsum((ok * w)[order])
    cum_weight = np.cumsum(w[order])
    counts = np.arange(1, conf.size + 1)
    # Only the last position of a run of equal confidences is a valid cut:
    # a threshold cannot answer one of two equally confident predictions.
    last_of_run = np.ones(conf.size, dtype=bool)
    last_of_run[:-1] = conf_sorted[:-1] != conf_sorted[1:]
    precision = cum_correct / np.maximum(cum_weight, np.finfo(np.float64).tiny)
    criterion = precision
    if lower_bound:
        n_eff = cum_weight**2 / np.maximum(np.cumsum((w**2)[order]), np.finfo(np.float64).tiny)
        criterion = _wilson_lower(precision, n_eff)
    qualifying = np.flatnonzero(last_of_run & (criterion >= target_precision))
    if qualifying.size == 0:
        return ThresholdChoice(1.0, False, None, 0, int(conf.size))
    cut = int(qualifying[-1])
    return ThresholdChoice(
        threshold=float(conf_sorted[cut]),
        met=True,
        precision=float(precision[cut]),
        answered=int(counts[cut]),
        support=int(conf.size),
    )


def _wilson_lower(p: np.ndarray, n: np.ndarray, z: float = Z95) -> np.ndarray:
    n = np.maximum(n, np.finfo(np.float64).tiny)
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n)


def _wilson_upper(p: float, n: float, z: float = Z95) -> float:
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    return float((centre + half) / (1 + z * z / n))


def select_thresholds(
    predicted: Sequence[str],
    confidences: Sequence[float] | np.ndarray,
    true: Sequence[str],
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    never_answered: Iterable[str] = (),
    min_support: int = MIN_INTENT_SUPPORT,
    weights: Sequence[float] | np.ndarray | None = None,
    floor: float = INTENT_THRESHOLD_FLOOR,
    global_only: Iterable[str] = (),
    routing_only: Iterable[str] = (),
) -> tuple[Thresholds, dict[str, object]]:
    """Global and per-intent thresholds from held-out predictions.

    ``never_answered`` are the out-of-scope intents: predicting one is a
    handoff whatever the confidence, so those predictions are not candidates
    for answering and do not count towards precision. ``weights`` weigh
    predictions in every precision (e.g. questions no intent covers, to
    their assumed share of traffic).

    An intent gets a threshold of its own only where its held-out sample
    supports it: *lower* than the global one where the 95 % lower bound of
    its precision there still meets the target (and never below ``floor``),
    *higher* where even the upper bound at the global threshold misses the
    target. Otherwise, with fewer than ``min_support`` predictions, and for
    the ``global_only`` intents (too few examples to trust), the global one.

    ``routing_only`` intents (needs_human) are handed off whatever the
    confidence: they are no candidates for answering and count in no
    precision; their threshold only decides whether the handoff goes to the
    intent's skill, and is the floor (or the global one, if lower): more
    likely right than wrong is enough to pick a queue.
    """
    pred = np.asarray(list(predicted), dtype=object)
    gold = np.asarray(list(true), dtype=object)
    conf = np.asarray(confidences, dtype=np.float64)
    w = np.ones(conf.size) if weights is None else np.asarray(weights, dtype=np.float64)
    routing = set(routing_only)
    excluded = set(never_answered) | routing
    only_global = set(global_only)
    eligible = np.array([p not in excluded for p in pred], dtype=bool) & (w > 0)
    correct = pred == gold

    overall = lowest_threshold_meeting(conf[eligible], correct[eligible], target_precision, w[eligible])
    g = overall.threshold
    per_intent: dict[str, float] = {}
    report: dict[str, object] = {}
    for intent in sorted(set(pred[eligible])):
        mask = eligible & (pred == intent)
        support = int(mask.sum())
        if intent in only_global:
            report[intent] = {"source": "global", "support": support, "why": "too few examples"}
            continue
        if support < min_support:
            report[intent] = {"source": "global", "support": support, "why": "too few held-out predictions"}
            continue
        own = _own_threshold(conf[mask], correct[mask], w[mask], target_precision, g, floor)
        if own is None:
            report[intent] = {"source": "global", "support": support,
                              "why": "its sample does not support another threshold"}
            continue
        per_intent[intent], why = own
        report[intent] = {"source": "intent", "support": support, "why": why}
    for intent in sorted(routing):
        per_intent[intent] = min(floor, g)
        report[intent] = {"source": "routing", "support": int((pred == intent).sum()),
                          "why": "needs_human: the threshold only picks the skill"}
    details = {
        "target_precision": target_precision,
        "floor": floor,
        "global": {
            "threshold": overall.threshold,
            "met": overall.met,
            "precision": overall.precision,
            "answered": overall.answered,
            "support": overall.support,
        },
        "intents": report,
    }
    return Thresholds(overall.threshold, per_intent), details


def _own_threshold(
    conf: np.ndarray, correct: np.ndarray, w: np.ndarray, target: float, global_t: float, floor: float
) -> tuple[float, str] | None:
    bound = lowest_threshold_meeting(conf, correct, target, w, lower_bound=True)
    if bound.met and max(bound.threshold, floor) < global_t:
        return max(bound.threshold, floor), "lower bound of its precision meets the target below the global"
    at_global = conf >= global_t
    weight = float(w[at_global].sum())
    if weight > 0:
        n_eff = weight**2 / float((w[at_global] ** 2).sum())
        p = float((w * correct)[at_global].sum()) / weight
        if _wilson_upper(p, n_eff) < target:
            raised = lowest_threshold_meeting(conf, correct, target, w)
            return max(raised.threshold, global_t), "upper bound of its precision misses the target at the global"
    return None


def precision_coverage_curve(
    predicted: Sequence[str],
    confidences: Sequence[float] | np.ndarray,
    true: Sequence[str],
    *,
    out_of_scope: Iterable[str] = (),
    thresholds: Sequence[float] | None = None,
) -> list[tuple[float, float | None, float]]:
    """(threshold, precision, coverage) points for one global threshold.

    Coverage is over *in-scope* messages (true label not out-of-scope);
    precision is over everything answered, so an out-of-scope message that
    gets answered counts against precision.
    """
    oos = set(out_of_scope)
    pred = np.asarray(list(predicted), dtype=object)
    gold = np.asarray(list(true), dtype=object)
    conf = np.asarray(confidences, dtype=np.float64)
    answerable = np.array([p not in oos for p in pred], dtype=bool)
    in_scope = np.array([g not in oos for g in gold], dtype=bool)
    correct = pred == gold
    n_in_scope = max(int(in_scope.sum()), 1)
    if thresholds is None:
        # A fixed 0.01 grid plus confidence quantiles: well-separated models
        # put most confidences above 0.99, where a fixed grid sees nothing.
        grid = np.round(np.linspace(0.0, 1.0, 101), 2)
        quantiles = np.quantile(conf, np.linspace(0.0, 1.0, 201)) if conf.size else []
        thresholds = np.unique(np.concatenate([grid, quantiles]))
    points: list[tuple[float, float | None, float]] = []
    for t in thresholds:
        answered = answerable & (conf >= t)
        n = int(answered.sum())
        precision = float(correct[answered].mean()) if n else None
        coverage = float((answered & in_scope).sum()) / n_in_scope
        points.append((float(t), precision, coverage))
    return points

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
) -> ThresholdChoice:
    """Lowest threshold t such that precision over {confidence >= t} >= target.

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
    qualifying = np.flatnonzero(last_of_run & (precision >= target_precision))
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


def select_thresholds(
    predicted: Sequence[str],
    confidences: Sequence[float] | np.ndarray,
    true: Sequence[str],
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    never_answered: Iterable[str] = (),
    min_support: int = MIN_INTENT_SUPPORT,
) -> tuple[Thresholds, dict[str, object]]:
    """Global and per-intent thresholds from held-out predictions.

    ``never_answered`` are the out-of-scope intents: predicting one is a
    handoff whatever the confidence, so those predictions are not candidates
    for answering and do not count towards precision.
    """
    pred = np.asarray(list(predicted), dtype=object)
    gold = np.asarray(list(true), dtype=object)
    conf = np.asarray(confidences, dtype=np.float64)
    excluded = set(never_answered)
    eligible = np.array([p not in excluded for p in pred], dtype=bool)
    correct = pred == gold

    overall = lowest_threshold_meeting(conf[eligible], correct[eligible], target_precision)
    per_intent: dict[str, float] = {}
    report: dict[str, object] = {}
    for intent in sorted(set(pred[eligible])):
        mask = eligible & (pred == intent)
        if int(mask.sum()) < min_support:
            report[intent] = {"source": "global", "support": int(mask.sum())}
            continue
        choice = lowest_threshold_meeting(conf[mask], correct[mask], target_precision)
        per_intent[intent] = choice.threshold
        report[intent] = {
            "source": "intent",
            "support": choice.support,
            "met": choice.met,
            "precision": choice.precision,
        }
    details = {
        "target_precision": target_precision,
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

"""What the chosen thresholds will do on traffic, estimated honestly.

Thresholds chosen on a set of held-out predictions and then scored on the
same predictions look better than they are: an intent whose 12 held-out
predictions were all right gets the lowest of their confidences as its
threshold, and "100 % precision" holds by construction. So the held-out
predictions are split in two halves (stratified by true intent); thresholds
chosen on one half are scored on the other, and the other way round, and the
figures are the two scored halves together. The shipped thresholds are
chosen on all of them, so the estimate is for a procedure one half-sample
weaker: if anything slightly pessimistic.

The traffic the estimate stands for has three kinds of message:

* questions of the knowledge base's intents (the held-out predictions);
* questions no intent covers, on the same topics -- the ones real traffic is
  full of. They are simulated by leaving whole intents out of training and
  predicting their examples (``unknown``); any answer to one is wrong. Their
  share of traffic is an assumption (``unknown_share``), stated in the report;
* off-topic messages, as far as the knowledge base has out-of-scope examples.

Every figure comes with its sample size and a 95 % Wilson interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .thresholds import Thresholds

Z95 = 1.959963984540054
# Share of traffic assumed to be on-topic questions no intent covers, when
# nothing better is known. Real bots saw far more (the knowledge base only
# covers what someone wrote down); `faq eval --traffic` measures yours.
DEFAULT_UNKNOWN_SHARE = 0.2


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float] | None:
    """95 % Wilson score interval for a proportion (None for n = 0). ``n``
    may be an effective sample size (not an integer) for weighted counts."""
    if n <= 0:
        return None
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class HeldOut:
    """Held-out predictions: ``unknown`` marks a prediction for a question
    whose intent was left out of that model's training. ``conf`` holds the
    confidences (before calibration, `faq train` keeps each prediction's
    calibration features there: one row each)."""

    true: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    unknown: np.ndarray

    @classmethod
    def join(cls, known: tuple[np.ndarray, np.ndarray, np.ndarray],
             unknown: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> "HeldOut":
        t, p, c = known
        if unknown is None or len(unknown[0]) == 0:
            return cls(np.asarray(t, object), np.asarray(p, object), np.asarray(c, float),
                       np.zeros(len(t), dtype=bool))
        ut, up, uc = unknown
        return cls(np.concatenate([np.asarray(t, object), np.asarray(ut, object)]),
                   np.concatenate([np.asarray(p, object), np.asarray(up, object)]),
                   np.concatenate([np.asarray(c, float), np.asarray(uc, float)]),
                   np.concatenate([np.zeros(len(t), bool), np.ones(len(ut), bool)]))

    def weights(self, unknown_share: float) -> np.ndarray:
        """Per-prediction weights making unknown questions ``unknown_share``
        of the traffic (every known prediction weighs 1)."""
        n_unknown = int(self.unknown.sum())
        n_known = len(self.true) - n_unknown
        if n_unknown == 0 or unknown_share <= 0.0:
            return np.where(self.unknown, 0.0, 1.0)
        w_unknown = unknown_share / (1.0 - unknown_share) * n_known / n_unknown
        return np.where(self.unknown, w_unknown, 1.0)

    def subset(self, mask: np.ndarray) -> "HeldOut":
        return HeldOut(self.true[mask], self.pred[mask], self.conf[mask], self.unknown[mask])


ChooseThresholds = Callable[[HeldOut, np.ndarray], Thresholds]


def halves(held: HeldOut, seed: int = 0) -> np.ndarray:
    """True for the first half: within each (true intent, unknown) group,
    a seeded shuffle alternates between the halves."""
    rng = np.random.default_rng(seed)
    first = np.zeros(len(held.true), dtype=bool)
    keys: dict[tuple[str, bool], list[int]] = {}
    for i, (t, u) in enumerate(zip(held.true, held.unknown)):
        keys.setdefault((str(t), bool(u)), []).append(i)
    flip = False
    for key in sorted(keys):
        idx = np.array(keys[key])
        rng.shuffle(idx)
        # Odd-sized groups give their extra member to alternating halves.
        first[idx[int(flip)::2]] = True
        flip = not flip if len(idx) % 2 else flip
    return first


def answered_mask(held: HeldOut, thresholds: Thresholds, never_answered: Iterable[str]) -> np.ndarray:
    excluded = set(never_answered)
    limits = np.array([thresholds.for_intent(p) for p in held.pred], dtype=np.float64)
    eligible = np.array([p not in excluded for p in held.pred], dtype=bool)
    return eligible & (held.conf >= limits)


@dataclass
class _Tally:
    """Weighted answered/right counts, and plain coverage counts."""

    answered_w: float = 0.0
    answered_w2: float = 0.0
    right_w: float = 0.0
    answered: int = 0
    in_scope: int = 0
    in_scope_answered: int = 0
    unknown: int = 0
    unknown_answered: int = 0
    off_topic: int = 0
    off_topic_answered: int = 0

    def add(self, held: HeldOut, answered: np.ndarray, w: np.ndarray, handoff: set[str],
            oos: set[str]) -> None:
        correct = held.pred == held.true
        self.answered_w += float(w[answered].sum())
        self.answered_w2 += float((w[answered] ** 2).sum())
        self.right_w += float(w[answered & correct].sum())
        self.answered += int(answered.sum())
        off = np.array([t in oos for t in held.true], dtype=bool) & ~held.unknown
        # Coverage is over FAQ questions: a needs_human one is never answered.
        in_scope = ~held.unknown & np.array([t not in handoff for t in held.true], dtype=bool)
        self.in_scope += int(in_scope.sum())
        self.in_scope_answered += int((answered & in_scope).sum())
        self.unknown += int(held.unknown.sum())
        self.unknown_answered += int((answered & held.unknown).sum())
        self.off_topic += int(off.sum())
        self.off_topic_answered += int((answered & off).sum())

    def figures(self) -> dict[str, Any]:
        precision = self.right_w / self.answered_w if self.answered_w else None
        # Kish's effective sample size: weighted unknowns count for what they are worth.
        n_eff = self.answered_w ** 2 / self.answered_w2 if self.answered_w2 else 0.0
        out = {
            "precision": precision,
            "precision_interval": wilson((precision or 0.0) * n_eff, n_eff),
            "answered": self.answered,
            "precision_effective_n": round(n_eff, 1),
            "coverage": self.in_scope_answered / self.in_scope if self.in_scope else None,
            "coverage_interval": wilson(self.in_scope_answered, self.in_scope),
            "in_scope": self.in_scope,
        }
        if self.unknown:
            out["unknown_answered"] = self.unknown_answered / self.unknown
            out["unknown_answered_interval"] = wilson(self.unknown_answered, self.unknown)
            out["unknown"] = self.unknown
        if self.off_topic:
            out["off_topic_answered"] = self.off_topic_answered / self.off_topic
            out["off_topic_answered_interval"] = wilson(self.off_topic_answered, self.off_topic)
            out["off_topic"] = self.off_topic
        return out


def split_half_estimate(
    held: HeldOut,
    choose: ChooseThresholds,
    *,
    never_answered: Iterable[str],
    out_of_scope: Iterable[str],
    unknown_share: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Precision and coverage of ``choose``'s thresholds, each half scored
    with the thresholds chosen on the other; overall and per intent.
    ``never_answered``: intents whose prediction is a handoff whatever the
    confidence (out-of-scope and needs_human ones)."""
    handoff = set(never_answered)
    oos = set(out_of_scope)
    w = held.weights(unknown_share)
    first = halves(held, seed)
    overall = _Tally()
    by_pred: dict[str, _Tally] = {}
    by_true: dict[str, _Tally] = {}
    for choose_on, score_on in ((first, ~first), (~first, first)):
        thresholds = choose(held.subset(choose_on), w[choose_on])
        part = held.subset(score_on)
        pw = w[score_on]
        answered = answered_mask(part, thresholds, handoff)
        overall.add(part, answered, pw, handoff, oos)
        for intent in set(part.pred[answered]):
            m = part.pred == intent
            by_pred.setdefault(str(intent), _Tally()).add(part.subset(m), answered[m], pw[m], handoff, oos)
        for intent in set(part.true[~part.unknown]) - handoff:
            m = (part.true == intent) & ~part.unknown
            by_true.setdefault(str(intent), _Tally()).add(part.subset(m), answered[m], pw[m], handoff, oos)
    per_intent: dict[str, dict[str, Any]] = {}
    for intent in sorted(set(by_pred) | set(by_true)):
        p = by_pred.get(intent, _Tally()).figures()
        c = by_true.get(intent, _Tally()).figures()
        per_intent[intent] = {
            "precision": p["precision"], "precision_interval": p["precision_interval"],
            "answered": p["answered"],
            "coverage": c["coverage"], "coverage_interval": c["coverage_interval"],
            "in_scope": c["in_scope"],
        }
    return {
        "method": "split-half: thresholds chosen on one half of the held-out predictions, "
                  "scored on the other, both ways",
        "unknown_share_assumed": unknown_share if held.unknown.any() else None,
        **overall.figures(),
        "per_intent": per_intent,
    }


def describe(estimate: Mapping[str, Any], *, has_out_of_scope: bool) -> list[str]:
    """The estimate in words, one line each, for `faq train` and `faq eval`."""

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1%}"

    def interval(v: Any) -> str:
        return "" if not v else f" [{v[0]:.1%}, {v[1]:.1%}]"

    lines = [
        f"estimate (95% intervals; {estimate['method']}): precision {pct(estimate['precision'])}"
        f"{interval(estimate['precision_interval'])} over {estimate['answered']} answers, "
        f"coverage {pct(estimate['coverage'])}{interval(estimate['coverage_interval'])} "
        f"of {estimate['in_scope']} FAQ questions"
    ]
    if "unknown" in estimate:
        lines.append(
            f"questions no intent covers (simulated by leaving intents out of training, assumed "
            f"{estimate['unknown_share_assumed']:.0%} of traffic): {pct(estimate['unknown_answered'])}"
            f"{interval(estimate['unknown_answered_interval'])} of {estimate['unknown']} answered"
            " (wrongly)"
        )
    else:
        lines.append("questions no intent covers: not estimated (too few intents to leave any out)")
    if has_out_of_scope and "off_topic" in estimate:
        lines.append(
            f"out-of-scope examples: {pct(estimate['off_topic_answered'])}"
            f"{interval(estimate['off_topic_answered_interval'])} of {estimate['off_topic']} answered"
        )
    else:
        lines.append(
            "the knowledge base has no out_of_scope examples: this estimate covers its intents' "
            "questions and on-topic unknown ones, not off-topic messages (greetings, jokes, other "
            "products). Add an intent with out_of_scope: true and examples of those to cover them."
        )
    return lines

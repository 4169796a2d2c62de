"""How far confidence can be read as the chance of being right.

A reliability table groups predictions by confidence into equal-width bins
and compares each bin's mean confidence with its accuracy; the expected
calibration error (ECE) is their gap averaged over predictions. With a
calibrated model, one threshold means the same for every intent and every
model version.

The confidence `faq train` ships is fitted here too (``ConfidenceCalibration``):
the softmax probability of the top intent saturates near 1 for the SVM (the
thresholds for 97 % precision came out at 0.991-1.000, where a hair's change
in the model moves coverage by tens of points). How far the top score is
ahead of the second separates right from wrong answers better there
(docs/classifier.md, section 9), while for the small knowledge bases'
logistic regression the softmax probability is the better guide; and
neither sees how far the message is from the intent's training examples
(its nearest one, and the words they use), which is what gives most
questions no intent covers away (neighbours.py). So the confidence is the
chance of being right read from all four, fitted on held-out predictions --
including questions no intent covers, at their assumed share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BINS = 15


@dataclass(frozen=True)
class ConfidenceCalibration:
    """confidence = sigmoid(margin_weight * margin + log_prob_weight * log p
    + similarity_weight * similarity + seen_weight * seen + intercept):
    ``margin`` is the top score minus the second (the model's logits, before
    the softmax), ``log p`` the log softmax probability of the top class,
    ``similarity`` the largest cosine similarity between the message and a
    training example of the top class, ``seen`` the share of the message's
    words that the top class's examples use (neighbours.py). The weights
    are >= 0, so confidence never falls as any input grows."""

    margin_weight: float
    log_prob_weight: float
    similarity_weight: float
    seen_weight: float
    intercept: float

    KIND = "sigmoid(margin, log_p, similarity, seen)"
    INPUTS = 4

    def __post_init__(self) -> None:
        weights = (self.margin_weight, self.log_prob_weight, self.similarity_weight, self.seen_weight)
        if not all(math.isfinite(v) for v in (*weights, self.intercept)) or min(weights) < 0:
            raise ValueError(f"calibration needs finite weights >= 0 and a finite intercept, got {self}")

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Confidences for rows of (margin, log p, similarity, seen)."""
        f = np.asarray(features, dtype=np.float64)
        z = (self.margin_weight * f[:, 0] + self.log_prob_weight * f[:, 1]
             + self.similarity_weight * f[:, 2] + self.seen_weight * f[:, 3] + self.intercept)
        # exp of a negative number only: no overflow for large |z|.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def one(self, margin: float, log_prob: float, similarity: float, seen: float) -> float:
        """``__call__`` for one message's inputs, on Python floats: the same
        operations in the same order (numpy's per-call cost was most of the
        cost of one row)."""
        z = (self.margin_weight * margin + self.log_prob_weight * log_prob
             + self.similarity_weight * similarity + self.seen_weight * seen + self.intercept)
        e = math.exp(-abs(z))
        return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "margin_weight": self.margin_weight,
                "log_prob_weight": self.log_prob_weight, "similarity_weight": self.similarity_weight,
                "seen_weight": self.seen_weight, "intercept": self.intercept}

    def describe(self) -> str:
        return (f"sigmoid({self.margin_weight:.3f} * margin + {self.log_prob_weight:.3f} * log p + "
                f"{self.similarity_weight:.3f} * similarity + {self.seen_weight:.3f} * seen "
                f"{self.intercept:+.3f})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ConfidenceCalibration":
        if not isinstance(data, Mapping) or data.get("kind") != cls.KIND:
            raise ValueError(f"unsupported confidence calibration {data!r}")
        names = ("margin_weight", "log_prob_weight", "similarity_weight", "seen_weight", "intercept")
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"confidence calibration lacks {', '.join(missing)}")
        values = [data[name] for name in names]
        for value in values:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"calibration parameter {value!r} is not a number")
        return cls(*(float(v) for v in values))


def top_features(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the top class, rows of (margin, log p)) for rows of logits:
    the top score minus the second, and the top class's log softmax
    probability. The other inputs of the confidence come from the examples
    (neighbours.py), not the scores."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[None, :]
    best = scores.argmax(axis=1)
    top2 = np.partition(scores, scores.shape[1] - 2, axis=1)[:, -2:]
    top = top2[:, 1]
    log_prob = -np.log(np.exp(scores - top[:, None]).sum(axis=1))
    return best, np.column_stack([top - top2[:, 0], log_prob])


def fit_confidence_calibration(
    features: np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> ConfidenceCalibration:
    """Platt scaling of held-out (margin, log p, similarity, seen) rows
    against right/wrong, weighted.

    Platt's smoothed targets ((n+ + 1) / (n+ + 2) for right, 1 / (n- + 2)
    for wrong) keep a small or all-right sample from fitting certainty."""
    from scipy.optimize import minimize

    f = np.asarray(features, dtype=np.float64).reshape(-1, ConfidenceCalibration.INPUTS)
    ok = np.asarray(correct, dtype=bool)
    w = np.ones(len(f)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not (len(f) == ok.size == w.size):
        raise ValueError("features, correct and weights must have the same length")
    keep = w > 0
    f, ok, w = f[keep], ok[keep], w[keep]
    n_pos, n_neg = float(w[ok].sum()), float(w[~ok].sum())
    target = np.where(ok, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    total = max(float(w.sum()), 1e-12)
    design = np.column_stack([f, np.ones(len(f))])

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ params
        value = float((w * (np.logaddexp(0.0, z) - target * z)).sum()) / total
        g = w * (0.5 * (1.0 + np.tanh(0.5 * z)) - target) / total
        return value, design.T @ g

    inputs = ConfidenceCalibration.INPUTS
    result = minimize(loss, np.append(np.ones(inputs), 0.0), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, None)] * inputs + [(None, None)])
    return ConfidenceCalibration(*(float(v) for v in result.x))


def calibration_report(
    confidences: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    bins: int = BINS,
    weights: Sequence[float] | np.ndarray | None = None,
) -> dict[str, Any] | None:
    """ECE and the reliability table of top-label predictions (None when
    there are none). ``weights`` weigh predictions (e.g. questions no intent
    covers, to their assumed share of traffic); ``n`` stays the count."""
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    w = np.ones(conf.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if conf.size == 0 or w.sum() <= 0:
        return None
    # Bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first.
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    table = []
    ece = 0.0
    total = float(w.sum())
    for i in range(bins):
        m = (index == i) & (w > 0)
        n = int(m.sum())
        if not n:
            continue
        weight = float(w[m].sum())
        mean_conf = float((w * conf)[m].sum()) / weight
        accuracy = float((w * ok)[m].sum()) / weight
        ece += weight / total * abs(mean_conf - accuracy)
        table.append({"low": i / bins, "high": (i + 1) / bins, "n": n,
                      "confidence": mean_conf, "accuracy": accuracy})
    return {"ece": ece, "n": int((w > 0).sum()), "bins": table}


def plot_reliability(reports: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """One reliability diagram per report (its ``calibration`` entries:
    held-out and test), accuracy against confidence; the diagonal is perfect
    calibration. matplotlib (the ``plot`` extra) is imported here only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(len(reports), 1), figsize=(4.2 * max(len(reports), 1), 4.2),
                             squeeze=False)
    for ax, report in zip(axes[0], reports):
        ax.plot([0, 1], [0, 1], linestyle="--", linewidth=0.8, color="grey")
        for label, table in (report.get("calibration") or {}).items():
            if not table:
                continue
            xs = [b["confidence"] for b in table["bins"]]
            ys = [b["accuracy"] for b in table["bins"]]
            ax.plot(xs, ys, marker="o", markersize=3, label=f"{label} (ECE {table['ece']:.3f})")
        title = str(report.get("dataset"))
        if report.get("unknown_intents"):
            title += f", draw {report.get('draw')}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(True, linewidth=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

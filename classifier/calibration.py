"""How far confidence can be read as the chance of being right.

A reliability table groups predictions by confidence into equal-width bins
and compares each bin's mean confidence with its accuracy; the expected
calibration error (ECE) is their gap averaged over predictions. With a
calibrated model, one threshold means the same for every intent and every
model version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BINS = 15


def calibration_report(
    confidences: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, bins: int = BINS
) -> dict[str, Any] | None:
    """ECE and the reliability table of top-label predictions (None when
    there are none)."""
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.size == 0:
        return None
    # Bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 joins the first.
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    table = []
    ece = 0.0
    for i in range(bins):
        m = index == i
        n = int(m.sum())
        if not n:
            continue
        mean_conf, accuracy = float(conf[m].mean()), float(ok[m].mean())
        ece += n / conf.size * abs(mean_conf - accuracy)
        table.append({"low": i / bins, "high": (i + 1) / bins, "n": n,
                      "confidence": mean_conf, "accuracy": accuracy})
    return {"ece": ece, "n": int(conf.size), "bins": table}


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

"""`faq eval --as-trained`: what `faq train` would estimate on a dataset's
training split, next to what its model then does on the test split.

The thresholds come from the training split alone, exactly as `faq train`
chooses them (held-out predictions, intents left out, split-half
estimate); the test split is only scored. With ``unknown_intents`` some
intents are dropped from training altogether (seeded draws): their test
sentences are questions no intent covers, which must be handed off -- the
on-topic unknown questions real traffic is full of.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .calibration import calibration_report
from .datasets import Dataset
from .estimate import DEFAULT_UNKNOWN_SHARE, wilson
from .knowledge_base import Intent, KnowledgeBase
from .thresholds import DEFAULT_TARGET_PRECISION
from .training import train

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def knowledge_base_of(pairs: Sequence[tuple[str, str]], out_of_scope_label: str | None) -> KnowledgeBase:
    """A knowledge base holding a dataset split's sentences as examples."""
    by_intent: dict[str, list[str]] = {}
    for text, label in pairs:
        by_intent.setdefault(label, []).append(text)
    intents = [
        Intent(id=label, examples=tuple(texts), out_of_scope=True) if label == out_of_scope_label
        else Intent(id=label, examples=tuple(texts), answer=f"(answer of {label})")
        for label, texts in sorted(by_intent.items())
    ]
    return KnowledgeBase(tuple(intents))


def draw_unknown_intents(dataset: Dataset, n: int, draw: int) -> list[str]:
    """``n`` intents drawn with seed ``draw`` (never the out-of-scope class)."""
    labels = sorted({y for _, y in dataset.train} - {dataset.out_of_scope_label})
    if not 0 < n < len(labels) - 1:
        raise ValueError(f"cannot hold {n} of {len(labels)} intents out of training")
    return sorted(np.random.default_rng(draw).choice(labels, n, replace=False).tolist())


def measure(
    true: np.ndarray, pred: np.ndarray, conf: np.ndarray, limits: np.ndarray,
    *, unknown: set[str], oos: str | None, shares: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Test figures at per-prediction thresholds ``limits``: an answer to an
    unknown intent's sentence or to an out-of-scope one is wrong. ``shares``:
    each intent's share of the training examples, against which the
    out-of-scope sentences an intent takes are compared (a catch-all)."""
    is_unknown = np.array([t in unknown for t in true], dtype=bool)
    is_oos = np.array([t == oos for t in true], dtype=bool)
    in_scope = ~is_unknown & ~is_oos
    answered = (pred != oos) & (conf >= limits)
    right = answered & (pred == true)
    n_in = int(in_scope.sum())
    out: dict[str, Any] = {
        "n_test": int(len(true)),
        "accuracy": float((pred == true)[in_scope].mean()) if n_in else None,
        "answered": int(answered.sum()),
        "precision": float(right.sum() / answered.sum()) if answered.any() else None,
        "precision_interval": wilson(int(right.sum()), int(answered.sum())),
        "coverage": float((answered & in_scope).sum() / n_in) if n_in else None,
        "coverage_interval": wilson(int((answered & in_scope).sum()), n_in),
        "in_scope": n_in,
    }
    out["test_chosen"] = test_chosen(true, pred, conf, in_scope=in_scope, oos=oos)
    if is_unknown.any():
        out["unknown"] = int(is_unknown.sum())
        out["unknown_answered"] = float(answered[is_unknown].mean())
    if is_oos.any():
        out["off_topic"] = int(is_oos.sum())
        out["off_topic_answered"] = float(answered[is_oos].mean())
        if shares:
            taken = is_oos & (pred != oos)
            out["off_topic_by_intent"] = {
                "predicted": catch_all(pred[taken], shares),
                "answered": catch_all(pred[taken & answered], shares),
            }
    return out


TEST_CHOSEN_PRECISIONS = (0.93, 0.95, 0.97)


def test_chosen(true: np.ndarray, pred: np.ndarray, conf: np.ndarray, *, in_scope: np.ndarray,
                oos: str | None) -> dict[str, float | None]:
    """The most coverage one global threshold gets at each precision, the
    threshold chosen on the test split itself: what the model can do at
    best, not something achievable without the test labels."""
    answerable = pred != oos
    order = np.argsort(-np.where(answerable, conf, -np.inf), kind="stable")
    ok = answerable[order]
    right = np.cumsum((pred == true)[order] & ok)
    answered = np.cumsum(ok)
    covered = np.cumsum(in_scope[order] & ok) / max(int(in_scope.sum()), 1)
    precision = right / np.maximum(answered, 1)
    # Only the last of equal confidences is a cut a threshold can make.
    c = conf[order]
    cut = np.ones(len(c), dtype=bool)
    cut[:-1] = c[:-1] != c[1:]
    out: dict[str, float | None] = {}
    for target in TEST_CHOSEN_PRECISIONS:
        qualifying = np.flatnonzero(cut & ok & (answered > 0) & (precision >= target))
        out[f"{target:.2f}"] = float(covered[qualifying[-1]]) if qualifying.size else None
    return out


def catch_all(pred: np.ndarray, shares: Mapping[str, float]) -> dict[str, Any]:
    """How unevenly intents take out-of-scope sentences: each intent's share
    of them over its share of the training examples; the largest ratio, and
    whose. 1 everywhere is no preference; a catch-all stands out."""
    n = int(len(pred))
    if not n:
        return {"n": 0}
    labels, counts = np.unique(pred.astype(str), return_counts=True)
    ratios = {str(k): (int(c) / n) / shares[str(k)] for k, c in zip(labels, counts) if shares.get(str(k))}
    top = max(ratios, key=ratios.__getitem__)
    largest = max(shares, key=shares.__getitem__)
    return {
        "n": n,
        "max_ratio": ratios[top],
        "max_ratio_intent": top,
        "max_ratio_count": int(counts[list(labels).index(top)]),
        "largest_intent": largest,
        "largest_intent_ratio": ratios.get(largest, 0.0),
    }


def evaluate_as_trained(
    dataset: Dataset,
    *,
    unknown_intents: int = 0,
    draw: int = 0,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    unknown_share: float = DEFAULT_UNKNOWN_SHARE,
    params: Mapping[str, Any] | None = None,
    progress: Progress = _noop,
) -> dict[str, Any]:
    started = time.perf_counter()
    oos = dataset.out_of_scope_label
    left_out = draw_unknown_intents(dataset, unknown_intents, draw) if unknown_intents else []
    train_pairs = [(t, y) for t, y in dataset.train if y not in set(left_out)]
    name = dataset.name + (f" ({unknown_intents} intents unknown, draw {draw})" if left_out else "")
    progress(f"{name}: training as `faq train` does on {len(train_pairs)} examples")
    trained = train(
        knowledge_base_of(train_pairs, oos), target_precision=target_precision,
        unknown_share=unknown_share, params=params, random_state=draw,
        progress=lambda line: progress(f"{name}: {line}"),
    )
    progress(f"{name}: scoring {len(dataset.test)} test examples")
    compiled = trained.compiled
    best, conf = compiled.top_many([t for t, _ in dataset.test])
    true = np.array([y for _, y in dataset.test], dtype=object)
    pred = compiled.classes_[best]
    limits = np.array([trained.thresholds.for_intent(p) for p in pred], dtype=np.float64)
    counts: dict[str, int] = {}
    for _, label in train_pairs:
        if label != oos:
            counts[label] = counts.get(label, 0) + 1
    total = sum(counts.values())
    measured = measure(true, pred, conf, limits, unknown=set(left_out), oos=oos,
                       shares={k: c / total for k, c in counts.items()})
    return {
        "dataset": dataset.name,
        "protocol": "as trained: thresholds and estimate from the training split alone",
        "unknown_intents": left_out,
        "draw": draw,
        "n_train": len(train_pairs),
        "target_precision": target_precision,
        "unknown_share_assumed": unknown_share,
        "threshold": trained.thresholds.global_threshold,
        "intent_thresholds": len(trained.thresholds.per_intent),
        "estimate": trained.evaluation["estimate"],
        "test": measured,
        "calibration": {
            "heldout": trained.evaluation.get("calibration"),
            # Every test sentence: the confidence is the chance of being right
            # in traffic with unknown questions (an unknown one is never right).
            "test": calibration_report(conf, pred == true),
        },
        "total_seconds": round(time.perf_counter() - started, 2),
    }


def average(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of the headline figures over draws (each draw weighs the same)."""

    def mean(part: str, key: str) -> float | None:
        values = [r[part].get(key) for r in reports]
        return None if any(v is None for v in values) else float(np.mean(values))

    chosen: dict[str, float | None] = {}
    for key in reports[0]["test"].get("test_chosen", {}):
        values = [r["test"]["test_chosen"][key] for r in reports]
        chosen[key] = None if any(v is None for v in values) else float(np.mean(values))
    return {
        "draws": len(reports),
        "estimate": {k: mean("estimate", k) for k in ("precision", "coverage", "unknown_answered")},
        "test": {k: mean("test", k) for k in ("precision", "coverage", "unknown_answered", "accuracy")},
        "test_chosen": chosen,
    }


def format_as_trained(reports: Sequence[Mapping[str, Any]]) -> str:
    def pct(v: Any) -> str:
        return "   n/a" if v is None else f"{100 * v:5.1f}%"

    header = (f"{'dataset':<12} {'draw':>4} {'acc':>6} {'thresh':>6} {'prec est':>8} {'test':>6} "
              f"{'cov est':>8} {'test':>6} {'unk est':>8} {'test':>6} {'oos@t':>6} {'ECE':>5} {'secs':>6}")
    lines = [header, "-" * len(header)]
    for r in reports:
        e, t = r["estimate"], r["test"]
        ece = (r.get("calibration") or {}).get("test") or {}
        lines.append(
            f"{r['dataset'][:12]:<12} {r['draw'] if r['unknown_intents'] else '-':>4} {pct(t['accuracy'])} "
            f"{r['threshold']:6.3f} {pct(e['precision']):>8} {pct(t['precision'])} "
            f"{pct(e['coverage']):>8} {pct(t['coverage'])} {pct(e.get('unknown_answered')):>8} "
            f"{pct(t.get('unknown_answered'))} {pct(t.get('off_topic_answered'))} "
            f"{ece.get('ece', float('nan')):5.3f} {r['total_seconds']:6.1f}"
        )
    by_dataset: dict[str, list[Mapping[str, Any]]] = {}
    for r in reports:
        by_dataset.setdefault(r["dataset"], []).append(r)
    for name, group in by_dataset.items():
        if len(group) > 1:
            m = average(group)
            e, t = m["estimate"], m["test"]
            lines.append(
                f"{name[:12]:<12} {'mean':>4} {pct(t['accuracy'])} {'':>6} {pct(e['precision']):>8} "
                f"{pct(t['precision'])} {pct(e['coverage']):>8} {pct(t['coverage'])} "
                f"{pct(e['unknown_answered']):>8} {pct(t['unknown_answered'])}"
            )
    for name, group in by_dataset.items():
        if "test_chosen" in group[0]["test"]:
            chosen = average(group)["test_chosen"] if len(group) > 1 else group[0]["test"]["test_chosen"]
            lines.append(
                f"{name}{' (mean of draws)' if len(group) > 1 else ''}: best coverage of one threshold "
                "chosen on test (no estimate can know it) at "
                + ", ".join(f"{float(k):.0%} precision {pct(v).strip()}" for k, v in chosen.items()))
    for r in reports:
        spread = r["test"].get("off_topic_by_intent")
        if not spread:
            continue
        parts = []
        for kind in ("predicted", "answered"):
            c = spread[kind]
            parts.append(f"{kind} as an intent {c['n']}" + (
                f", most over its share of the examples: {c['max_ratio']:.1f}x ({c['max_ratio_intent']}, "
                f"{c['max_ratio_count']})" if c["n"] else ""))
        lines.append(f"{r['dataset']}: out-of-scope test sentences {'; '.join(parts)}")
    return "\n".join(lines)

"""Measure the classifier on a public dataset or on a knowledge base.

Protocol for a dataset (see docs/classifier.md for the definitions):

1. fit on ``train`` (CLINC150: including ``oos_train`` as the class ``oos``);
2. choose one global threshold on ``validation``: the lowest confidence at
   which the answered validation predictions reach the target precision;
3. report on ``test``: accuracy, out-of-scope recall, precision and coverage
   at that threshold, and the precision/coverage curve.

For a knowledge base there is no test set: the figures come from k-fold
cross-validated predictions, the same ones ``faq train`` uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DATASET_NAMES, Dataset, Pairs, load_dataset
from .fast import CompiledClassifier
from .model import IntentClassifier
from .thresholds import (
    DEFAULT_TARGET_PRECISION,
    lowest_threshold_meeting,
    precision_coverage_curve,
)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def score_predictions(
    true: np.ndarray,
    pred: np.ndarray,
    conf: np.ndarray,
    threshold: float,
    oos_label: str | None,
) -> dict[str, Any]:
    """All test figures for one global threshold.

    * ``accuracy``: over in-scope messages, argmax prediction, no threshold
      (predicting the out-of-scope class counts as wrong) -- the standard
      CLINC150 in-scope accuracy.
    * ``accuracy_with_threshold``: the same, but a rejected (below-threshold)
      in-scope message also counts as wrong.
    * ``oos_recall_class``: share of out-of-scope messages predicted as the
      out-of-scope class.
    * ``oos_recall``: share predicted out-of-scope *or* rejected by the
      threshold -- what the product does with them (hand off).
    * ``precision`` / ``coverage``: answered = predicted class is not
      out-of-scope and confidence >= threshold. Precision = correct / answered
      (answering an out-of-scope message is wrong); coverage = answered
      in-scope / all in-scope messages.
    """
    oos = {oos_label} if oos_label else set()
    in_scope = np.array([t not in oos for t in true], dtype=bool)
    predicted_oos = np.array([p in oos for p in pred], dtype=bool)
    correct = pred == true
    confident = conf >= threshold
    answered = ~predicted_oos & confident
    n_in = max(int(in_scope.sum()), 1)
    n_oos = int((~in_scope).sum())
    out: dict[str, Any] = {
        "n_test": int(len(true)),
        "n_in_scope": int(in_scope.sum()),
        "n_out_of_scope": n_oos,
        "accuracy": float(correct[in_scope].mean()) if in_scope.any() else None,
        "accuracy_with_threshold": float((correct & confident)[in_scope].sum() / n_in),
        "precision": float(correct[answered].mean()) if answered.any() else None,
        "coverage": float((answered & in_scope).sum() / n_in),
        "coverage_of_all_traffic": float(answered.mean()) if len(true) else 0.0,
    }
    if n_oos:
        out["oos_recall_class"] = float(predicted_oos[~in_scope].mean())
        out["oos_recall"] = float((predicted_oos | ~confident)[~in_scope].mean())
    return out


# A model fit that has been started (or is ready to start): calling it waits
# for (the compiled model, the seconds the fit took).
PendingFit = Callable[[], tuple[CompiledClassifier, float]]


@dataclass(frozen=True)
class _Fits:
    train: PendingFit
    refit: PendingFit | None  # train + validation, with refit_with_validation
    started: float  # time.perf_counter() the report's total_seconds count from


def _fit_compiled(
    params: Mapping[str, Any], pairs: Pairs, known: Mapping[str, np.ndarray] | None = None
) -> tuple[CompiledClassifier, float]:
    """Fit and compile; ``known``: embeddings already computed (by another
    process) for the normalised texts, so this one does not encode them again."""
    started = time.perf_counter()
    texts, labels = [t for t, _ in pairs], [y for _, y in pairs]
    if known is None:
        model = IntentClassifier(**params).fit(texts, labels)
    else:
        from .embeddings import get_encoder

        with get_encoder().memoize(known):
            model = IntentClassifier(**params).fit(texts, labels)
    return CompiledClassifier.from_fitted(model), time.perf_counter() - started


def _fits_in_turn(
    dataset: Dataset, params: Mapping[str, Any], refit: bool, progress: Progress
) -> _Fits:
    """Fits run here, each when it is first needed."""

    def later(pairs: Pairs, what: str) -> PendingFit:
        def run() -> tuple[CompiledClassifier, float]:
            progress(f"{dataset.name}: fitting on {what} ({len(pairs)} examples)")
            return _fit_compiled(params, pairs)

        return run

    return _Fits(
        later(dataset.train, "train"),
        later(dataset.train + dataset.validation, "train + validation") if refit else None,
        time.perf_counter(),
    )


def evaluate_dataset(dataset: Dataset, **kwargs: Any) -> dict[str, Any]:
    from .embeddings import memoized

    # The same texts go through the fit, the threshold choice and the refit:
    # with sentence embeddings, encode each of them once.
    with memoized(bool((kwargs.get("params") or {}).get("embeddings"))):
        return _evaluate_dataset(dataset, **kwargs)


def _evaluate_dataset(
    dataset: Dataset,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    params: Mapping[str, Any] | None = None,
    refit_with_validation: bool = False,
    reweight_oos: bool = True,
    progress: Progress = _noop,
    fits: _Fits | None = None,
) -> dict[str, Any]:
    params = dict(params or {})
    oos = dataset.out_of_scope_label
    if fits is None:
        fits = _fits_in_turn(dataset, params, refit_with_validation, progress)
    started = fits.started
    compiled, fit_seconds = fits.train()

    def predict(cm: CompiledClassifier, pairs):
        probs = cm.predict_proba_many([t for t, _ in pairs])
        return (
            np.array([label for _, label in pairs], dtype=object),
            cm.classes_[probs.argmax(axis=1)],
            probs.max(axis=1),
        )

    progress(f"{dataset.name}: choosing the threshold on {len(dataset.validation)} validation examples")
    v_true, v_pred, v_conf = predict(compiled, dataset.validation)
    eligible = np.array([p != oos for p in v_pred], dtype=bool)
    v_correct = v_pred == v_true
    plain = lowest_threshold_meeting(v_conf[eligible], v_correct[eligible], target_precision)
    choice, weighting = plain, None
    share = dataset.expected_oos_share if reweight_oos else None
    if oos is not None and share is not None:
        is_oos = v_true == oos
        current = float(is_oos.mean())
        if 0.0 < current < 1.0:
            # Validation has a different out-of-scope rate than the traffic we
            # report on; weighting its examples to the expected rate makes the
            # precision estimate (and so the threshold) fit that traffic.
            weights = np.where(is_oos, share / current, (1.0 - share) / (1.0 - current))
            choice = lowest_threshold_meeting(
                v_conf[eligible], v_correct[eligible], target_precision, weights[eligible]
            )
            weighting = {"validation_oos_share": current, "expected_oos_share": share}
    validation = score_predictions(v_true, v_pred, v_conf, choice.threshold, oos)

    if fits.refit is not None:
        # What `faq train` does: thresholds from held-out predictions, then the
        # shipped model is refit on everything, validation included.
        compiled, _ = fits.refit()

    progress(f"{dataset.name}: scoring {len(dataset.test)} test examples")
    t_true, t_pred, t_conf = predict(compiled, dataset.test)
    test = score_predictions(t_true, t_pred, t_conf, choice.threshold, oos)
    t_eligible = np.array([p != oos for p in t_pred], dtype=bool)
    oracle = lowest_threshold_meeting(
        t_conf[t_eligible], (t_pred == t_true)[t_eligible], target_precision
    )
    curve = precision_coverage_curve(
        t_pred, t_conf, t_true, out_of_scope=[oos] if oos else []
    )
    return {
        "dataset": dataset.name,
        "protocol": "train+validation refit" if refit_with_validation else "train only",
        "validation_split": dataset.validation_note,
        "n_train": len(dataset.train) + (len(dataset.validation) if refit_with_validation else 0),
        "n_classes": int(len(compiled.classes_)),
        "n_features": compiled.n_features,
        "params": _jsonable(IntentClassifier(**params).get_params()),
        "target_precision": target_precision,
        "threshold": choice.threshold,
        "threshold_met_on_validation": choice.met,
        "oos_reweighting": weighting,
        "validation": validation,
        "test": test,
        # The same figures at the threshold chosen without re-weighting.
        "threshold_unweighted": plain.threshold,
        "test_at_unweighted_threshold": score_predictions(
            t_true, t_pred, t_conf, plain.threshold, oos
        ),
        # Where the *test* curve itself reaches the target: not achievable
        # without test labels, reported as the operating point of the curve.
        "test_curve_at_target": {
            "threshold": oracle.threshold,
            "met": oracle.met,
            **score_predictions(t_true, t_pred, t_conf, oracle.threshold, oos),
        },
        "curve": curve,
        "fit_seconds": round(fit_seconds, 2),
        "total_seconds": round(time.perf_counter() - started, 2),
    }


def evaluate_knowledge_base(
    kb_path: str | Path,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    params: Mapping[str, Any] | None = None,
    progress: Progress = _noop,
) -> dict[str, Any]:
    from .knowledge_base import load_knowledge_base
    from .training import heldout_predictions

    started = time.perf_counter()
    kb = load_knowledge_base(kb_path)
    texts, labels = kb.training_data()
    from .embeddings import memoized

    with memoized(bool((params or {}).get("embeddings"))):
        true, pred, conf, method = heldout_predictions(
            texts, labels, validation_fraction=0.2, random_state=0, params=params or {},
            progress=progress,
        )
    oos_ids = [i.id for i in kb.intents if i.out_of_scope]
    eligible = np.array([p not in oos_ids for p in pred], dtype=bool)
    choice = lowest_threshold_meeting(conf[eligible], (pred == true)[eligible], target_precision)
    # Several out-of-scope intents are possible in a KB; score them as one.
    merged = "\x00out_of_scope"
    true_m = np.array([merged if t in oos_ids else t for t in true], dtype=object)
    pred_m = np.array([merged if p in oos_ids else p for p in pred], dtype=object)
    heldout = score_predictions(true_m, pred_m, conf, choice.threshold, merged if oos_ids else None)
    return {
        "dataset": str(kb_path),
        "protocol": method,
        "n_train": len(texts),
        "n_classes": len(kb.intents),
        "params": _jsonable(IntentClassifier(**(params or {})).get_params()),
        "target_precision": target_precision,
        "threshold": choice.threshold,
        "threshold_met_on_validation": choice.met,
        "test": heldout,
        "curve": precision_coverage_curve(pred_m, conf, true_m, out_of_scope=[merged]),
        "total_seconds": round(time.perf_counter() - started, 2),
    }


# all-MiniLM-L6-v2 is an English model: on SMP2017 (Chinese) it gained
# nothing (docs/classifier.md §8), so by default it is not computed there.
EMBEDDING_LANGUAGES = ("en",)


def evaluate_datasets(
    datasets: Sequence[Dataset],
    *,
    workers: int = 1,
    params: Mapping[str, Any] | None = None,
    embedding_languages: Sequence[str] | None = EMBEDDING_LANGUAGES,
    progress: Progress | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Evaluate datasets (``kwargs`` as for ``evaluate_dataset``), reports in
    the order given. With ``workers`` > 1 the model fits, and the sentence
    embeddings, are computed in that many processes while this one scores:
    the same reports, sooner on a multi-core machine.

    With ``params["embeddings"]``, a dataset whose language is not in
    ``embedding_languages`` (None: any) is evaluated without them, and its
    report says so under ``"embeddings_skipped"``."""
    progress = progress or _noop
    datasets = list(datasets)
    params_of, skipped = {}, {}
    for d in datasets:
        params_of[d.name] = dict(params or {})
        if params_of[d.name].get("embeddings") and embedding_languages is not None \
                and d.language not in embedding_languages:
            params_of[d.name]["embeddings"] = False
            skipped[d.name] = (
                f"language {d.language!r}: the sentence encoder is English-only "
                "(no gain measured on SMP2017, docs/classifier.md §8)"
            )
            progress(f"{d.name}: without sentence embeddings ({skipped[d.name]})")
    if workers <= 1:
        reports = [
            evaluate_dataset(d, params=params_of[d.name], progress=progress, **kwargs)
            for d in datasets
        ]
    else:
        reports = _evaluate_in_processes(datasets, workers, params_of, progress=progress, **kwargs)
    for report in reports:
        if report["dataset"] in skipped:
            report["embeddings_skipped"] = skipped[report["dataset"]]
    return reports


def _evaluate_in_processes(
    datasets: list[Dataset],
    workers: int,
    params_of: Mapping[str, Mapping[str, Any]],
    *,
    progress: Progress,
    refit_with_validation: bool = False,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor

    from threadpoolctl import threadpool_limits

    from .embeddings import get_encoder

    # The datasets overlap in time: each one's seconds count from here.
    started = time.perf_counter()
    # Largest training sets first: their fits bound the wall time.
    order = sorted(datasets, key=lambda d: len(d.train), reverse=True)
    embedded = [d for d in order if params_of[d.name].get("embeddings")]
    # One BLAS thread per process: with one process per core, more threads
    # only contend (measured: 2 threads on 2 cores ran matmuls slower than 1).
    pool = ProcessPoolExecutor(workers, initializer=_one_blas_thread)
    try:
        with threadpool_limits(1):
            # All encoding is queued first; each dataset's fits are queued as
            # soon as its texts are encoded, so no worker waits for the others.
            encoding = _submit_encoding(pool, embedded, workers, progress)
            known: dict[str, np.ndarray] = {}
            fits: dict[str, _Fits] = {}
            for d in order:
                if d.name in encoding:
                    for chunk, future in encoding[d.name]:
                        known.update(zip(chunk, future.result()))
                    progress(f"{d.name}: sentence embeddings computed ({len(known)} texts so far)")
                fits[d.name] = _submit_fits(
                    pool, d, params_of[d.name], refit_with_validation,
                    known if d.name in encoding else None, progress, started,
                )
            with get_encoder().memoize(known) if embedded else nullcontext():
                return [
                    _evaluate_dataset(
                        d, params=params_of[d.name], refit_with_validation=refit_with_validation,
                        progress=progress, fits=fits[d.name], **kwargs,
                    )
                    for d in datasets
                ]
    finally:
        pool.shutdown(cancel_futures=True)


def _one_blas_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _encode_chunk(texts: list[str]) -> np.ndarray:
    from .embeddings import get_encoder

    return get_encoder().encode(texts)


def _submit_encoding(
    pool, datasets: list[Dataset], workers: int, progress: Progress
) -> dict[str, list]:
    """Per dataset, (texts, future embeddings) chunks covering its distinct
    normalised texts of every split; a text shared with an earlier dataset is
    encoded with that one."""
    from .text import normalize

    seen: set[str] = set()
    out: dict[str, list] = {}
    for d in datasets:
        texts = sorted(
            {normalize(t) for split in (d.train, d.validation, d.test) for t, _ in split} - seen,
            key=lambda t: (len(t), t),
        )
        seen.update(texts)
        progress(f"{d.name}: encoding {len(texts)} distinct texts in {workers} processes")
        # Interleaved slices of the length-sorted texts cost about the same.
        n_chunks = 2 * workers
        chunks = [texts[i::n_chunks] for i in range(n_chunks) if texts[i::n_chunks]]
        out[d.name] = [(c, pool.submit(_encode_chunk, c)) for c in chunks]
    return out


def _submit_fits(
    pool,
    dataset: Dataset,
    params: Mapping[str, Any],
    refit: bool,
    known: Mapping[str, np.ndarray] | None,
    progress: Progress,
    started: float,
) -> _Fits:
    from .text import normalize

    def submit(pairs: Pairs, what: str) -> PendingFit:
        # Each fit gets the embeddings of its own texts only.
        mine = None if known is None else {n: known[n] for n in {normalize(t) for t, _ in pairs}}
        progress(f"{dataset.name}: fitting on {what} ({len(pairs)} examples) in a worker process")
        future = pool.submit(_fit_compiled, params, pairs, mine)

        def done(f) -> None:
            if not f.cancelled() and f.exception() is None:
                progress(f"{dataset.name}: fitted on {what} in {f.result()[1]:.1f} s")

        future.add_done_callback(done)
        return future.result

    return _Fits(
        submit(dataset.train, "train"),
        submit(dataset.train + dataset.validation, "train + validation") if refit else None,
        started,
    )


def evaluate(
    dataset_name: str,
    *,
    datasets_dir: str | Path | None = None,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    params: Mapping[str, Any] | None = None,
    refit_with_validation: bool = False,
    reweight_oos: bool = True,
    out: str | Path | None = None,
    plot: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate on a named dataset (clinc150, banking77, smp2017) or, for any
    other value, on the knowledge base file/directory at that path."""
    progress = progress or _noop
    if dataset_name in DATASET_NAMES:
        progress(f"loading {dataset_name}")
        report = evaluate_dataset(
            load_dataset(dataset_name, datasets_dir),
            target_precision=target_precision,
            params=params,
            refit_with_validation=refit_with_validation,
            reweight_oos=reweight_oos,
            progress=progress,
        )
    else:
        report = evaluate_knowledge_base(
            dataset_name, target_precision=target_precision, params=params, progress=progress
        )
    if out is not None:
        write_json(report, out)
        progress(f"wrote {out}")
    if plot is not None:
        plot_curve([report], plot)
        progress(f"wrote {plot}")
    return report


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(report: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def plot_curve(reports: list[Mapping[str, Any]], path: str | Path) -> None:
    """Precision against coverage, one line per report, with the chosen
    threshold marked. matplotlib is imported here so that serving never pays
    for it (and never needs it installed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lowest = 1.0
    for report in reports:
        points = [(c, p) for _, p, c in report["curve"] if p is not None]
        lowest = min([lowest] + [p for c, p in points if c > 0.05])
        (line,) = ax.plot(
            [c for c, _ in points], [p for _, p in points], label=Path(str(report["dataset"])).name
        )
        test = report["test"]
        if test.get("precision") is not None:
            ax.scatter(
                [test["coverage"]], [test["precision"]], marker="o", zorder=3, color=line.get_color()
            )
            ax.annotate(
                f"t={report['threshold']:.2f}",
                (test["coverage"], test["precision"]),
                textcoords="offset points",
                xytext=(5, -12),
                fontsize=8,
            )
    target = reports[0].get("target_precision") if reports else None
    if target:
        ax.axhline(target, linestyle="--", linewidth=0.8, color="grey")
    ax.set_xlabel("coverage (share of in-scope messages answered)")
    ax.set_ylabel("precision of answered messages")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(max(0.0, min(lowest, target or 1.0) - 0.02), 1.005)
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="lower left")
    ax.set_title("Precision / coverage as the confidence threshold varies")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_table(reports: list[Mapping[str, Any]]) -> str:
    def pct(v: Any) -> str:
        return "   n/a" if v is None else f"{100 * v:5.1f}%"

    header = (
        f"{'dataset':<22} {'acc':>6} {'acc@t':>6} {'oosRec':>6} {'oos@t':>6} "
        f"{'thresh':>6} {'prec@t':>6} {'cov@t':>6} {'secs':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        t = r["test"]
        lines.append(
            f"{Path(str(r['dataset'])).name[:22]:<22} {pct(t.get('accuracy'))} "
            f"{pct(t.get('accuracy_with_threshold'))} {pct(t.get('oos_recall_class'))} "
            f"{pct(t.get('oos_recall'))} {r['threshold']:6.3f} {pct(t.get('precision'))} "
            f"{pct(t.get('coverage'))} {r['total_seconds']:6.1f}"
        )
    for r in reports:
        if r.get("embeddings_skipped"):
            lines.append(f"{r['dataset']}: no sentence embeddings, {r['embeddings_skipped']}")
    return "\n".join(lines)

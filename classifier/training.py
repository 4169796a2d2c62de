"""Train a model from a knowledge base and choose its confidence thresholds.

Thresholds must be chosen on predictions for examples the model did not see:
on its own training data a high-C logistic regression is near-certain about
everything, which would make any threshold look safe. So training first
produces held-out predictions (one stratified split for large knowledge
bases, k-fold cross-validation for small ones, where a 20% split would leave
one or two examples per intent), picks thresholds on them, and only then
refits on all examples for the model that is shipped.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.errors import InvalidInput

from .fast import CompiledClassifier
from .knowledge_base import KnowledgeBase, load_knowledge_base
from .model import IntentClassifier
from .thresholds import (
    DEFAULT_TARGET_PRECISION,
    MIN_INTENT_SUPPORT,
    Thresholds,
    precision_coverage_curve,
    select_thresholds,
)

Progress = Callable[[str], None]

# Below this many examples a single split wastes too much data; cross-validated
# predictions give every example a held-out score instead.
CV_BELOW_EXAMPLES = 2000
MIN_VALIDATION_PER_INTENT = 3
MAX_FOLDS = 5


@dataclass(frozen=True)
class TrainedModel:
    compiled: CompiledClassifier
    thresholds: Thresholds
    evaluation: Mapping[str, Any]
    kb_hash: str
    estimator: IntentClassifier = field(repr=False)


def _noop(_: str) -> None:
    pass


def heldout_predictions(
    texts: list[str],
    labels: list[str],
    *,
    validation_fraction: float,
    random_state: int,
    params: Mapping[str, Any],
    progress: Progress = _noop,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(true labels, predicted labels, confidences, method) for held-out examples."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = np.asarray(labels, dtype=object)
    smallest = min(Counter(labels).values())
    per_intent_val = int(smallest * validation_fraction)
    if len(texts) >= CV_BELOW_EXAMPLES and per_intent_val >= MIN_VALIDATION_PER_INTENT:
        idx_train, idx_val = train_test_split(
            np.arange(len(texts)),
            test_size=validation_fraction,
            stratify=y,
            random_state=random_state,
        )
        progress(f"validation split: {len(idx_train)} train / {len(idx_val)} held out")
        model = IntentClassifier(**params).fit([texts[i] for i in idx_train], y[idx_train])
        probs = model.predict_proba([texts[i] for i in idx_val])
        return y[idx_val], model.classes_[probs.argmax(1)], probs.max(1), "split"

    folds = min(MAX_FOLDS, smallest)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    true = np.empty(len(texts), dtype=object)
    pred = np.empty(len(texts), dtype=object)
    conf = np.empty(len(texts), dtype=np.float64)
    for k, (idx_train, idx_val) in enumerate(splitter.split(np.zeros(len(texts)), y), start=1):
        progress(f"cross-validation fold {k}/{folds}")
        model = IntentClassifier(**params).fit([texts[i] for i in idx_train], y[idx_train])
        probs = model.predict_proba([texts[i] for i in idx_val])
        true[idx_val] = y[idx_val]
        pred[idx_val] = model.classes_[probs.argmax(1)]
        conf[idx_val] = probs.max(1)
    return true, pred, conf, f"{folds}-fold cross-validation"


def train(
    kb: KnowledgeBase,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    progress: Progress | None = None,
    params: Mapping[str, Any] | None = None,
    min_intent_support: int = MIN_INTENT_SUPPORT,
) -> TrainedModel:
    progress = progress or _noop
    params = dict(params or {})
    if not 0.0 < target_precision <= 1.0:
        raise InvalidInput(f"target precision {target_precision} must be in (0, 1]")
    if not 0.0 < validation_fraction < 1.0:
        raise InvalidInput(f"validation fraction {validation_fraction} must be in (0, 1)")
    texts, labels = kb.training_data()
    if len(set(labels)) < 2:
        raise InvalidInput("a knowledge base needs at least two intents to train a classifier")
    started = time.perf_counter()
    progress(f"training on {len(texts)} examples, {len(kb.intents)} intents")
    if params.get("embeddings"):
        from .embeddings import memoized

        progress("sentence embeddings on: loading the encoder")
        # Cross-validation folds and the final fit share each text's embedding.
        with memoized(True):
            return _train(kb, texts, labels, target_precision, validation_fraction,
                          random_state, progress, params, min_intent_support, started)
    return _train(kb, texts, labels, target_precision, validation_fraction,
                  random_state, progress, params, min_intent_support, started)


def _train(
    kb: KnowledgeBase,
    texts: list[str],
    labels: list[str],
    target_precision: float,
    validation_fraction: float,
    random_state: int,
    progress: Progress,
    params: dict[str, Any],
    min_intent_support: int,
    started: float,
) -> TrainedModel:

    true, pred, conf, method = heldout_predictions(
        texts,
        labels,
        validation_fraction=validation_fraction,
        random_state=random_state,
        params=params,
        progress=progress,
    )
    oos = [i.id for i in kb.intents if i.out_of_scope]
    thresholds, details = select_thresholds(
        pred,
        conf,
        true,
        target_precision=target_precision,
        never_answered=oos,
        min_support=min_intent_support,
    )
    global_info = details["global"]
    if not global_info["met"]:
        progress(
            f"warning: no threshold reaches {target_precision:.0%} precision on held-out "
            "examples; the bot will hand off almost everything. Add more examples."
        )
    progress(
        f"thresholds: global {thresholds.global_threshold:.3f}, "
        f"{len(thresholds.per_intent)} intent-specific (target precision {target_precision:.0%})"
    )

    progress("fitting final model on all examples")
    estimator = IntentClassifier(**params).fit(texts, labels)
    compiled = CompiledClassifier.from_fitted(estimator)

    answered_by_intent = _answered_mask(pred, conf, thresholds, oos)
    in_scope = np.array([t not in oos for t in true], dtype=bool)
    n_answered = int(answered_by_intent.sum())
    evaluation = {
        "heldout_method": method,
        "heldout_examples": int(len(true)),
        "heldout_accuracy": float(np.mean(pred == true)),
        "precision_at_thresholds": (
            float(np.mean(pred[answered_by_intent] == true[answered_by_intent]))
            if n_answered
            else None
        ),
        "coverage_at_thresholds": float(
            (answered_by_intent & in_scope).sum() / max(int(in_scope.sum()), 1)
        ),
        "threshold_selection": details,
        "curve": precision_coverage_curve(pred, conf, true, out_of_scope=oos),
        "params": IntentClassifier(**params).get_params(),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    progress(
        f"held-out ({method}): accuracy {evaluation['heldout_accuracy']:.1%}, "
        f"precision {_pct(evaluation['precision_at_thresholds'])}, "
        f"coverage {evaluation['coverage_at_thresholds']:.1%} at the chosen thresholds"
    )
    return TrainedModel(compiled, thresholds, evaluation, kb.content_hash(), estimator)


def _answered_mask(
    pred: np.ndarray, conf: np.ndarray, thresholds: Thresholds, oos: list[str]
) -> np.ndarray:
    limits = np.array([thresholds.for_intent(p) for p in pred], dtype=np.float64)
    not_oos = np.array([p not in oos for p in pred], dtype=bool)
    return not_oos & (conf >= limits)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def train_and_save(
    kb_path: str | Path,
    models_root: str | Path,
    activate: bool = True,
    *,
    version: str | None = None,
    progress: Progress | None = None,
    **train_kwargs: Any,
) -> str:
    """Load, train, save as a new version and (by default) activate it."""
    from .artifact import ModelStore, save_model

    progress = progress or _noop
    kb = load_knowledge_base(kb_path)
    trained = train(kb, progress=progress, **train_kwargs)
    store = ModelStore(models_root)
    version = version or store.new_version_name()
    path = save_model(
        trained.compiled,
        kb,
        models_root,
        version,
        trained.thresholds,
        _json_safe(trained.evaluation),
    )
    progress(f"saved model {version} to {path}")
    if activate:
        store.activate(version)
        progress(f"activated {version}")
    return version


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

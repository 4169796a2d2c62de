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
from .calibration import ConfidenceCalibration, calibration_report, fit_confidence_calibration
from .estimate import DEFAULT_UNKNOWN_SHARE, HeldOut, describe, split_half_estimate
from .knowledge_base import MIN_EXAMPLES, KnowledgeBase, load_knowledge_base
from .model import IntentClassifier, wants_static_embeddings
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
# Intents are left out of training in this many groups to simulate questions
# no intent covers: a quarter of the topics unknown at a time.
UNKNOWN_GROUPS = 4


@dataclass(frozen=True)
class TrainedModel:
    compiled: CompiledClassifier
    thresholds: Thresholds
    evaluation: Mapping[str, Any]
    kb_hash: str
    estimator: IntentClassifier = field(repr=False)


def _noop(_: str) -> None:
    pass


def _split_groups(labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of examples that can be held out, and of those that always
    train: an intent with fewer than MIN_EXAMPLES examples has too few to
    spare one for validation in a single split."""
    counts = Counter(labels)
    small = np.array([counts[y] < MIN_EXAMPLES for y in labels], dtype=bool)
    return np.flatnonzero(~small), np.flatnonzero(small)


def heldout_predictions(
    texts: list[str],
    labels: list[str],
    *,
    validation_fraction: float,
    random_state: int,
    params: Mapping[str, Any],
    progress: Progress = _noop,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(true labels, predicted labels, confidence features, method) for
    held-out examples; the features are IntentClassifier.confidence_features'
    rows."""
    import warnings

    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = np.asarray(labels, dtype=object)
    counts = Counter(labels)
    regular = [n for n in counts.values() if n >= MIN_EXAMPLES]
    smallest = min(regular) if regular else min(counts.values())
    per_intent_val = int(smallest * validation_fraction)
    if len(texts) >= CV_BELOW_EXAMPLES and per_intent_val >= MIN_VALIDATION_PER_INTENT:
        splittable, always_train = _split_groups(labels)
        idx_train, idx_val = train_test_split(
            splittable,
            test_size=validation_fraction,
            stratify=y[splittable],
            random_state=random_state,
        )
        idx_train = np.concatenate([idx_train, always_train])
        progress(f"validation split: {len(idx_train)} train / {len(idx_val)} held out")
        model = IntentClassifier(**params).fit([texts[i] for i in idx_train], y[idx_train])
        best, features = _scores(model, [texts[i] for i in idx_val])
        return y[idx_val], model.classes_[best], features, "split"

    folds = max(2, min(MAX_FOLDS, smallest))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    true = np.empty(len(texts), dtype=object)
    pred = np.empty(len(texts), dtype=object)
    conf = np.empty((len(texts), ConfidenceCalibration.INPUTS), dtype=np.float64)
    with warnings.catch_warnings():
        # An intent with one or two examples cannot be in every fold; when its
        # only example is held out the model cannot know it, and the held-out
        # prediction is rightly wrong.
        warnings.filterwarnings("ignore", message="The least populated class")
        split = list(splitter.split(np.zeros(len(texts)), y))
    for k, (idx_train, idx_val) in enumerate(split, start=1):
        progress(f"cross-validation fold {k}/{folds}")
        model = IntentClassifier(**params).fit([texts[i] for i in idx_train], y[idx_train])
        best, features = _scores(model, [texts[i] for i in idx_val])
        true[idx_val] = y[idx_val]
        pred[idx_val] = model.classes_[best]
        conf[idx_val] = features
    return true, pred, conf, f"{folds}-fold cross-validation"


def _scores(model: IntentClassifier, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return model.confidence_features(texts)


def unknown_intent_predictions(
    texts: list[str],
    labels: list[str],
    *,
    leavable: list[str],
    groups: int = UNKNOWN_GROUPS,
    random_state: int,
    params: Mapping[str, Any],
    progress: Progress = _noop,
    train_fraction: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Predictions for questions no intent covers, on the knowledge base's
    own topics: the ``leavable`` intents are dealt into ``groups``; a model
    fitted without one group's intents predicts all of that group's
    examples. Any answer to one of them is wrong. None when fewer than two
    intents can be left out (a model needs two classes)."""
    if len(leavable) < 2:
        return None
    rng = np.random.default_rng(random_state)
    order = list(rng.permutation(sorted(leavable)))
    groups = max(2, min(groups, len(order)))
    y = np.asarray(labels, dtype=object)
    # Large knowledge bases: fit on a stratified share only, as the held-out
    # split does, so these fits cost what that one costs.
    keep = np.ones(len(texts), dtype=bool)
    if train_fraction < 1.0:
        keep = rng.random(len(texts)) < train_fraction
    true_parts, pred_parts, conf_parts = [], [], []
    for k in range(groups):
        left_out = set(order[k::groups])
        out_mask = np.array([label in left_out for label in labels], dtype=bool)
        fit_mask = ~out_mask & keep
        if len(set(y[fit_mask])) < 2:
            continue
        progress(f"leaving intents out {k + 1}/{groups}: {len(left_out)} intents unknown to the model")
        model = IntentClassifier(**params).fit([texts[i] for i in np.flatnonzero(fit_mask)], y[fit_mask])
        idx = np.flatnonzero(out_mask)
        best, features = _scores(model, [texts[i] for i in idx])
        true_parts.append(y[idx])
        pred_parts.append(model.classes_[best])
        conf_parts.append(features)
    if not true_parts:
        return None
    return np.concatenate(true_parts), np.concatenate(pred_parts), np.concatenate(conf_parts)


def train(
    kb: KnowledgeBase,
    *,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    validation_fraction: float = 0.2,
    random_state: int = 0,
    progress: Progress | None = None,
    params: Mapping[str, Any] | None = None,
    min_intent_support: int = MIN_INTENT_SUPPORT,
    unknown_share: float = DEFAULT_UNKNOWN_SHARE,
    extra: tuple[list[str], list[str]] | None = None,
) -> TrainedModel:
    """``unknown_share``: the share of traffic assumed to be on-topic
    questions no intent covers (0 turns their simulation off). ``extra``:
    more (texts, intent ids), e.g. labelled desk traffic, trained on and
    held out like the knowledge base's examples."""
    progress = progress or _noop
    params = dict(params or {})
    if not 0.0 < target_precision <= 1.0:
        raise InvalidInput(f"target precision {target_precision} must be in (0, 1]")
    if not 0.0 < validation_fraction < 1.0:
        raise InvalidInput(f"validation fraction {validation_fraction} must be in (0, 1)")
    if not 0.0 <= unknown_share < 1.0:
        raise InvalidInput(f"unknown share {unknown_share} must be in [0, 1)")
    texts, labels = kb.training_data()
    if extra is not None:
        unknown_ids = sorted(set(extra[1]) - set(kb.intent_ids))
        if unknown_ids:
            raise InvalidInput(f"labelled traffic names intents the knowledge base lacks: {', '.join(unknown_ids)}")
        texts, labels = texts + list(extra[0]), labels + list(extra[1])
    if len(set(labels)) < 2:
        raise InvalidInput("a knowledge base needs at least two intents to train a classifier")
    started = time.perf_counter()
    progress(f"training on {len(texts)} examples, {len(kb.intents)} intents")
    if params.get("static_embeddings", "auto") == "auto":
        # Decided once on the whole knowledge base: the held-out fits see a
        # share of it, and must be the same model as the one shipped.
        params["static_embeddings"] = wants_static_embeddings(texts, embeddings=bool(params.get("embeddings")))
    if params["static_embeddings"]:
        progress("static word-piece embeddings on")
    for warning in kb.warnings:
        progress(f"warning: {warning}")
    args = (kb, texts, labels, target_precision, validation_fraction, random_state, progress, params,
            min_intent_support, unknown_share, started)
    if params.get("embeddings"):
        from .embeddings import memoized

        progress("sentence embeddings on: loading the encoder")
        # Cross-validation folds and the final fit share each text's embedding.
        with memoized(True):
            return _train(*args)
    return _train(*args)


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
    unknown_share: float,
    started: float,
) -> TrainedModel:

    true, pred, features, method = heldout_predictions(
        texts,
        labels,
        validation_fraction=validation_fraction,
        random_state=random_state,
        params=params,
        progress=progress,
    )
    oos = [i.id for i in kb.intents if i.out_of_scope]
    unknown = None
    if unknown_share > 0:
        unknown = unknown_intent_predictions(
            texts, labels, leavable=[i.id for i in kb.intents if not i.out_of_scope],
            random_state=random_state, params=params, progress=progress,
            train_fraction=1.0 - validation_fraction if method == "split" else 1.0,
        )
    raw = HeldOut.join((true, pred, features), unknown)
    weights = raw.weights(unknown_share)
    # Confidence is the chance of being right, fitted on the same traffic the
    # thresholds are chosen for: the unknown questions at their assumed
    # share included.
    calibration = fit_confidence_calibration(raw.conf, raw.pred == raw.true, weights)
    held = HeldOut(raw.true, raw.pred, calibration(raw.conf), raw.unknown)
    conf = held.conf[~held.unknown]
    progress(f"confidence: {calibration.describe()}, fitted on the held-out predictions")
    small = [i.id for i in kb.intents if len(i.examples) < MIN_EXAMPLES]
    needs_human = [i.id for i in kb.intents if i.needs_human]

    def choose(part: HeldOut, weights: np.ndarray) -> Thresholds:
        return select_thresholds(
            part.pred, part.conf, part.true, target_precision=target_precision,
            never_answered=oos, min_support=min_intent_support, weights=weights, global_only=small,
            routing_only=needs_human,
        )[0]

    thresholds, details = select_thresholds(
        held.pred,
        held.conf,
        held.true,
        target_precision=target_precision,
        never_answered=oos,
        min_support=min_intent_support,
        weights=weights,
        global_only=small,
        routing_only=needs_human,
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
    estimate = split_half_estimate(
        held, choose, never_answered=oos + needs_human, out_of_scope=oos,
        unknown_share=unknown_share, seed=random_state,
    )
    for intent in small:
        estimate["per_intent"].setdefault(intent, {})["flag"] = (
            f"only {len(kb.get(intent).examples)} example(s): global threshold, estimate unreliable"
        )

    progress("fitting final model on all examples")
    estimator = IntentClassifier(**params).fit(texts, labels)
    compiled = CompiledClassifier.from_fitted(estimator, calibration)

    known = ~held.unknown
    evaluation = {
        "heldout_method": method,
        "heldout_examples": int(known.sum()),
        "heldout_accuracy": float(np.mean(pred == true)),
        "precision_at_thresholds": estimate["precision"],
        "coverage_at_thresholds": estimate["coverage"],
        "estimate": estimate,
        "confidence": calibration.to_dict(),
        # Over the traffic the confidence is fitted for: unknown questions at
        # their assumed share included.
        "calibration": calibration_report(held.conf, held.pred == held.true, weights=weights),
        "warnings": list(kb.warnings),
        "small_intents": small,
        "threshold_selection": details,
        "curve": precision_coverage_curve(pred, conf, true, out_of_scope=oos),
        "params": IntentClassifier(**params).get_params(),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    progress(f"held-out ({method}): accuracy {evaluation['heldout_accuracy']:.1%}")
    for line in describe(estimate, has_out_of_scope=bool(oos)):
        progress(line)
    return TrainedModel(compiled, thresholds, evaluation, kb.content_hash(), estimator)


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

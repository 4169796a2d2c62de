"""Inference without scikit-learn: the form of a model that is served and saved.

scikit-learn's transform/predict path costs ~1 ms per call in validation and
sparse-matrix bookkeeping, which dominates for one short chat message. Here a
message becomes a handful of dict look-ups and one gather over the rows of
``coef_T`` that the message actually touches. The arithmetic is the same as
TfidfVectorizer(sublinear_tf, l2) + LogisticRegression.predict_proba, so the
probabilities agree to floating-point rounding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .text import Analyzer, normalize


@dataclass(frozen=True)
class FeatureBlock:
    """One TF-IDF vectorizer: its analyzer, vocabulary and idf weights.

    Column ids in ``vocabulary`` are already offset into the stacked feature
    space, so blocks can be looked up independently and concatenated.
    """

    analyzer: Analyzer
    vocabulary: Mapping[str, int]
    idf: np.ndarray
    offset: int
    sublinear_tf: bool

    @property
    def size(self) -> int:
        return int(self.idf.shape[0])


class CompiledClassifier:
    """Pure numpy re-implementation of a fitted IntentClassifier."""

    def __init__(
        self,
        blocks: Sequence[FeatureBlock],
        coef_T: np.ndarray,
        intercept: np.ndarray,
        classes: Sequence[str],
    ) -> None:
        self.blocks = tuple(blocks)
        self.coef_T = np.ascontiguousarray(coef_T, dtype=np.float64)
        self.intercept = np.ascontiguousarray(intercept, dtype=np.float64)
        self.classes_ = np.asarray(list(classes), dtype=object)
        self._validate()

    def _validate(self) -> None:
        n_features = sum(b.size for b in self.blocks)
        n_classes = len(self.classes_)
        if self.coef_T.shape != (n_features, n_classes):
            raise ValueError(
                f"coefficient matrix has shape {self.coef_T.shape}, "
                f"expected ({n_features}, {n_classes})"
            )
        if self.intercept.shape != (n_classes,):
            raise ValueError(f"intercept has shape {self.intercept.shape}, expected ({n_classes},)")
        if n_classes < 2 or len(set(self.classes_)) != n_classes:
            raise ValueError("classes must be at least two distinct labels")
        expected_offset = 0
        for block in self.blocks:
            if block.offset != expected_offset:
                raise ValueError("feature blocks are not contiguous")
            if len(block.vocabulary) != block.size:
                raise ValueError("vocabulary size does not match idf length")
            expected_offset += block.size
        if not (np.all(np.isfinite(self.coef_T)) and np.all(np.isfinite(self.intercept))):
            raise ValueError("model weights contain NaN or infinity")

    @classmethod
    def from_fitted(cls, model) -> "CompiledClassifier":  # model: IntentClassifier
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model, "linear_")
        blocks = []
        offset = 0
        for vec in model.vectorizers_:
            if not isinstance(vec.analyzer, Analyzer) or vec.norm != "l2":
                raise ValueError("only IntentClassifier's own l2-normalised analyzers compile")
            idf = np.asarray(vec.idf_, dtype=np.float64)
            vocab = {term: offset + int(j) for term, j in vec.vocabulary_.items()}
            blocks.append(FeatureBlock(vec.analyzer, vocab, idf, offset, bool(vec.sublinear_tf)))
            offset += idf.shape[0]
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if coef.shape[0] == 1:
            # A binary model has one score s and probability sigmoid(s); a
            # softmax over (0, s) is the same function, so one link serves both.
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([[0.0], intercept])
        return cls(blocks, coef.T, intercept, list(model.classes_))

    @property
    def n_features(self) -> int:
        return int(self.coef_T.shape[0])

    def _features(self, text: str) -> tuple[list[int], list[float]]:
        norm = normalize(text)
        indices: list[int] = []
        values: list[float] = []
        for block in self.blocks:
            vget = block.vocabulary.get
            counts: dict[int, int] = {}
            for term, count in Counter(block.analyzer.analyze_normalized(norm)).items():
                j = vget(term)
                if j is not None:
                    counts[j] = count
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if block.sublinear_tf:
                tf = np.log(tf) + 1.0
            weights = tf * block.idf[idx - block.offset]
            norm_l2 = np.sqrt(weights @ weights)
            if norm_l2 > 0:
                weights /= norm_l2
            indices.extend(idx.tolist())
            values.extend(weights.tolist())
        return indices, values

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for text in texts:
            idx, vals = self._features(text)
            indices.extend(idx)
            data.extend(vals)
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(indptr) - 1, self.n_features),
        )

    def decision_one(self, text: str) -> np.ndarray:
        idx, vals = self._features(text)
        if not idx:
            return self.intercept.copy()
        return np.asarray(vals) @ self.coef_T[idx] + self.intercept

    def predict_proba_one(self, text: str) -> np.ndarray:
        return _softmax_row(self.decision_one(text))

    def predict_proba_many(self, texts: Sequence[str]) -> np.ndarray:
        """One sparse matrix and one matmul for the whole batch."""
        scores = np.asarray(self.transform(texts) @ self.coef_T) + self.intercept
        return _softmax_rows(scores)

    predict_proba = predict_proba_many

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba_many(texts), axis=1)]


def _softmax_row(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    if scores.shape[0] == 0:
        return scores
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)

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
from itertools import repeat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .text import Analyzer, normalize


@dataclass(frozen=True)
class EmbeddingBlock:
    """The optional sentence-embedding block: ``dim`` dense columns after the
    TF-IDF blocks, ``weight * encoder.encode(normalize(text))``.

    ``info`` is what the encoder's ``describe()`` returned at training time
    (model name, weights' sha256, ...); it is saved with the artifact and
    checked against the installed encoder when the artifact is loaded.
    """

    info: Mapping[str, object]
    weight: float

    @property
    def dim(self) -> int:
        return int(self.info["dim"])  # type: ignore[call-overload]

    @property
    def model(self) -> str:
        return str(self.info.get("model"))


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
        embedding: EmbeddingBlock | None = None,
        encoder=None,  # classifier.embeddings.SentenceEncoder; default: the shared one
    ) -> None:
        self.blocks = tuple(blocks)
        self.embedding = embedding
        self._encoder = encoder
        self.coef_T = np.ascontiguousarray(coef_T, dtype=np.float64)
        self.intercept = np.ascontiguousarray(intercept, dtype=np.float64)
        self.classes_ = np.asarray(list(classes), dtype=object)
        self._validate()
        self._idf_all = np.concatenate([b.idf for b in self.blocks])
        self._sublinear_by_block = np.array([b.sublinear_tf for b in self.blocks], dtype=bool)
        self._all_sublinear = bool(self._sublinear_by_block.all())
        self._any_sublinear = bool(self._sublinear_by_block.any())
        self.n_sparse = sum(b.size for b in self.blocks)
        if embedding is not None:
            # Embedding rows pre-multiplied by the block weight: one matmul.
            # float64 like the rest, so probabilities still match the
            # estimator's to ~1e-12 (the embeddings themselves are float32).
            self._coef_emb = np.ascontiguousarray(
                self.coef_T[self.n_sparse:] * float(embedding.weight), dtype=np.float64
            )

    @property
    def encoder(self):
        """The sentence encoder (loaded on first use) for an embedding model."""
        if self.embedding is None:
            return None
        if self._encoder is None:
            from .embeddings import get_encoder

            self._encoder = get_encoder()
        return self._encoder

    def _validate(self) -> None:
        n_features = sum(b.size for b in self.blocks)
        if self.embedding is not None:
            if not (self.embedding.weight > 0 and np.isfinite(self.embedding.weight)):
                raise ValueError("embedding weight must be a positive number")
            n_features += self.embedding.dim
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
        embedding = None
        info = getattr(model, "embedding_info_", None)
        if info is not None:
            embedding = EmbeddingBlock(dict(info), float(model.embedding_weight))
        return cls(blocks, coef.T, intercept, list(model.classes_), embedding)

    @property
    def n_features(self) -> int:
        return int(self.coef_T.shape[0])

    def _counts(
        self, text: str, segment: int, cols: list[int], counts: list[int], segments: list[int]
    ) -> None:
        """Append (column, raw count, segment) for every known n-gram of text.

        A segment is one (message, block) pair: each block is l2-normalised on
        its own, exactly like each TfidfVectorizer in the pipeline.
        """
        norm = normalize(text)
        n_blocks = len(self.blocks)
        for b, block in enumerate(self.blocks):
            counter = Counter(block.analyzer.analyze_normalized(norm))
            # map() keeps the per-n-gram loop in C; unknown n-grams come back
            # as -1 and are dropped in one vectorised step in _weights.
            cols.extend(map(block.vocabulary.get, counter, repeat(-1, len(counter))))
            counts.extend(counter.values())
            segments.extend(repeat(segment * n_blocks + b, len(counter)))

    def _weights(self, cols: list[int], counts: list[int], segments: list[int], n_segments: int):
        # All arithmetic for a whole batch in a few vectorised numpy calls;
        # per-message numpy calls would cost more than the maths itself.
        col = np.fromiter(cols, dtype=np.int64, count=len(cols))
        seg = np.fromiter(segments, dtype=np.int64, count=len(segments))
        tf = np.fromiter(counts, dtype=np.float64, count=len(counts))
        known = col >= 0
        if not known.all():
            col, seg, tf = col[known], seg[known], tf[known]
        if self._all_sublinear:
            tf = np.log(tf) + 1.0
        elif self._any_sublinear:
            sub = self._sublinear_by_block[seg % len(self.blocks)]
            tf = np.where(sub, np.log(tf) + 1.0, tf)
        w = tf * self._idf_all[col]
        norms = np.sqrt(np.bincount(seg, weights=w * w, minlength=n_segments))
        # Every segment present here has at least one nonzero weight (idf >= 1),
        # so no division by zero; absent segments are never indexed.
        w /= norms[seg]
        return col, w, seg

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unweighted embeddings of the normalised texts, (n, dim) float32."""
        return self.encoder.encode([normalize(t) for t in texts])

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The full feature matrix (TF-IDF blocks, then the weighted embedding)."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        sparse = self._transform_sparse(texts)
        if self.embedding is None:
            return sparse
        dense = self._embed(texts).astype(np.float64) * float(self.embedding.weight)
        return sp.hstack([sparse, sp.csr_matrix(dense)], format="csr")

    def _transform_sparse(self, texts: Sequence[str]) -> sp.csr_matrix:
        cols: list[int] = []
        counts: list[int] = []
        segments: list[int] = []
        n_rows = 0
        for row, text in enumerate(texts):
            self._counts(text, row, cols, counts, segments)
            n_rows += 1
        col, w, seg = self._weights(cols, counts, segments, n_rows * len(self.blocks))
        # Entries arrive in row order, so row lengths give the CSR row pointer.
        per_row = np.bincount(seg // len(self.blocks), minlength=n_rows)
        indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64)
        return sp.csr_matrix((w, col, indptr), shape=(n_rows, self.n_sparse))

    def decision_one(self, text: str) -> np.ndarray:
        cols: list[int] = []
        counts: list[int] = []
        segments: list[int] = []
        self._counts(text, 0, cols, counts, segments)
        col, w, _ = self._weights(cols, counts, segments, len(self.blocks))
        scores = self.intercept.copy()
        if col.size:
            # Only the rows of coef_T this message touches are read.
            scores += w @ self.coef_T.take(col, axis=0)
        if self.embedding is not None:
            vec = self.encoder.encode_one(normalize(text)).astype(np.float64)
            scores += vec @ self._coef_emb
        return scores

    def predict_proba_one(self, text: str) -> np.ndarray:
        return _softmax_row(self.decision_one(text))

    def predict_proba_many(self, texts: Sequence[str]) -> np.ndarray:
        """One sparse matrix and one matmul for the whole batch."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        sparse = self._transform_sparse(texts)
        scores = np.asarray(sparse @ self.coef_T[: self.n_sparse]) + self.intercept
        if self.embedding is not None and texts:
            scores += self._embed(texts).astype(np.float64) @ self._coef_emb
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

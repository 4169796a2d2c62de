"""How close a message is to the training examples of the intent it is
predicted as: inputs of the confidence map (calibration.py) besides the
scores.

A question no intent covers still lands on some intent, often with a clear
margin when that intent is the only one it resembles; what gives it away is
that it is farther from every example of the intent than the intent's own
questions are, and that it uses words none of them uses ("my top-up was
reverted" predicted as ``top_up_failed``, whose examples never say
"reverted"). Two measures:

* similarity: the largest cosine between the message's TF-IDF vector (the
  n-gram blocks only, never the embedding block) and one of the intent's
  examples. Examples are stored unit length, grouped by class, so a message
  costs one sparse product with the rows of its predicted intent only;
* seen: the share of the message's word tokens that occur in at least one
  of the intent's examples (0 for a message without word tokens).

What each adds is measured in docs/classifier.md, section 9.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .text import WORD_TOKEN_PATTERN, normalize

# Stored single precision: similarities need no more than 7 digits, and the
# matrix is as large as the model's weights.
DTYPE = np.float32


class Neighbours:
    """Unit-length training examples, class k's in ``rows[k]`` (CSR), and the
    word tokens class k's examples use, ``words[k]``."""

    def __init__(self, rows: list[sp.csr_matrix], n_features: int, words: Sequence[Sequence[str]],
                 token_pattern: str = WORD_TOKEN_PATTERN) -> None:
        if len(words) != len(rows):
            raise ValueError(f"{len(words)} word sets for {len(rows)} classes")
        self.words = [frozenset(w) for w in words]
        self.token_pattern = token_pattern
        self._token_re = re.compile(token_pattern)
        self.n_features = int(n_features)
        self.rows = [sp.csr_matrix(r, dtype=DTYPE) for r in rows]
        for r in self.rows:
            if r.shape[1] != self.n_features:
                raise ValueError(f"example rows have {r.shape[1]} columns, expected {self.n_features}")
            if r.shape[0] == 0:
                raise ValueError("every class needs at least one training example")
            r.sort_indices()

    @classmethod
    def of(cls, texts: Sequence[str], features: sp.spmatrix, class_index: np.ndarray, n_classes: int,
           token_pattern: str = WORD_TOKEN_PATTERN) -> "Neighbours":
        """From training examples, their feature rows and each one's class index."""
        matrix = _unit_rows(sp.csr_matrix(features, dtype=np.float64))
        class_index = np.asarray(class_index)
        token_re = re.compile(token_pattern)
        words: list[set[str]] = [set() for _ in range(n_classes)]
        for text, k in zip(texts, class_index):
            words[int(k)].update(token_re.findall(normalize(text)))
        return cls([matrix[np.flatnonzero(class_index == k)] for k in range(n_classes)], matrix.shape[1],
                   [sorted(w) for w in words], token_pattern)

    def seen(self, texts: Sequence[str], best: np.ndarray) -> np.ndarray:
        """Per message, the share of its word tokens that class ``best[row]``'s
        examples use (0 without word tokens)."""
        return np.array([self.seen_one(text, int(k)) for text, k in zip(texts, best)], dtype=np.float64)

    def seen_one(self, text: str, best: int) -> float:
        tokens = self._token_re.findall(normalize(text))
        if not tokens:
            return 0.0
        words = self.words[best]
        return sum(1 for t in tokens if t in words) / len(tokens)

    def nearest(self, queries: sp.spmatrix, best: np.ndarray) -> np.ndarray:
        """Per query row, the largest cosine similarity to a training example
        of class ``best[row]`` (0 for a query with no known n-gram)."""
        queries = sp.csr_matrix(queries, dtype=np.float64)
        best = np.asarray(best)
        # Row by row with one scratch vector: a product per predicted class
        # of the batch's rows with the class's examples cost three times as
        # much (scipy's per-call overhead, a class or two per row in a batch).
        scratch = np.zeros(self.n_features)
        out = np.zeros(queries.shape[0])
        indptr, indices, data = queries.indptr, queries.indices, queries.data
        for row in range(queries.shape[0]):
            start, end = indptr[row], indptr[row + 1]
            columns = indices[start:end]
            keep = columns < self.n_features  # never the embedding block's columns
            out[row] = self._nearest(columns[keep], data[start:end][keep], int(best[row]), scratch)
        return out

    def nearest_one(self, columns: np.ndarray, weights: np.ndarray, best: int) -> float:
        """``nearest`` for one message given as its nonzero (column, weight)
        pairs, without building a sparse matrix (the single-message path)."""
        return self._nearest(columns, weights, best, np.zeros(self.n_features))

    def _nearest(self, columns: np.ndarray, weights: np.ndarray, best: int, scratch: np.ndarray) -> float:
        """``scratch``: zeros of n_features, left as zeros again."""
        norm = float(np.sqrt(weights @ weights))
        if norm == 0.0:
            return 0.0
        scratch[columns] = weights / norm
        similarity = float((self.rows[best] @ scratch).max())
        scratch[columns] = 0.0
        return similarity

    def to_arrays(self) -> dict[str, np.ndarray]:
        matrix = sp.vstack(self.rows, format="csr")
        counts = np.array([r.shape[0] for r in self.rows], dtype=np.int64)
        return {
            "examples_data": matrix.data.astype(DTYPE),
            "examples_indices": matrix.indices.astype(np.int32),
            "examples_indptr": matrix.indptr.astype(np.int64),
            "examples_per_class": counts,
        }

    def to_document(self) -> dict[str, object]:
        """The JSON part (vocab.json): each class's words, sorted."""
        return {"token_pattern": self.token_pattern, "words": [sorted(w) for w in self.words]}

    @classmethod
    def from_saved(cls, arrays: dict[str, np.ndarray], document: dict[str, object],
                   n_features: int) -> "Neighbours":
        data = np.asarray(arrays["examples_data"], dtype=DTYPE)
        indices = np.asarray(arrays["examples_indices"], dtype=np.int32)
        indptr = np.asarray(arrays["examples_indptr"], dtype=np.int64)
        counts = np.asarray(arrays["examples_per_class"], dtype=np.int64)
        if counts.ndim != 1 or (counts < 1).any() or indptr.size != int(counts.sum()) + 1:
            raise ValueError("examples_per_class does not match the example rows")
        if indices.size and (indices.min() < 0 or indices.max() >= n_features):
            raise ValueError("example columns out of range")
        matrix = sp.csr_matrix((data, indices, indptr), shape=(int(counts.sum()), n_features))
        ends = np.cumsum(counts)
        words = document["words"]
        if not isinstance(words, list) or not all(
                isinstance(w, list) and all(isinstance(t, str) for t in w) for w in words):
            raise ValueError("example words must be lists of strings")
        return cls([matrix[e - c:e] for c, e in zip(counts, ends)], n_features, words,
                   str(document["token_pattern"]))


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0.0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)

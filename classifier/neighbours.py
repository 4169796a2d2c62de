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
  costs one product with the rows of its predicted intent only (numpy on
  the CSR arrays: a served model does not import scipy);
* seen: the share of the message's word tokens that occur in at least one
  of the intent's examples (0 for a message without word tokens).

What each adds is measured in docs/classifier.md, section 9.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from typing import Any

import numpy as np

from .sparse import SparseRows
from .text import WORD_TOKEN_PATTERN, normalize

# Stored single precision: similarities need no more than 7 digits, and the
# matrix is as large as the model's weights.
DTYPE = np.float32


class Neighbours:
    """Unit-length training examples, class k's in ``rows[k]`` (CSR), and the
    word tokens class k's examples use, ``words[k]``."""

    def __init__(self, rows: Sequence[Any], n_features: int, words: Sequence[Sequence[str]],
                 token_pattern: str = WORD_TOKEN_PATTERN) -> None:
        """``rows``: per class, a SparseRows or a scipy sparse matrix."""
        if len(words) != len(rows):
            raise ValueError(f"{len(words)} word sets for {len(rows)} classes")
        self.words = [frozenset(w) for w in words]
        self.token_pattern = token_pattern
        self._token_re = re.compile(token_pattern)
        self.n_features = int(n_features)
        self.rows: list[SparseRows] = []
        for r in map(SparseRows.of, rows):
            if r.n_columns != self.n_features:
                raise ValueError(f"example rows have {r.n_columns} columns, expected {self.n_features}")
            if r.n_rows == 0:
                raise ValueError("every class needs at least one training example")
            self.rows.append(r._replace(indices=r.indices.astype(np.int32, copy=False),
                                        data=r.data.astype(DTYPE, copy=False)))
        # Where each example's entries start, examples without any left out
        # (at similarity 0 they never are the nearest): one reduceat per
        # message sums each example's products.
        self._starts = [r.indptr[:-1][np.diff(r.indptr) > 0] for r in self.rows]

    @classmethod
    def of(cls, texts: Sequence[str], features: Any, class_index: np.ndarray, n_classes: int,
           token_pattern: str = WORD_TOKEN_PATTERN) -> "Neighbours":
        """From training examples, their feature rows (a scipy sparse matrix)
        and each one's class index."""
        matrix = features.tocsr().astype(np.float64)
        class_index = np.asarray(class_index)
        token_re = re.compile(token_pattern)
        words: list[set[str]] = [set() for _ in range(n_classes)]
        for text, k in zip(texts, class_index):
            words[int(k)].update(token_re.findall(normalize(text)))
        return cls([SparseRows.of(matrix[np.flatnonzero(class_index == k)]).unit_rows() for k in range(n_classes)],
                   matrix.shape[1], [sorted(w) for w in words], token_pattern)

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

    def nearest(self, queries: Any, best: np.ndarray) -> np.ndarray:
        """Per query row (SparseRows or a scipy sparse matrix), the largest
        cosine similarity to a training example of class ``best[row]`` (0 for
        a query with no known n-gram)."""
        queries = SparseRows.of(queries)
        best = np.asarray(best)
        # Row by row with one scratch vector: a product per predicted class
        # of the batch's rows cost three times as much (a class or two per
        # row in a batch).
        scratch = np.zeros(self.n_features)
        out = np.zeros(queries.n_rows)
        for row in range(queries.n_rows):
            columns, weights = queries.row(row)
            keep = columns < self.n_features  # never the embedding block's columns
            out[row] = self._nearest(columns[keep], weights[keep], int(best[row]), scratch)
        return out

    def nearest_one(self, columns: np.ndarray, weights: np.ndarray, best: int) -> float:
        """``nearest`` for one message given as its nonzero (column, weight)
        pairs (the single-message path)."""
        return self._nearest(columns, weights, best, np.zeros(self.n_features))

    def _nearest(self, columns: np.ndarray, weights: np.ndarray, best: int, scratch: np.ndarray) -> float:
        """``scratch``: zeros of n_features, left as zeros again."""
        norm = float(np.sqrt(weights @ weights))
        if norm == 0.0:
            return 0.0
        scratch[columns] = weights / norm
        examples, starts = self.rows[best], self._starts[best]
        similarity = np.add.reduceat(scratch.take(examples.indices) * examples.data, starts).max() if starts.size else 0.0
        scratch[columns] = 0.0
        return float(similarity)

    def to_arrays(self) -> dict[str, np.ndarray]:
        counts = np.array([r.n_rows for r in self.rows], dtype=np.int64)
        sizes = np.array([len(r.data) for r in self.rows], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        indptr = np.concatenate([[0]] + [r.indptr[1:] + off for r, off in zip(self.rows, offsets)])
        return {
            "examples_data": np.concatenate([r.data for r in self.rows]).astype(DTYPE),
            "examples_indices": np.concatenate([r.indices for r in self.rows]).astype(np.int32),
            "examples_indptr": indptr.astype(np.int64),
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
        if indptr[0] != 0 or (np.diff(indptr) < 0).any() or indptr[-1] != data.size or indices.size != data.size:
            raise ValueError("example rows are not a CSR matrix")
        matrix = SparseRows(indptr, indices, data, n_features)
        ends = np.cumsum(counts)
        words = document["words"]
        if not isinstance(words, list) or not all(
                isinstance(w, list) and all(isinstance(t, str) for t in w) for w in words):
            raise ValueError("example words must be lists of strings")
        return cls([matrix.rows(int(e - c), int(e)) for c, e in zip(counts, ends)], n_features, words,
                   str(document["token_pattern"]))


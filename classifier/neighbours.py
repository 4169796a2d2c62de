"""How close a message is to the training examples of the intent it is
predicted as: the third input of the confidence map (calibration.py).

A question no intent covers still lands on some intent, often with a clear
margin when its nearest neighbour intent is the only one it resembles; what
gives it away is that it is farther from every example of that intent than
the intent's own questions are. BANKING77 with 20 intents unknown, the best
coverage one threshold reaches at 97 % precision (chosen on test, mean of 5
draws) went from 42 % to 50 % with this similarity as a third input
(docs/classifier.md, section 9).

Similarity is the cosine between TF-IDF vectors (the n-gram blocks only,
never the embedding block): training examples are stored unit length,
grouped by class, so one message costs one sparse product with the rows of
its predicted intent only.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# Stored single precision: similarities need no more than 7 digits, and the
# matrix is as large as the model's weights.
DTYPE = np.float32


class Neighbours:
    """Unit-length training examples, class k's in ``rows[k]`` (CSR)."""

    def __init__(self, rows: list[sp.csr_matrix], n_features: int) -> None:
        self.n_features = int(n_features)
        self.rows = [sp.csr_matrix(r, dtype=DTYPE) for r in rows]
        for r in self.rows:
            if r.shape[1] != self.n_features:
                raise ValueError(f"example rows have {r.shape[1]} columns, expected {self.n_features}")
            if r.shape[0] == 0:
                raise ValueError("every class needs at least one training example")
            r.sort_indices()

    @classmethod
    def of(cls, features: sp.spmatrix, class_index: np.ndarray, n_classes: int) -> "Neighbours":
        """From training examples' feature rows and each one's class index."""
        matrix = _unit_rows(sp.csr_matrix(features, dtype=np.float64))
        class_index = np.asarray(class_index)
        return cls([matrix[np.flatnonzero(class_index == k)] for k in range(n_classes)], matrix.shape[1])

    def nearest(self, queries: sp.spmatrix, best: np.ndarray) -> np.ndarray:
        """Per query row, the largest cosine similarity to a training example
        of class ``best[row]`` (0 for a query with no known n-gram)."""
        queries = _unit_rows(sp.csr_matrix(queries, dtype=np.float64)[:, : self.n_features])
        best = np.asarray(best)
        out = np.zeros(queries.shape[0])
        for k in np.unique(best):
            at = np.flatnonzero(best == k)
            sims = (queries[at] @ self.rows[int(k)].T).toarray()
            out[at] = sims.max(axis=1)
        return out

    def nearest_one(self, columns: np.ndarray, weights: np.ndarray, best: int) -> float:
        """``nearest`` for one message given as its nonzero (column, weight)
        pairs, without building a sparse matrix (the single-message path)."""
        norm = float(np.sqrt(weights @ weights))
        if norm == 0.0:
            return 0.0
        query = np.zeros(self.n_features)
        query[columns] = weights / norm
        return float((self.rows[best] @ query).max())

    def to_arrays(self) -> dict[str, np.ndarray]:
        matrix = sp.vstack(self.rows, format="csr")
        counts = np.array([r.shape[0] for r in self.rows], dtype=np.int64)
        return {
            "examples_data": matrix.data.astype(DTYPE),
            "examples_indices": matrix.indices.astype(np.int32),
            "examples_indptr": matrix.indptr.astype(np.int64),
            "examples_per_class": counts,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> "Neighbours":
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
        return cls([matrix[e - c:e] for c, e in zip(counts, ends)], n_features)


def _unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0.0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ matrix)

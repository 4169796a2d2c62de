"""Rows of a sparse matrix in CSR form, for serving without scipy.

Training builds its features with scikit-learn (scipy matrices); a served
model needs only row-by-row products with dense weights, which numpy does
on the three CSR arrays. Not importing scipy keeps ~22 MiB out of every
server process (docs/performance.md, "Memory").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class SparseRows(NamedTuple):
    indptr: np.ndarray  # row r's entries are [indptr[r], indptr[r + 1])
    indices: np.ndarray  # their columns
    data: np.ndarray  # their values
    n_columns: int

    @classmethod
    def of(cls, matrix: Any) -> SparseRows:
        """From a scipy sparse matrix (or SparseRows, returned as it is)."""
        if isinstance(matrix, SparseRows):
            return matrix
        csr = matrix.tocsr()
        return cls(np.asarray(csr.indptr), np.asarray(csr.indices), np.asarray(csr.data), int(csr.shape[1]))

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row_of_entries(self) -> np.ndarray:
        """The row of each stored entry."""
        return np.repeat(np.arange(self.n_rows, dtype=np.int32), np.diff(self.indptr))

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of row r."""
        start, end = self.indptr[r], self.indptr[r + 1]
        return self.indices[start:end], self.data[start:end]

    def rows(self, start: int, stop: int) -> SparseRows:
        """Rows start..stop-1, as their own matrix."""
        lo, hi = self.indptr[start], self.indptr[stop]
        return SparseRows(self.indptr[start:stop + 1] - lo, self.indices[lo:hi], self.data[lo:hi], self.n_columns)

    def unit_rows(self) -> SparseRows:
        """Each row scaled to unit length (an all-zero row stays zero)."""
        norms = np.sqrt(np.bincount(self.row_of_entries(), weights=self.data * self.data, minlength=self.n_rows))
        norms[norms == 0.0] = 1.0
        return self._replace(data=self.data / np.repeat(norms, np.diff(self.indptr)))

    def to_scipy(self) -> Any:
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, self.n_columns))

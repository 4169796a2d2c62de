"""The trainable intent classifier: TF-IDF word + character n-grams into a
multinomial logistic regression.

Why this shape: word n-grams carry most of the signal for English, while
character n-grams make the model robust to typos and let Chinese work with no
word segmentation. Logistic regression gives probabilities that are good
enough to threshold directly (no separate calibration step to replicate in
the fast path), and its softmax link is trivial to re-implement exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from .text import WORD_TOKEN_PATTERN, Analyzer


class IntentClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator mapping raw texts to intent labels.

    Parameters mirror the measured defaults (see docs/classifier.md); a high
    ``C`` works because the features are l2-normalised and the classes are
    small, so little regularisation is needed to separate them.
    """

    def __init__(
        self,
        *,
        word_ngram_range: tuple[int, int] = (1, 2),
        char_ngram_range: tuple[int, int] = (1, 4),
        char_analyzer: str = "char_wb",
        token_pattern: str = WORD_TOKEN_PATTERN,
        sublinear_tf: bool = True,
        min_df: int = 1,
        max_features: int | None = None,
        C: float = 20.0,
        max_iter: int = 1000,
        tol: float = 1e-4,
    ) -> None:
        self.word_ngram_range = word_ngram_range
        self.char_ngram_range = char_ngram_range
        self.char_analyzer = char_analyzer
        self.token_pattern = token_pattern
        self.sublinear_tf = sublinear_tf
        self.min_df = min_df
        self.max_features = max_features
        self.C = C
        self.max_iter = max_iter
        self.tol = tol

    def _make_vectorizer(self, analyzer: Analyzer) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=analyzer,
            sublinear_tf=self.sublinear_tf,
            min_df=self.min_df,
            max_features=self.max_features,
            norm="l2",
            smooth_idf=True,
            dtype=np.float64,
        )

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "IntentClassifier":
        texts = _as_text_list(texts)
        labels = np.asarray(list(labels))
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if len(np.unique(labels)) < 2:
            raise ValueError("need at least two distinct labels to train a classifier")
        analyzers = (
            Analyzer("word", *self.word_ngram_range, token_pattern=self.token_pattern),
            Analyzer(self.char_analyzer, *self.char_ngram_range),
        )
        self.vectorizers_ = [self._make_vectorizer(a) for a in analyzers]
        matrix = sp.hstack([v.fit_transform(texts) for v in self.vectorizers_], format="csr")
        self.linear_ = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol)
        self.linear_.fit(matrix, labels)
        self.classes_ = self.linear_.classes_
        self.n_features_ = matrix.shape[1]
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        check_is_fitted(self, "linear_")
        texts = _as_text_list(texts)
        return sp.hstack([v.transform(texts) for v in self.vectorizers_], format="csr")

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "linear_")
        return self.linear_.decision_function(self.transform(texts))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "linear_")
        return self.linear_.predict_proba(self.transform(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(texts), axis=1)]


def _as_text_list(texts: Sequence[str]) -> list[str]:
    # A bare string is a sequence too; treating it as a batch of characters
    # would silently classify each letter.
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single str")
    out = list(texts)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"expected str items, got {type(t).__name__}")
    return out

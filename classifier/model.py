"""The trainable intent classifier: TF-IDF word + character n-grams into a
linear model with a softmax output.

Why this shape: word n-grams carry most of the signal for English, while
character n-grams make the model robust to typos and let Chinese work with no
word segmentation. Both linear models on offer end in softmax(X·W + b), which
the compiled fast path (classifier.fast) re-implements exactly:

* ``linear="logistic"``: multinomial logistic regression, probabilities
  straight from the fitted model.
* ``linear="svm"``: LinearSVC (one-vs-rest) whose scores are turned into
  probabilities by temperature scaling: softmax(beta * score), with beta
  fitted on cross-validated scores. Scaling the weights by beta keeps it a
  plain softmax-linear model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .calibration import top_features
from .neighbours import Neighbours
from .static_embeddings import DEFAULT_WEIGHT as STATIC_WEIGHT
from .static_embeddings import wants_static_block
from .text import WORD_TOKEN_PATTERN, Analyzer, normalize

LINEAR_MODELS = ("auto", "logistic", "svm")
# linear="auto" (and min_df=None) decide by training-set size. On the public
# benchmarks (thousands of examples) the SVM is as accurate or better and trains faster; on a small
# knowledge base (tens of examples per intent) its temperature-scaled
# probabilities saturate near 1.0 and stop separating right from wrong, while
# logistic regression stays graded (docs/classifier.md).
AUTO_SVM_MIN_EXAMPLES = 2000
# Regularisation that measured best for each linear model (docs/classifier.md):
# the features are l2-normalised per block, so logistic regression needs
# little regularisation, while the hinge loss is happiest near C=1.
DEFAULT_C = {"logistic": 20.0, "svm": 1.0}
# Scale of the optional sentence-embedding block (unit-norm, 384 columns)
# next to the two l2-normalised TF-IDF blocks; chosen on the validation set
# of BANKING77 (0.5: 92.1%, 1: 92.2%, 1.5: 92.5%, 2: 92.5%, 3: 92.1%; docs/classifier.md).
DEFAULT_EMBEDDING_WEIGHT = 1.5
STATIC_EMBEDDINGS = ("auto", True, False)


def wants_static_embeddings(texts: Sequence[str], *, embeddings: bool = False) -> bool:
    """static_embeddings="auto": on for a large training set (where it was
    measured: +1 point on BANKING77 and CLINC150, docs/classifier.md §9)
    whose word pieces the table's vocabulary mostly knows (not Chinese),
    unless the MiniLM sentence embeddings take the dense block's place."""
    return not embeddings and len(texts) >= AUTO_SVM_MIN_EXAMPLES and wants_static_block(texts)


class IntentClassifier(ClassifierMixin, BaseEstimator):
    """scikit-learn estimator mapping raw texts to intent labels."""

    def __init__(
        self,
        *,
        linear: str = "auto",
        word_ngram_range: tuple[int, int] = (1, 2),
        char_ngram_range: tuple[int, int] = (1, 4),
        char_analyzer: str = "char_wb",
        token_pattern: str = WORD_TOKEN_PATTERN,
        sublinear_tf: bool = True,
        min_df: int | None = None,
        max_features: int | None = None,
        C: float | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
        calibration_folds: int = 3,
        random_state: int = 0,
        embeddings: bool = False,
        embedding_weight: float = DEFAULT_EMBEDDING_WEIGHT,
        static_embeddings: str | bool = "auto",
        static_weight: float = STATIC_WEIGHT,
    ) -> None:
        self.linear = linear
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
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.embeddings = embeddings
        self.embedding_weight = embedding_weight
        self.static_embeddings = static_embeddings
        self.static_weight = static_weight

    def _make_vectorizer(self, analyzer: Analyzer, min_df: int = 1) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=analyzer,
            sublinear_tf=self.sublinear_tf,
            min_df=min_df,
            max_features=self.max_features,
            norm="l2",
            smooth_idf=True,
            dtype=np.float64,
        )

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> "IntentClassifier":
        if self.linear not in LINEAR_MODELS:
            raise ValueError(f"linear must be one of {LINEAR_MODELS}, got {self.linear!r}")
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
        large = len(texts) >= AUTO_SVM_MIN_EXAMPLES
        # n-grams seen in one example only: on a large training set they are
        # mostly noise (dropping them halves CLINC150's vocabulary, and the
        # memory each prediction touches, at equal accuracy); in a small
        # knowledge base one example may be all there is of a key word.
        min_df = self.min_df if self.min_df is not None else (2 if large else 1)
        self.vectorizers_ = [self._make_vectorizer(a, min_df) for a in analyzers]
        parts = [v.fit_transform(texts) for v in self.vectorizers_]
        sparse = sp.hstack(parts, format="csr")
        # One dense block at most: the optional MiniLM sentence embeddings,
        # or else (by default on large knowledge bases its vocabulary covers)
        # the static word-piece embeddings distilled from it.
        static = self.static_embeddings
        if static not in STATIC_EMBEDDINGS:
            raise ValueError(f"static_embeddings must be one of {STATIC_EMBEDDINGS}, got {static!r}")
        if static == "auto":
            static = wants_static_embeddings(texts, embeddings=self.embeddings)
        if static and self.embeddings:
            raise ValueError("static_embeddings and embeddings are exclusive: one dense block at most")
        if self.embeddings:
            if not self.embedding_weight > 0:
                raise ValueError(f"embedding_weight must be > 0, got {self.embedding_weight!r}")
            from .embeddings import get_encoder

            self.embedding_info_ = get_encoder().describe()
            self.embedding_weight_ = float(self.embedding_weight)
        elif static:
            if not self.static_weight > 0:
                raise ValueError(f"static_weight must be > 0, got {self.static_weight!r}")
            from .static_embeddings import get_static_encoder

            self.embedding_info_ = get_static_encoder().describe()
            self.embedding_weight_ = float(self.static_weight)
        else:
            self.embedding_info_ = None
            self.embedding_weight_ = None
        if self.embedding_info_ is not None:
            parts.append(self._embedding_block(texts))
        matrix = sp.hstack(parts, format="csr")
        linear = self.linear
        if linear == "auto":
            linear = "svm" if large else "logistic"
        self.linear_kind_ = linear
        C = self.C if self.C is not None else DEFAULT_C[linear]
        # One BLAS thread: the solvers' dense products are small, and
        # OpenBLAS's threads spin between them. On the 2-core test machine,
        # busy with other work, training the demo knowledge base took 24 s
        # with them and 4 s without (2026-12-05), and the spinning took the
        # core a serving process next to it needed.
        with threadpool_limits(limits=1, user_api="blas"):
            if linear == "logistic":
                self.linear_ = LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol)
                self.linear_.fit(matrix, labels)
                self.temperature_beta_ = 1.0
                self.coef_ = self.linear_.coef_
                self.intercept_ = self.linear_.intercept_
            else:
                self.linear_, self.temperature_beta_ = self._fit_svm(matrix, labels, C)
                self.coef_ = self.linear_.coef_ * self.temperature_beta_
                self.intercept_ = self.linear_.intercept_ * self.temperature_beta_
        self.classes_ = self.linear_.classes_
        self.n_features_ = matrix.shape[1]
        self.neighbours_ = Neighbours.of(texts, sparse, np.searchsorted(self.classes_, labels),
                                         len(self.classes_), self.token_pattern)
        return self

    def _fit_svm(self, matrix: sp.csr_matrix, labels: np.ndarray, C: float):
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.svm import LinearSVC

        def make() -> LinearSVC:
            # Seeded: unseeded, liblinear's coordinate order comes from numpy's
            # global random state, so the same fit differed in the 7th digit
            # from run to run, and with the process it ran in.
            return LinearSVC(C=C, tol=self.tol, max_iter=self.max_iter, random_state=self.random_state)

        _, counts = np.unique(labels, return_counts=True)
        folds = min(self.calibration_folds, int(counts.min()))
        beta = 1.0
        if folds >= 2:
            # Held-out scores: on its own training data the SVM's margins are
            # optimistic, and a temperature fitted on them would be too confident.
            scores = cross_val_predict(
                make(),
                matrix,
                labels,
                cv=StratifiedKFold(folds, shuffle=True, random_state=self.random_state),
                method="decision_function",
            )
            beta = _fit_temperature(scores, labels)
        return make().fit(matrix, labels), beta

    def _embedding_block(self, texts: list[str]) -> sp.csr_matrix:
        from .static_embeddings import dense_encoder

        # The encoder sees the same normalised text as the n-gram analyzers
        # (NFKC folds full-width letters the WordPiece vocabulary lacks).
        encoder = dense_encoder(self.embedding_info_)
        dense = encoder.encode([normalize(t) for t in texts]).astype(np.float64)
        return sp.csr_matrix(dense * self.embedding_weight_)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        check_is_fitted(self, "linear_")
        texts = _as_text_list(texts)
        parts = [v.transform(texts) for v in self.vectorizers_]
        if getattr(self, "embedding_info_", None) is not None:
            parts.append(self._embedding_block(texts))
        return sp.hstack(parts, format="csr")

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "linear_")
        return self._decision(self.transform(texts))

    def _decision(self, matrix: sp.csr_matrix) -> np.ndarray:
        scores = matrix @ self.coef_.T + self.intercept_
        return np.asarray(scores).ravel() if self.coef_.shape[0] == 1 else np.asarray(scores)

    def confidence_features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(index of the top class, rows of (margin, log p, similarity, seen)):
        what the confidence map (calibration.py) reads."""
        texts = _as_text_list(texts)
        matrix = self.transform(texts)
        scores = self._decision(matrix)
        if scores.ndim == 1:
            # A binary model's one score s stands for the logits (0, s).
            scores = np.column_stack([np.zeros_like(scores), scores])
        best, features = top_features(scores)
        similarity = self.neighbours_.nearest(matrix, best)
        return best, np.column_stack([features, similarity, self.neighbours_.seen(texts, best)])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "linear_")
        if self.linear_kind_ == "logistic":
            return self.linear_.predict_proba(self.transform(texts))
        return _softmax_link(self.decision_function(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(texts), axis=1)]


def _softmax_link(scores: np.ndarray) -> np.ndarray:
    from scipy.special import softmax

    if scores.ndim == 1:
        # Binary models have one score s; softmax over (0, s) is sigmoid(s).
        scores = np.column_stack([np.zeros_like(scores), scores])
    return softmax(scores, axis=1)


def _fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """Inverse temperature beta minimising the log loss of softmax(beta * s)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    classes = np.unique(labels)
    if scores.ndim == 1:
        scores = np.column_stack([np.zeros_like(scores), scores])
    idx = np.searchsorted(classes, labels)
    rows = np.arange(len(idx))

    def loss(log_beta: float) -> float:
        return float(-log_softmax(np.exp(log_beta) * scores, axis=1)[rows, idx].mean())

    result = minimize_scalar(loss, bounds=(-5.0, 5.0), method="bounded")
    return float(np.exp(result.x))


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

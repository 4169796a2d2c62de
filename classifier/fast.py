"""Inference without scikit-learn: the form of a model that is served and saved.

scikit-learn's transform/predict path costs ~1 ms per call in validation and
sparse-matrix bookkeeping, which dominates for one short chat message. Here a
message becomes one dict look-up per word (the word's character n-grams are
cached), its word n-grams, and a few numpy calls shared by the whole batch.
The arithmetic is the same as
TfidfVectorizer(sublinear_tf, l2) + LogisticRegression.predict_proba, so the
probabilities agree to floating-point rounding.
"""

from __future__ import annotations

import math
from itertools import chain, repeat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .calibration import ConfidenceCalibration, top_features
from .neighbours import Neighbours
from .sparse import SparseRows
from .static_embeddings import MODEL_NAME as STATIC_MODEL_NAME
from .text import Analyzer, char_wb_word_ngrams, char_wb_words, normalize


# Distinct words whose char_wb columns are kept between calls (_WordCache):
# customer messages are unique but reuse a small vocabulary (all of CLINC150
# has 8,376 distinct words, BANKING77 4,584), so 20,000 holds a domain's
# vocabulary with room for the unique tokens (order numbers, e-mail
# addresses, unsegmented Chinese sentences) that accumulate until the cache
# is emptied. An entry is ~0.3 KiB measured on CLINC150 and under 1 KiB for
# the longest cached word, so the cache stays under ~6 MiB (20 MiB at worst)
# per loaded model.
WORD_CACHE_SIZE = 20_000
# Longer "words" (URLs, pasted junk, whole Chinese sentences) seldom recur and
# would make entries large, so they are analysed every time instead.
MAX_CACHED_WORD_CHARS = 32
# Distinct windows of max_n characters kept per char_wb block (_WindowColumns):
# far fewer than words (digits and syllables recur); an entry is ~0.2 KiB, so
# ~4 MiB at the cap.
WINDOW_CACHE_SIZE = 20_000


@dataclass(frozen=True)
class EmbeddingBlock:
    """The dense block: ``dim`` columns after the TF-IDF blocks,
    ``weight * encoder.encode(normalize(text))``, from the static word-piece
    table (classifier.static_embeddings) or the optional MiniLM encoder.

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

    @property
    def static(self) -> bool:
        """The static table shipped with tierdesk, not the optional extra."""
        return self.model == STATIC_MODEL_NAME


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
        calibration: ConfidenceCalibration | None = None,
        neighbours: Neighbours | None = None,
    ) -> None:
        self.blocks = tuple(blocks)
        # How confidence is read (top_one/top_many): None is the softmax
        # probability of the top class, as a bare fitted estimator has it.
        # The calibration also reads how close the message is to the
        # predicted intent's training examples, so it needs them.
        self.calibration = calibration
        self.neighbours = neighbours
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
        self._block_ends = np.cumsum([b.size for b in self.blocks])
        self._word_blocks = tuple(b for b in self.blocks if b.analyzer.kind == "char_wb")
        self._text_blocks = tuple(b for b in self.blocks if b.analyzer.kind != "char_wb")
        self._word_cache = _WordCache(self._word_blocks)
        if embedding is not None:
            # Embedding rows pre-multiplied by the block weight: one matmul.
            # float64 like the rest, so probabilities still match the
            # estimator's to ~1e-12 (the embeddings themselves are float32).
            self._coef_emb = np.ascontiguousarray(
                self.coef_T[self.n_sparse:] * float(embedding.weight), dtype=np.float64
            )

    @property
    def encoder(self):
        """The dense block's encoder (loaded on first use): the static
        word-piece table, or the optional MiniLM sentence encoder."""
        if self.embedding is None:
            return None
        if self._encoder is None:
            from .static_embeddings import dense_encoder

            self._encoder = dense_encoder(self.embedding.info)
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
        if self.calibration is not None:
            if self.neighbours is None:
                raise ValueError("a calibrated model needs its training examples (neighbours)")
            n_sparse = sum(b.size for b in self.blocks)
            if len(self.neighbours.rows) != n_classes or self.neighbours.n_features != n_sparse:
                raise ValueError("training examples do not match the classes and feature blocks")

    @classmethod
    def from_fitted(
        cls, model, calibration: ConfidenceCalibration | None = None
    ) -> "CompiledClassifier":  # model: IntentClassifier
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
            embedding = EmbeddingBlock(dict(info), float(model.embedding_weight_))
        neighbours = model.neighbours_ if calibration is not None else None
        return cls(blocks, coef.T, intercept, list(model.classes_), embedding, calibration=calibration,
                   neighbours=neighbours)

    @property
    def n_features(self) -> int:
        return int(self.coef_T.shape[0])

    def _occurrences(self, texts: Sequence[str]) -> np.ndarray:
        """``row * n_sparse + column`` of every known n-gram occurrence, then
        one sentinel key greater than all of them.

        char_wb n-grams never cross a word boundary, so a text's are the sum
        of its words' and come from the word cache; other analyzers (word
        n-grams span words) run on the whole text.
        """
        word_columns = self._word_cache.__getitem__
        # Per-word arrays and per-text lists, joined by one concatenate:
        # numpy calls per message would cost more than the arithmetic.
        parts: list[np.ndarray | list[int]] = []
        part_rows: list[int] = []
        for row, text in enumerate(texts):
            norm = normalize(text)
            if self._word_blocks:
                words = char_wb_words(norm)
                parts += map(word_columns, words)
                part_rows += repeat(row, len(words))
            for block in self._text_blocks:
                grams = block.analyzer.analyze_normalized(norm)
                ids = [c for c in map(block.vocabulary.get, grams) if c is not None]
                if ids:  # numpy would read an empty list as float64
                    parts.append(ids)
                    part_rows.append(row)
        sentinel = len(texts) * self.n_sparse
        parts.append([sentinel])
        keys = np.concatenate(parts, dtype=np.int64)
        sizes = np.fromiter(map(len, parts[:-1]), dtype=np.int64, count=len(part_rows))
        keys[:-1] += np.repeat(np.array(part_rows, dtype=np.int64) * self.n_sparse, sizes)
        return keys

    def _weights(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, tf-idf weight) of the batch's nonzero features, in
        CSR order (by row, then column)."""
        keys, counts = _runs(self._occurrences(texts))
        row, col = np.divmod(keys, self.n_sparse)
        block = np.searchsorted(self._block_ends, col, side="right")
        w = self._tf(counts, block) * self._idf_all.take(col)
        # A segment is one (message, block) pair: each block is l2-normalised
        # on its own, exactly like each TfidfVectorizer in the pipeline.
        seg = row * len(self.blocks) + block
        norms = np.sqrt(np.bincount(seg, weights=w * w, minlength=len(texts) * len(self.blocks)))
        # Every segment present here has at least one nonzero weight (idf >= 1),
        # so no division by zero; absent segments are never indexed.
        w /= norms.take(seg)
        return row, col, w

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unweighted embeddings of the normalised texts, (n, dim) float32."""
        return self.encoder.encode([normalize(t) for t in texts])

    def transform(self, texts: Sequence[str]):  # -> scipy.sparse.csr_matrix
        """The full feature matrix (TF-IDF blocks, then the weighted
        embedding), as scikit-learn's pipeline makes it (evaluation and
        tests; serving never builds it, nor imports scipy)."""
        import scipy.sparse as sp

        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        sparse = self._transform_sparse(texts).to_scipy()
        if self.embedding is None:
            return sparse
        dense = self._embed(texts).astype(np.float64) * float(self.embedding.weight)
        return sp.hstack([sparse, sp.csr_matrix(dense)], format="csr")

    def _transform_sparse(self, texts: Sequence[str]) -> SparseRows:
        row, col, w = self._weights(texts)
        indptr = np.searchsorted(row, np.arange(len(texts) + 1))
        return SparseRows(indptr, col.astype(np.int32), w, self.n_sparse)

    def decision_one(self, text: str) -> np.ndarray:
        _, col, w = self._weights((text,))
        return self._decision_one(text, col, w)

    def _decision_one(self, text: str, col: np.ndarray, w: np.ndarray) -> np.ndarray:
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

    def decision_many(self, texts: Sequence[str]) -> np.ndarray:
        """The batch's features in one pass, then each message's scores."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        return self._decision_many(texts, self._transform_sparse(texts))

    def _decision_many(self, texts: list[str], sparse: SparseRows) -> np.ndarray:
        scores = np.tile(self.intercept, (len(texts), 1))
        for r in range(len(texts)):
            col, w = sparse.row(r)
            if col.size:
                # Only the rows of coef_T this message touches are read.
                scores[r] += w @ self.coef_T.take(col, axis=0)
        if self.embedding is not None and texts:
            scores += self._embed(texts).astype(np.float64) @ self._coef_emb
        return scores

    def predict_proba_many(self, texts: Sequence[str]) -> np.ndarray:
        return _softmax_rows(self.decision_many(texts))

    def _tf(self, counts: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Term frequencies of the runs, sublinear (1 + log) in the blocks
        fitted so."""
        if self._all_sublinear:
            tf = np.log(counts)
            tf += 1.0
            return tf
        if self._any_sublinear:
            return np.where(self._sublinear_by_block[block], np.log(counts) + 1.0, counts)
        return counts.astype(np.float64)

    def _weights_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """``_weights`` of one message: (column, tf-idf weight), by column.
        The same arithmetic in the same order, without the batch's row
        bookkeeping: at a quiet hour most messages are scored alone, and
        each numpy call costs about as much as the arithmetic of a
        message's ~90 features."""
        norm = normalize(text)
        parts: list[np.ndarray | list[int]] = []
        if self._word_blocks:
            parts += map(self._word_cache.__getitem__, char_wb_words(norm))
        for text_block in self._text_blocks:
            grams = text_block.analyzer.analyze_normalized(norm)
            ids = [c for c in map(text_block.vocabulary.get, grams) if c is not None]
            if ids:
                parts.append(ids)
        parts.append([self.n_sparse])  # the sentinel, greater than every column
        col, counts = _runs(np.concatenate(parts, dtype=np.int64))
        block = np.searchsorted(self._block_ends, col, side="right")
        w = self._tf(counts, block) * self._idf_all.take(col)
        # Each block l2-normalised on its own, as _weights does.
        w /= np.sqrt(np.bincount(block, weights=w * w, minlength=len(self.blocks))).take(block)
        return col, w

    def top_one(self, text: str) -> tuple[int, float]:
        """(index of the top class, confidence) for one message: top_many's
        figures, computed on Python floats where numpy's cost per call
        would outweigh the arithmetic of one row."""
        col, w = self._weights_one(text)
        scores = self._decision_one(text, col, w)
        if self.calibration is None:
            best, confidence = _softmax_top(scores[None, :])
            return int(best[0]), float(confidence[0])
        k, margin, log_prob = _top_features_one(scores)
        calibration = self.calibration
        # A weight of 0 (the fit's bound) takes nothing from its input:
        # the nearest example is then not looked for.
        similarity = self.neighbours.nearest_one(col, w, k) if calibration.similarity_weight else 0.0
        seen = self.neighbours.seen_one(text, k) if calibration.seen_weight else 0.0
        return k, calibration.one(margin, log_prob, similarity, seen)

    def top_many(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(index of the top class, confidence) per message."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        if not texts:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        sparse = self._transform_sparse(texts)
        scores = self._decision_many(texts, sparse)
        if self.calibration is None:
            return _softmax_top(scores)
        best, features = top_features(scores)
        calibration = self.calibration
        # As in top_one: an input whose weight is 0 is not computed.
        similarity = (self.neighbours.nearest(sparse, best) if calibration.similarity_weight
                      else np.zeros(len(texts)))
        seen = self.neighbours.seen(texts, best) if calibration.seen_weight else np.zeros(len(texts))
        return best, calibration(np.column_stack([features, similarity, seen]))

    predict_proba = predict_proba_many

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba_many(texts), axis=1)]


class _WordCache(dict):
    """word -> columns of its char_wb n-grams that are in the vocabulary,
    repeated as often as they occur; computed on the first look-up, so a hit
    is a plain dict look-up that map() can drive from C."""

    def __init__(self, blocks: Sequence[FeatureBlock]) -> None:
        super().__init__()
        self._windows = tuple(_WindowColumns(b) for b in blocks)

    def __missing__(self, word: str) -> np.ndarray:
        cols: list[int] = []
        for windows in self._windows:
            cols += windows.of_word(word)
        # int32 halves the cache; column ids fit (coef_T would be > 32 GiB otherwise).
        ids = np.array(cols, dtype=np.int32)
        ids.flags.writeable = False
        if len(word) <= MAX_CACHED_WORD_CHARS:
            # Emptying the whole cache, rather than LRU bookkeeping on every
            # hit, keeps hits free and needs no lock when shadow evaluation
            # predicts from another thread: clear() and item assignment are
            # atomic, entries are immutable, and concurrent misses overshoot
            # the cap by at most one entry per thread.
            if len(self) >= WORD_CACHE_SIZE:
                self.clear()
            self[word] = ids
        return ids


class _WindowColumns(dict):
    """A block's char_wb n-grams of a word, taken by window: the n-grams that
    start at one position of the padded word are the prefixes of the
    ``max_n`` characters from there, so a word is its windows' columns.

    Most messages carry a word never seen before (an order number, a
    reference, a typo), and listing its ~60 n-grams one slice at a time was
    most of the classifier's CPU under load; its windows, though, recur
    (digits, common syllables), and a window is one look-up. Entries are
    tuples of ints, which the garbage collector stops tracking.
    """

    def __init__(self, block: FeatureBlock) -> None:
        super().__init__()
        self.vocabulary = block.vocabulary
        self.min_n = block.analyzer.min_n
        self.max_n = block.analyzer.max_n

    def of_word(self, word: str) -> list[int]:
        padded = f" {word} "
        if len(padded) < self.min_n:
            # char_wb's own rule for a word shorter than every n.
            return [c for c in map(self.vocabulary.get, char_wb_word_ngrams(word, self.min_n, self.max_n))
                    if c is not None]
        width = self.max_n
        windows = [padded[i : i + width] for i in range(len(padded) - self.min_n + 1)]
        return list(chain.from_iterable(map(self.__getitem__, windows)))

    def __missing__(self, window: str) -> tuple[int, ...]:
        get = self.vocabulary.get
        cols = tuple(c for c in (get(window[:n]) for n in range(self.min_n, len(window) + 1)) if c is not None)
        if len(self) >= WINDOW_CACHE_SIZE:
            self.clear()  # as the word cache: no bookkeeping on hits
        self[window] = cols
        return cols


def _runs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys, in order, and how often each occurs. ``keys`` ends
    with a sentinel greater than every other key, so every run ends where
    the key changes; it is sorted in place."""
    # Sorting makes the repeats of one key adjacent (for the batch's
    # (row, column) keys: in CSR order).
    keys.sort()
    ends = np.flatnonzero(keys[1:] != keys[:-1])
    # Run lengths: each end minus the previous one (the first run starts
    # at 0); numpy buffers the overlapping in-place operands.
    counts = ends + 1
    counts[1:] -= counts[:-1]
    return keys[ends], counts


def _top_features_one(scores: np.ndarray) -> tuple[int, float, float]:
    """top_features of one row of logits: (index of the top class, margin,
    log p)."""
    values = scores.tolist()
    top = max(values)
    k = values.index(top)  # the first of equal scores, as argmax
    values[k] = -math.inf
    second = max(values)
    return k, top - second, -math.log(float(np.exp(scores - top).sum()))


def _softmax_top(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = _softmax_rows(scores)
    best = probs.argmax(axis=1)
    return best, probs[np.arange(len(best)), best]


def _softmax_row(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _softmax_rows(scores: np.ndarray) -> np.ndarray:
    if scores.shape[0] == 0:
        return scores
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)

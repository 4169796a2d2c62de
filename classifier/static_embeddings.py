"""Static word-piece embeddings distilled from all-MiniLM-L6-v2: a dense
block the default model appends to its TF-IDF blocks, with no optional
package needed to serve it (docs/classifier.md §9).

The table (classifier/data/static_minilm_256.npy, float16, 30,522 x 256):
each WordPiece vocabulary token alone ("[CLS] token [SEP]") went once
through classifier.embeddings' encoder, the 384-dimensional outputs were
centred and reduced to 256 by PCA, and each row scaled by a Zipf/SIF weight
taking its id as a frequency rank (a / (a + p), p proportional to
1 / (id + 2), a = 1e-4). A message's vector is the unit-length mean of its
word pieces' rows, [UNK] and the special tokens left out (all zeros when
none is left). Rebuilt, with the embeddings extra, by

    .venv/bin/python -m classifier.static_embeddings build

which rewrites the table and the vocabulary and prints the sha256 to record
in TABLE_SHA256; a model records the sha256 it was trained with and refuses
to load against another table.

The table is memory-mapped: processes share its pages, and each touches only
the rows of the word pieces it has seen.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .wordpiece import SPECIAL_TOKENS, VOCAB_FILE, WordPiece, load_vocab

MODEL_NAME = "static-all-MiniLM-L6-v2-256"
TABLE_FILE = Path(__file__).with_name("data") / "static_minilm_256.npy"
TABLE_SHA256 = "a5f84c70ee11e5ef4318f2422cf9467f37ac6cdc95d22896aa43b2d13eeac351"
DIM = 256
SIF_A = 1e-4
# Scale of the block next to the two l2-normalised TF-IDF blocks; chosen on
# BANKING77's validation split and 5-fold cross-validation (docs/classifier.md §9).
DEFAULT_WEIGHT = 1.5
# The block is left out when more than this share of a knowledge base's word
# pieces are [UNK]: SMP2017's (Chinese) are 69 % [UNK] and lost 0.1-0.9
# validation points with it; English datasets are under 1 %.
MAX_UNKNOWN_SHARE = 0.2


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StaticEncoder:
    """Texts (already normalised by classifier.text.normalize) to unit-length
    (n, 256) float32 vectors."""

    model_name = MODEL_NAME

    def __init__(self, table: np.ndarray, vocab: dict[str, int], fingerprint: str) -> None:
        if table.ndim != 2 or table.shape[0] != len(vocab):
            raise ValueError(f"table of shape {table.shape} does not match a vocabulary of {len(vocab)}")
        self.table = table
        # The same mapped pages without np.memmap's per-slice bookkeeping.
        self._rows = table.view(np.ndarray)
        self.dim = int(table.shape[1])
        self.fingerprint = fingerprint
        self.tokenizer = WordPiece(vocab)
        self._skip = frozenset(vocab[t] for t in SPECIAL_TOKENS if t in vocab)

    @classmethod
    def load(cls, table_path: Path = TABLE_FILE, vocab_path: Path = VOCAB_FILE) -> "StaticEncoder":
        return cls(np.load(table_path, mmap_mode="r"), load_vocab(vocab_path), file_sha256(table_path))

    def describe(self) -> dict[str, object]:
        return {"model": MODEL_NAME, "dim": self.dim, "table_sha256": self.fingerprint}

    def ids(self, text: str) -> list[int]:
        skip = self._skip
        return [i for i in self.tokenizer.encode(text) if i not in skip]

    def unknown_share(self, texts: Sequence[str]) -> float:
        """Share of the texts' word pieces that are [UNK]."""
        unk, total = self.tokenizer.unk, 0
        unknown = 0
        for text in texts:
            ids = self.tokenizer.encode(text)
            total += len(ids)
            unknown += ids.count(unk)
        return unknown / total if total else 0.0

    def encode_one(self, text: str) -> np.ndarray:
        ids = self.ids(text)
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        # Summed in float64 from the float16 rows: the same numbers whichever
        # path (batch or one message) computes them.
        v = np.add.reduce(self._rows.take(ids, axis=0), axis=0, dtype=np.float64)
        v /= max(float(np.sqrt(v @ v)), 1e-12)
        return v.astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            out[r] = self.encode_one(text)
        return out


_shared: StaticEncoder | None = None
_lock = threading.Lock()


def get_static_encoder() -> StaticEncoder:
    """The process's one encoder over the shipped table, loaded on first use."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = StaticEncoder.load()
        return _shared


def wants_static_block(texts: Sequence[str]) -> bool:
    """Whether the table's vocabulary covers these (raw) training texts."""
    from .text import normalize

    share = get_static_encoder().unknown_share([normalize(t) for t in texts])
    return share <= MAX_UNKNOWN_SHARE


def dense_encoder(info: Mapping[str, object]):
    """The encoder a model's dense block ``info`` (its ``describe()``) names:
    this module's, or the optional MiniLM sentence encoder."""
    if info.get("model") == MODEL_NAME:
        return get_static_encoder()
    from .embeddings import get_encoder

    return get_encoder()


def build(table_path: Path = TABLE_FILE, vocab_path: Path = VOCAB_FILE, batch: int = 512) -> str:
    """Distil the table from the installed MiniLM (needs the embeddings
    extra); returns the new table's sha256."""
    from threadpoolctl import threadpool_limits

    from .embeddings import SentenceEncoder

    enc = SentenceEncoder.load()
    vocab = enc.tokenizer.get_vocab()
    size = len(vocab)
    if sorted(vocab.values()) != list(range(size)):
        raise ValueError("vocabulary ids are not 0..n-1")
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    raw = np.zeros((size, enc.dim), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        for lo in range(0, size, batch):
            rows = [[cls_id, i, sep_id] for i in range(lo, min(lo + batch, size))]
            raw[lo:lo + len(rows)] = enc._forward(rows)
    centred = raw.astype(np.float64)
    centred -= centred.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    # SVD leaves each axis's sign arbitrary; fixing it makes rebuilds comparable.
    vt[:DIM] *= np.where(vt[:DIM].max(axis=1) >= -vt[:DIM].min(axis=1), 1.0, -1.0)[:, None]
    reduced = centred @ vt[:DIM].T
    inv_rank = 1.0 / np.arange(2, size + 2)
    p = inv_rank / inv_rank.sum()
    reduced *= (SIF_A / (SIF_A + p))[:, None]
    table_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(table_path, reduced.astype(np.float16))
    by_id = sorted(vocab, key=vocab.__getitem__)
    vocab_path.write_text("".join(t + "\n" for t in by_id), encoding="utf-8")
    return file_sha256(table_path)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Build the static embedding table from all-MiniLM-L6-v2.")
    p.add_argument("command", choices=["build"])
    p.parse_args(argv)
    digest = build()
    print(f"{TABLE_FILE}: sha256 {digest} (record it in classifier/static_embeddings.py TABLE_SHA256)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

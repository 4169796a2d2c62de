"""Probe: a static embedding block distilled from MiniLM (the Model2Vec idea)
appended to the TF-IDF blocks. Research only; the product does not use it.

The table: every WordPiece vocabulary token alone ("[CLS] token [SEP]") goes
once through classifier.embeddings' all-MiniLM-L6-v2 encoder (mean pooling,
unit norm), the 30,522 x 384 outputs are reduced by PCA, and each row is
scaled by a Zipf/SIF weight from its vocabulary id taken as a frequency rank
(w = a / (a + p), p proportional to 1 / (id + 2), a = 1e-4; Model2Vec's
recipe). A message's vector is the unit-norm mean of its word pieces' rows
([UNK] and the special tokens left out), appended with a weight to the two
l2-normalised TF-IDF blocks of IntentClassifier, LinearSVC on top (C = 1,
the product's settings for large knowledge bases).

Needs the embeddings extra (make embeddings). Commands (docs/classifier.md
§9, BANKING77 accuracy):

    P=bench/static_embeddings_probe.py
    .venv/bin/python $P build /tmp/static_table.npz
    .venv/bin/python $P sweep /tmp/static_table.npz --dims 256 128 --weights 0.5 1 1.5 2
    .venv/bin/python $P cv /tmp/static_table.npz --datasets banking77 --dims 256 --weights 1 1.5 2
    .venv/bin/python $P test /tmp/static_table.npz --dims 256 --weights 1.5
    .venv/bin/python $P cost /tmp/static_table.npz --dims 256

``sweep`` trains on each dataset's training split (BANKING77's: train.csv
less the validation split) and reports in-scope accuracy on its validation
split, next to the baseline without the block; ``cv`` is 5-fold
cross-validation over BANKING77's train.csv (stratified, seed 1); ``test``
trains on the training split and measures the test split (run it once, for
a setting chosen without it); ``cost`` times the block per message in CPU
time. ``--weighting none`` leaves the Zipf weights out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from classifier.datasets import load_dataset  # noqa: E402
from classifier.model import IntentClassifier  # noqa: E402
from classifier.text import normalize  # noqa: E402
from classifier.wordpiece import WordPiece  # noqa: E402

SIF_A = 1e-4


def build(out: Path, batch: int) -> None:
    from classifier.embeddings import SentenceEncoder

    enc = SentenceEncoder.load()
    vocab = enc.tokenizer.get_vocab()
    size = len(vocab)
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    table = np.zeros((size, enc.dim), dtype=np.float32)
    start = time.process_time()
    with threadpool_limits(limits=1, user_api="blas"):
        for lo in range(0, size, batch):
            ids = [[cls_id, i, sep_id] for i in range(lo, min(lo + batch, size))]
            table[lo:lo + len(ids)] = enc._forward(ids)
    cpu = time.process_time() - start
    np.savez(out, table=table, fingerprint=enc.fingerprint)
    print(f"{out}: {size} x {enc.dim}, {cpu:.0f} s CPU")


class StaticBlock:
    """The distilled table at one PCA size, and the tokenizer that indexes it."""

    def __init__(self, table_path: Path, dim: int, weighting: str = "zipf") -> None:
        from classifier.embeddings import SentenceEncoder

        raw = np.load(table_path)["table"].astype(np.float64)
        self.tokenizer = SentenceEncoder.load().tokenizer
        vocab = self.tokenizer.get_vocab()
        self.skip = {vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
        centred = raw - raw.mean(axis=0)
        if dim < raw.shape[1]:
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            reduced = centred @ vt[:dim].T
        else:
            reduced = centred
        if weighting == "zipf":
            inv_rank = 1.0 / np.arange(2, len(reduced) + 2)
            p = inv_rank / inv_rank.sum()
            reduced *= (SIF_A / (SIF_A + p))[:, None]
        self.table = np.ascontiguousarray(reduced, dtype=np.float32)
        self.dim = dim

    def ids(self, texts: list[str]) -> list[list[int]]:
        encs = self.tokenizer.encode_batch([normalize(t) for t in texts], add_special_tokens=False)
        return [[i for i in e.ids if i not in self.skip] for e in encs]

    def vectors(self, texts: list[str]) -> np.ndarray:
        rows, cols = [], []
        for r, ids in enumerate(self.ids(texts)):
            rows.extend([r] * len(ids))
            cols.extend(ids)
        counts = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(self.table)))
        out = np.asarray(counts @ self.table.astype(np.float64))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def one(self, text: str) -> np.ndarray:
        """One message, as a serving path would compute it."""
        ids = [i for i in self.tokenizer.encode(normalize(text), add_special_tokens=False).ids
               if i not in self.skip]
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        v = self.table[ids].sum(axis=0)
        return v / max(float(np.sqrt(v @ v)), 1e-12)


def _svc():
    from sklearn.svm import LinearSVC

    # IntentClassifier's SVM for large knowledge bases (C = 1, seeded).
    return LinearSVC(C=1.0, tol=1e-4, max_iter=1000, random_state=0)


def _accuracy(pred, gold, oos: str | None) -> float:
    keep = [i for i, g in enumerate(gold) if g != oos]
    return float(np.mean([pred[i] == gold[i] for i in keep]))


def evaluate(train, heldout, blocks: dict[str, StaticBlock], weights: list[float],
             oos: str | None) -> dict[str, float]:
    """In-scope accuracy on ``heldout`` for the baseline and each (table, weight)."""
    texts, labels = [t for t, _ in train], [y for _, y in train]
    h_texts, h_gold = [t for t, _ in heldout], [y for _, y in heldout]
    # The product's TF-IDF blocks; one calibration fold skips the
    # temperature's cross-validation, which cannot change the argmax.
    base = IntentClassifier(calibration_folds=1).fit(texts, labels)
    results = {"baseline": _accuracy(base.predict(h_texts), h_gold, oos)}
    x_train, x_held = base.transform(texts), base.transform(h_texts)
    for name, block in blocks.items():
        e_train, e_held = block.vectors(texts), block.vectors(h_texts)
        for w in weights:
            with threadpool_limits(limits=1, user_api="blas"):
                svc = _svc().fit(sp.hstack([x_train, sp.csr_matrix(w * e_train)], format="csr"), labels)
                pred = svc.predict(sp.hstack([x_held, sp.csr_matrix(w * e_held)], format="csr"))
            results[f"{name} w={w:g}"] = _accuracy(list(pred), h_gold, oos)
            print(f"  {name} w={w:g}: {results[f'{name} w={w:g}']:.2%}", flush=True)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out", type=Path)
    b.add_argument("--batch", type=int, default=512)
    for name in ("sweep", "cv", "test", "cost"):
        s = sub.add_parser(name)
        s.add_argument("table", type=Path)
        s.add_argument("--datasets", nargs="+", default=["banking77", "clinc150", "smp2017"])
        s.add_argument("--dims", nargs="+", type=int, default=[256])
        s.add_argument("--weights", nargs="+", type=float, default=[1.0])
        s.add_argument("--weighting", choices=["zipf", "none"], default="zipf")
        s.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.cmd == "build":
        build(a.out, a.batch)
        return 0
    blocks = {f"d={d}": StaticBlock(a.table, d, a.weighting) for d in a.dims}
    report: dict[str, object] = {}
    if a.cmd == "cost":
        return cost(blocks)
    for name in a.datasets:
        ds = load_dataset(name)
        if a.cmd == "cv":
            report[name] = cross_validate(ds, blocks, a.weights)
        else:
            heldout = ds.validation if a.cmd == "sweep" else ds.test
            print(f"{name} ({a.cmd}, {len(ds.train)} train, {len(heldout)} held out)", flush=True)
            report[name] = evaluate(ds.train, heldout, blocks, a.weights, ds.out_of_scope_label)
        print(json.dumps({name: report[name]}, indent=1), flush=True)
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))
    return 0


def cross_validate(ds, blocks, weights) -> dict[str, float]:
    """5-fold CV over BANKING77's whole train.csv (training + validation)."""
    from sklearn.model_selection import StratifiedKFold

    pairs = ds.train + ds.validation
    labels = [y for _, y in pairs]
    folds: list[dict[str, float]] = []
    for k, (tr, he) in enumerate(StratifiedKFold(5, shuffle=True, random_state=1).split(pairs, labels)):
        print(f"{ds.name} fold {k}", flush=True)
        folds.append(evaluate([pairs[i] for i in tr], [pairs[i] for i in he], blocks, weights,
                              ds.out_of_scope_label))
    out = {key: float(np.mean([f[key] for f in folds])) for key in folds[0]}
    out["folds"] = folds  # type: ignore[assignment]
    return out


def cost(blocks: dict[str, StaticBlock]) -> int:
    """CPU time per message, over CLINC150's 5,500 test messages, best of 3
    rounds: the block (normalise, ``tokenizers`` WordPiece, look up, mean,
    normalise, its share of 151 intents' scores), the tokenisation alone, and
    classifier.wordpiece.WordPiece (its word cache emptied before each round)."""
    ds = load_dataset("clinc150")
    texts = [t for t, _ in ds.test]
    for name, block in blocks.items():
        coef = np.random.default_rng(0).standard_normal((151, block.dim)).astype(np.float64)
        vocab = block.tokenizer.get_vocab()
        mismatched = sum(
            WordPiece(vocab).encode(normalize(t))
            != block.tokenizer.encode(normalize(t), add_special_tokens=False).ids
            for t in texts
        )

        def run_block():
            for t in texts:
                coef @ block.one(t)

        def run_tokenizers():
            for t in texts:
                block.tokenizer.encode(normalize(t), add_special_tokens=False)

        def run_pure():
            wp = WordPiece(vocab)
            for t in texts:
                wp.encode(normalize(t))

        best = {}
        for what, fn in (("block", run_block), ("tokenizers", run_tokenizers), ("pure", run_pure)):
            rounds = []
            for _ in range(3):
                start = time.process_time()
                fn()
                rounds.append((time.process_time() - start) / len(texts) * 1e6)
            best[what] = min(rounds)
        mib = block.table.nbytes / 2**20
        print(f"{name}: table {block.table.shape}, {mib:.1f} MiB float32; per message CPU: "
              f"block {best['block']:.1f} us, of which normalize + tokenizers "
              f"{best['tokenizers']:.1f} us; normalize + WordPiece {best['pure']:.1f} us "
              f"({mismatched} of {len(texts)} messages tokenised differently from tokenizers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

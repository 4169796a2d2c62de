from __future__ import annotations

import io
import json

import numpy as np
import pytest

from classifier import artifact
from classifier.artifact import MODEL_FORMAT_VERSION, ModelStore, load_model, save_model
from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier
from classifier.thresholds import Thresholds
from tierdesk.errors import (
    Conflict,
    CorruptModelError,
    IncompatibleModelError,
    InvalidInput,
    ModelNotFound,
)


@pytest.fixture
def compiled(small_kb) -> CompiledClassifier:
    texts, labels = small_kb.training_data()
    return CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels))


@pytest.fixture
def saved(tmp_path, compiled, small_kb):
    root = tmp_path / "models"
    path = save_model(
        compiled, small_kb, root, "v0001", Thresholds(0.6, {"greet": 0.4}), {"accuracy": 0.9}
    )
    return root, path


def _rewrite_metadata(path, **changes):
    meta = json.loads((path / "metadata.json").read_text())
    meta.update(changes)
    (path / "metadata.json").write_text(json.dumps(meta))
    return meta


def test_round_trip_gives_identical_predictions_and_metadata(saved, compiled, small_kb):
    root, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["metadata.json", "model.npz", "vocab.json"]
    loaded = load_model(path, expected_kb_hash=small_kb.content_hash())
    queries = ["hello there", "I want my money back", "what's the weather", "", "再见"]
    np.testing.assert_array_equal(
        loaded.compiled.predict_proba_many(queries), compiled.predict_proba_many(queries)
    )
    meta = loaded.metadata
    assert meta.format_version == MODEL_FORMAT_VERSION
    assert meta.model_version == "v0001"
    assert meta.kb_hash == small_kb.content_hash()
    assert meta.thresholds == Thresholds(0.6, {"greet": 0.4})
    assert meta.evaluation == {"accuracy": 0.9}
    assert {"python", "numpy", "scikit-learn"} <= set(meta.libraries)
    assert set(meta.files) == {"model.npz", "vocab.json"}
    assert meta.created_at.endswith("+00:00")


def test_refuses_to_overwrite_a_version(saved, compiled, small_kb):
    root, path = saved
    before = (path / "model.npz").read_bytes()
    with pytest.raises(Conflict, match="already exists"):
        save_model(compiled, small_kb, root, "v0001", Thresholds(0.1))
    assert (path / "model.npz").read_bytes() == before
    assert [p.name for p in root.iterdir()] == ["v0001"]  # no staging leftovers


@pytest.mark.parametrize("bad", ["../evil", "", ".hidden", "a/b", "x" * 80])
def test_rejects_unsafe_version_names(tmp_path, compiled, small_kb, bad):
    with pytest.raises(InvalidInput):
        save_model(compiled, small_kb, tmp_path, bad, Thresholds(0.5))


def test_tampered_file_is_a_checksum_mismatch(saved):
    _, path = saved
    data = bytearray((path / "model.npz").read_bytes())
    data[-30] ^= 0xFF
    (path / "model.npz").write_bytes(bytes(data))
    with pytest.raises(CorruptModelError) as info:
        load_model(path)
    assert str(info.value) == f"{path / 'model.npz'}: checksum mismatch"


def test_wrong_format_version_is_incompatible(saved):
    _, path = saved
    _rewrite_metadata(path, format_version=MODEL_FORMAT_VERSION + 1)
    with pytest.raises(IncompatibleModelError) as info:
        load_model(path)
    message = str(info.value)
    assert f"format version {MODEL_FORMAT_VERSION + 1}" in message
    assert f"reads only format version {MODEL_FORMAT_VERSION}" in message


@pytest.mark.parametrize("old", [1, 2])
def test_older_format_models_are_refused_with_a_retrain_hint(saved, old):
    # Format 1 thresholds were softmax probabilities, format 2's a map of two
    # inputs without the similarity to the training examples; read with
    # today's confidence they would answer the wrong messages.
    _, path = saved
    _rewrite_metadata(path, format_version=old)
    with pytest.raises(IncompatibleModelError) as info:
        load_model(path)
    assert f"model format version {old}" in str(info.value)
    assert "retrain the model with `tierdesk faq train`" in str(info.value)


def test_confidence_calibration_round_trips(tmp_path, small_kb):
    from classifier.calibration import ConfidenceCalibration

    texts, labels = small_kb.training_data()
    calibration = ConfidenceCalibration(0.8, 1.1, 2.0, 1.5, -0.3)
    compiled = CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels), calibration)
    path = save_model(compiled, small_kb, tmp_path / "models", "v0001", Thresholds(0.6))
    loaded = load_model(path)
    assert loaded.compiled.calibration == calibration
    queries = ["hello there", "I want my money back", "再见", "", "zzqx"]
    # Training examples are stored single precision: the similarity, and so
    # the confidence, agree to that.
    np.testing.assert_allclose(loaded.compiled.top_many(queries)[1], compiled.top_many(queries)[1],
                               rtol=0, atol=1e-6)
    for q in queries:
        k, confidence = loaded.compiled.top_one(q)
        assert k == compiled.top_one(q)[0] and confidence == pytest.approx(compiled.top_one(q)[1], abs=1e-6)


def test_missing_training_examples_are_corrupt(tmp_path, small_kb):
    # A calibrated model reads the similarity to its training examples; one
    # saved without them cannot give the confidence its thresholds mean.
    import hashlib
    import io

    from classifier.calibration import ConfidenceCalibration

    texts, labels = small_kb.training_data()
    compiled = CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels),
                                              ConfidenceCalibration(1.0, 1.0, 1.0, 1.0, 0.0))
    path = save_model(compiled, small_kb, tmp_path / "models", "v0001", Thresholds(0.6))
    load_model(path)
    with np.load(path / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("examples_")}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (path / "model.npz").write_bytes(buffer.getvalue())
    meta = json.loads((path / "metadata.json").read_text())
    meta["files"]["model.npz"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="inconsistent model files"):
        load_model(path)


def test_missing_confidence_entry_is_corrupt(saved):
    root, path = saved
    vocab = json.loads((path / "vocab.json").read_text())
    del vocab["confidence"]
    data = json.dumps(vocab).encode()
    (path / "vocab.json").write_bytes(data)
    import hashlib

    meta = json.loads((path / "metadata.json").read_text())
    meta["files"]["vocab.json"] = hashlib.sha256(data).hexdigest()
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="inconsistent model files"):
        load_model(path)


def test_wrong_kb_hash_is_incompatible(saved, small_kb):
    _, path = saved
    with pytest.raises(IncompatibleModelError, match="retrain"):
        load_model(path, expected_kb_hash="0" * 64)
    # An answer edit keeps the hash, so the same model still loads.
    edited = small_kb.with_answer("greet", "Hi there!")
    load_model(path, expected_kb_hash=edited.content_hash())


def test_unlisted_file_is_refused(saved):
    _, path = saved
    (path / "extra.bin").write_bytes(b"\x00")
    with pytest.raises(CorruptModelError, match="extra.bin: file not listed"):
        load_model(path)


def test_required_file_missing_from_listing_is_refused(saved):
    _, path = saved
    meta = json.loads((path / "metadata.json").read_text())
    del meta["files"]["vocab.json"]
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="vocab.json: not listed"):
        load_model(path)


def test_listed_file_missing_on_disk(saved):
    _, path = saved
    (path / "vocab.json").unlink()
    with pytest.raises(CorruptModelError, match="listed in metadata.json but missing"):
        load_model(path)


def test_pickled_arrays_are_never_unpickled(saved, monkeypatch):
    """A checksum-valid npz holding an object array must be refused, not
    unpickled: np.load runs with allow_pickle=False."""
    _, path = saved
    buffer = io.BytesIO()
    np.savez(buffer, coef=np.array([object()], dtype=object), intercept=np.zeros(1))
    data = buffer.getvalue()
    (path / "model.npz").write_bytes(data)
    meta = json.loads((path / "metadata.json").read_text())
    meta["files"]["model.npz"] = artifact._sha256(data)
    (path / "metadata.json").write_text(json.dumps(meta))
    import pickle

    def boom(*args, **kwargs):
        raise AssertionError("pickle used in the load path")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    with pytest.raises(CorruptModelError):
        load_model(path)


def test_inconsistent_shapes_are_corrupt(saved):
    _, path = saved
    with np.load(path / "model.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["intercept"] = arrays["intercept"][:-1]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (path / "model.npz").write_bytes(buffer.getvalue())
    meta = json.loads((path / "metadata.json").read_text())
    meta["files"]["model.npz"] = artifact._sha256(buffer.getvalue())
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(CorruptModelError, match="intercept"):
        load_model(path)


def test_missing_directory_is_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound):
        load_model(tmp_path / "v0042")


def test_save_refuses_model_that_does_not_match_kb(tmp_path, compiled, demo_kb):
    with pytest.raises(IncompatibleModelError, match="differ"):
        save_model(compiled, demo_kb, tmp_path, "v0001", Thresholds(0.5))


def test_store_versions_activation_and_rollback(tmp_path, compiled, small_kb):
    store = ModelStore(tmp_path / "models")
    assert store.versions() == [] and store.active_version() is None
    assert store.new_version_name() == "v0001"
    with pytest.raises(ModelNotFound):
        store.load_active()
    for _ in range(3):
        save_model(compiled, small_kb, store.root, store.new_version_name(), Thresholds(0.5))
    assert store.versions() == ["v0001", "v0002", "v0003"]
    assert store.new_version_name() == "v0004"

    store.activate("v0001")
    store.activate("v0003")
    assert store.active_version() == "v0003"
    assert (store.root / "ACTIVE").read_text() == "v0003\n"
    assert store.previous_version() == "v0001"
    assert store.load_active().version == "v0003"

    assert store.rollback() == "v0001"
    assert store.active_version() == "v0001"
    assert store.previous_version() is None
    with pytest.raises(ModelNotFound):
        store.rollback()
    with pytest.raises(ModelNotFound):
        store.activate("v0009")
    leftovers = [p.name for p in store.root.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_store_refuses_to_activate_a_corrupt_version(tmp_path, compiled, small_kb):
    store = ModelStore(tmp_path)
    save_model(compiled, small_kb, tmp_path, "v0001", Thresholds(0.5))
    save_model(compiled, small_kb, tmp_path, "v0002", Thresholds(0.5))
    store.activate("v0001")
    (tmp_path / "v0002" / "vocab.json").write_text("{}")
    with pytest.raises(CorruptModelError):
        store.activate("v0002")
    assert store.active_version() == "v0001"

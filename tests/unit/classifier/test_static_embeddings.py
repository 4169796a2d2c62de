"""The static word-piece embedding block: its tokenizer, its shipped table,
its vectors, when the default model uses it, and its round trip through a
saved model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier import static_embeddings
from classifier.artifact import load_model, save_model
from classifier.knowledge_base import load_knowledge_base
from classifier.model import IntentClassifier, wants_static_embeddings
from classifier.static_embeddings import (
    DIM,
    MODEL_NAME,
    TABLE_FILE,
    TABLE_SHA256,
    StaticEncoder,
    file_sha256,
    get_static_encoder,
)
from classifier.training import train
from classifier.wordpiece import WordPiece, load_vocab
from tierdesk.errors import IncompatibleModelError

FIXTURE = Path(__file__).parent / "fixtures" / "wordpiece_reference.json"
QUESTIONS = ["how do I reset my password", "hello there", "where is my parcel", "", "你好", "🙂"]


def test_wordpiece_gives_the_reference_tokenizers_ids():
    # Ids from the `tokenizers` package (all-MiniLM-L6-v2's tokenizer,
    # add_special_tokens=False) on normalised awkward inputs: accents,
    # full-width letters, CJK, control and zero-width characters, long words.
    wp = WordPiece(load_vocab())
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert len(cases) >= 20
    for case in cases:
        assert wp.encode(case["normalized"]) == case["ids"], case["text"]


def test_shipped_table_is_the_recorded_one():
    assert file_sha256(TABLE_FILE) == TABLE_SHA256
    table = np.load(TABLE_FILE, mmap_mode="r")
    assert table.shape == (len(load_vocab()), DIM) and table.dtype == np.float16


def test_the_table_is_memory_mapped():
    assert isinstance(get_static_encoder().table, np.memmap)


def test_a_vector_is_the_unit_mean_of_its_word_pieces_rows():
    enc = get_static_encoder()
    text = "how do i top up my card?"
    ids = [enc.tokenizer.vocab[t] for t in ("how", "do", "i", "top", "up", "my", "card", "?")]
    assert enc.ids(text) == ids
    want = np.asarray(enc.table[ids], dtype=np.float64).mean(axis=0)
    want /= np.linalg.norm(want)
    got = enc.encode_one(text)
    assert got.dtype == np.float32 and got.shape == (DIM,)
    np.testing.assert_allclose(got, want, atol=1e-6)
    batch = enc.encode([text, "", "🙂", "日本"])
    assert batch.shape == (4, DIM) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[0], got)
    # No word piece left ([UNK] and special tokens are not rows): zeros.
    assert not batch[1].any() and not batch[2].any()
    assert abs(np.linalg.norm(batch[3]) - 1) < 1e-6  # 日 and 本 are in the vocabulary


def _synthetic(kind: str, n: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(0)
    words = {
        "en": ["card", "refund", "transfer", "account", "password", "parcel", "delivery", "fee"],
        "zh": ["我想查询", "银行卡", "转账", "退款", "快递", "密码", "手续费", "帐户"],
    }[kind]
    texts, labels = [], []
    for i in range(n):
        label = i % 4
        picked = [words[2 * label], words[2 * label + 1], *rng.choice(words, 2)]
        texts.append((" " if kind == "en" else "").join(picked) + f" {i}")
        labels.append(f"intent{label}")
    return texts, labels


def test_default_block_is_for_large_knowledge_bases_the_vocabulary_covers():
    en, zh = _synthetic("en", 2000), _synthetic("zh", 2000)
    assert wants_static_embeddings(en[0])
    assert not wants_static_embeddings(en[0][:1999])  # small: unmeasured there
    assert not wants_static_embeddings(zh[0])  # Chinese: mostly [UNK]
    assert not wants_static_embeddings(en[0], embeddings=True)  # MiniLM takes its place
    model = IntentClassifier(calibration_folds=1).fit(*en)
    assert model.embedding_info_ == {"model": MODEL_NAME, "dim": DIM, "table_sha256": TABLE_SHA256}
    assert model.coef_.shape[1] == sum(len(v.vocabulary_) for v in model.vectorizers_) + DIM
    assert IntentClassifier(calibration_folds=1).fit(*zh).embedding_info_ is None
    assert IntentClassifier(calibration_folds=1, static_embeddings=False).fit(*en).embedding_info_ is None
    with pytest.raises(ValueError, match="exclusive"):
        IntentClassifier(static_embeddings=True, embeddings=True).fit(*en)


@pytest.fixture
def static_trained(write_kb, small_kb_yaml):
    kb = load_knowledge_base(write_kb(small_kb_yaml))
    return kb, train(kb, params={"static_embeddings": True}, progress=lambda _: None)


def test_a_saved_model_with_the_block_serves_what_the_estimator_predicts(tmp_path, static_trained):
    kb, trained = static_trained
    assert trained.evaluation["params"]["static_embeddings"] is True
    path = save_model(trained.compiled, kb, tmp_path, "v0001", trained.thresholds)
    vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["embedding"] == {
        "info": {"model": MODEL_NAME, "dim": DIM, "table_sha256": TABLE_SHA256}, "weight": 1.5,
    }
    loaded = load_model(path, expected_kb_hash=kb.content_hash())
    assert loaded.metadata.requires == {}  # no optional package needed
    assert loaded.compiled.embedding.static
    want = trained.estimator.decision_function(QUESTIONS)
    np.testing.assert_allclose(loaded.compiled.decision_many(QUESTIONS), want, rtol=0, atol=1e-9)
    for q, row in zip(QUESTIONS, want):
        np.testing.assert_allclose(loaded.compiled.decision_one(q), row, rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        loaded.compiled.transform(QUESTIONS).toarray(), trained.estimator.transform(QUESTIONS).toarray(),
        rtol=0, atol=1e-12,
    )


def test_a_model_trained_with_another_table_is_refused(tmp_path, static_trained, monkeypatch):
    kb, trained = static_trained
    path = save_model(trained.compiled, kb, tmp_path, "v0001", trained.thresholds)
    shipped = get_static_encoder()
    other = StaticEncoder(shipped.table, shipped.tokenizer.vocab, "0" * 64)
    monkeypatch.setattr(static_embeddings, "_shared", other)
    with pytest.raises(IncompatibleModelError, match="static embedding table sha256 a5f84c70ee11"):
        load_model(path)


def test_a_chinese_knowledge_base_gets_no_block(write_kb):
    texts, labels = _synthetic("zh", 2400)
    lines = ["default_skill: general", "default_language: zh", "intents:"]
    for k in range(4):
        examples = ", ".join(t for t, y in zip(texts, labels) if y == f"intent{k}")
        lines += [f"  - id: i{k}", f"    answer: 答{k}", f"    examples: [{examples}]"]
    kb = load_knowledge_base(write_kb("\n".join(lines) + "\n"))
    trained = train(kb, progress=lambda _: None, unknown_share=0)
    assert trained.evaluation["params"]["static_embeddings"] is False
    assert trained.compiled.embedding is None

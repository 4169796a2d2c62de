from __future__ import annotations

from dataclasses import replace

import pytest

from classifier.artifact import ModelStore, save_model
from classifier.knowledge_base import KnowledgeBase
from classifier.service import MAX_CLASSIFIED_CHARS, ONE_BY_ONE, FaqModel, Prediction
from classifier.training import train_and_save
from tierdesk.errors import IncompatibleModelError, InvalidInput


def test_demo_reset_password_is_a_confident_faq_answer(trained_demo_model, demo_kb):
    p = trained_demo_model.predict("how do I reset my password")
    assert p.intent_id == "reset_password"
    assert p.confident and p.auto_answer and not p.handoff
    assert p.answer == demo_kb.get("reset_password").answer


def test_demo_chinese_reset_password(trained_demo_model):
    p = trained_demo_model.predict("忘记密码怎么办")
    assert p.intent_id == "reset_password" and p.confident


def test_demo_double_charge_goes_to_billing(trained_demo_model):
    p = trained_demo_model.predict("I was charged twice for my order and want my money back")
    assert p.intent_id in {"double_charge", "refund_dispute"}
    assert p.needs_human and p.confident and p.handoff
    assert p.skill == "billing" and p.answer is None


@pytest.mark.parametrize(
    "text, intent",
    [
        # Paraphrases that are not in the knowledge base.
        ("I can't remember my password", "reset_password"),
        ("when will my parcel be delivered", "shipping_time"),
        ("do you accept visa", "payment_methods"),
        ("the app crashed again", "app_crash"),
        ("what's the weather like in Berlin", "out_of_scope"),
    ],
)
def test_demo_paraphrases(trained_demo_model, text, intent):
    assert trained_demo_model.predict(text).intent_id == intent


def test_out_of_scope_is_never_confident(trained_demo_model):
    p = trained_demo_model.predict("tell me a joke")
    assert p.intent_id == "out_of_scope" and p.out_of_scope
    assert not p.confident and p.handoff and p.skill == "general"


def test_unsure_prediction_routes_to_default_skill(demo_trained, demo_kb):
    # With every threshold at 1.0 nothing is confident, so even a billing
    # intent must not queue for billing agents.
    from classifier.thresholds import Thresholds

    model = FaqModel(demo_trained.compiled, demo_kb, Thresholds(1.0))
    p = model.predict("I was charged twice for my order and want my money back")
    assert p.needs_human and not p.confident and p.skill == "general"


def test_kb_threshold_overrides_trained_threshold(demo_trained, demo_kb):
    intents = tuple(
        replace(i, threshold=0.0) if i.id == "shipping_time" else i for i in demo_kb.intents
    )
    kb = KnowledgeBase(intents, demo_kb.default_skill)
    model = FaqModel(demo_trained.compiled, demo_kb, demo_trained.thresholds).with_knowledge_base(kb)
    p = model.predict("how long does shipping take")
    assert p.threshold == 0.0 and p.confident


def test_answer_edit_goes_live_without_retraining(trained_demo_model, demo_kb):
    edited = demo_kb.with_answer("reset_password", "Use the new self-service portal.")
    swapped = trained_demo_model.with_knowledge_base(edited)
    assert swapped.compiled is trained_demo_model.compiled  # no retraining, shared weights
    p = swapped.predict("how do I reset my password")
    assert p.answer == "Use the new self-service portal."
    assert trained_demo_model.predict("how do I reset my password").answer != p.answer


def test_example_edit_requires_retraining(trained_demo_model, demo_kb):
    intents = tuple(
        replace(i, examples=i.examples + ("new example",)) if i.id == "opening_hours" else i
        for i in demo_kb.intents
    )
    with pytest.raises(IncompatibleModelError, match="retrain"):
        trained_demo_model.with_knowledge_base(KnowledgeBase(intents, demo_kb.default_skill))


def test_predict_many_matches_single_and_validates(trained_demo_model):
    # More than ONE_BY_ONE: the batch is scored as one (top_many).
    texts = ["where is my order", "退货政策是什么", "", "x" * (MAX_CLASSIFIED_CHARS * 5), "do you ship abroad",
             "I was charged twice"]
    assert len(texts) > ONE_BY_ONE
    many = trained_demo_model.predict_many(texts)
    singles = [trained_demo_model.predict(t) for t in texts]
    # The batch and single paths differ only in summation order.
    assert [p._replace(confidence=0.0) for p in many] == [
        p._replace(confidence=0.0) for p in singles
    ]
    assert [p.confidence for p in many] == pytest.approx([p.confidence for p in singles], abs=1e-12)
    assert all(isinstance(p, Prediction) for p in many)
    assert trained_demo_model.predict_many([]) == []
    with pytest.raises(InvalidInput):
        trained_demo_model.predict_many("a string")
    with pytest.raises(InvalidInput):
        trained_demo_model.predict_many(["ok", None])


def test_small_batches_are_scored_one_by_one_as_the_batch_would_be(trained_demo_model):
    texts = ["how do I reset my password 1234", "where is my order", "退货政策是什么", "", "zzz qqq 77",
             "I want to talk to a person"]
    compiled = trained_demo_model.compiled
    best, confidence = compiled.top_many(texts)
    for text, k, c in zip(texts, best.tolist(), confidence.tolist()):
        one = compiled.top_one(text)
        assert one[0] == k and one[1] == pytest.approx(c, abs=1e-12)
    whole = trained_demo_model.predict_many(texts)
    in_twos = [p for i in range(0, len(texts), 2) for p in trained_demo_model.predict_many(texts[i:i + 2])]
    assert [p._replace(confidence=0.0) for p in in_twos] == [p._replace(confidence=0.0) for p in whole]
    assert [p.confidence for p in in_twos] == pytest.approx([p.confidence for p in whole], abs=1e-12)


def test_train_save_activate_load(tmp_path, write_kb, small_kb_yaml):
    kb_path = write_kb(small_kb_yaml)
    root = tmp_path / "models"
    lines: list[str] = []
    version = train_and_save(kb_path, root, progress=lines.append)
    assert version == "v0001"
    assert any("cross-validation fold" in line for line in lines)
    assert ModelStore(root).active_version() == "v0001"

    from classifier.knowledge_base import load_knowledge_base

    kb = load_knowledge_base(kb_path)
    model = FaqModel.load_active(root, kb)
    assert model.version == "v0001"
    assert model.predict("hello there").intent_id == "greet"
    # An answer edit on disk still loads against the same model.
    edited = kb.with_answer("greet", "Hey!")
    assert FaqModel.load_active(root, edited).predict("hello there").answer == "Hey!"


def test_loading_against_a_retrained_kb_is_refused(tmp_path, small_kb, demo_trained, demo_kb):
    root = tmp_path / "models"
    save_model(demo_trained.compiled, demo_kb, root, "v0001", demo_trained.thresholds)
    with pytest.raises(IncompatibleModelError):
        FaqModel.load(root / "v0001", small_kb)

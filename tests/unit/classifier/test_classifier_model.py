from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import CountVectorizer

from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier
from classifier.text import Analyzer, normalize

ODD_INPUTS = [
    "",
    "   ",
    "ＲＥＳＥＴ ｍｙ ＰＡＳＳＷＯＲＤ",  # full-width Latin, as typed with a CJK input method
    "忘记密码怎么办？",
    "zzzz qqqq xxxx",  # nothing in the vocabulary
    "🙂 refund 🙂",
    "Refund\tmy\norder  please",
    "refund " * 200,
]


def test_init_only_stores_params_and_clone_round_trips():
    model = IntentClassifier(C=3.0, char_ngram_range=(2, 3), max_features=500)
    params = model.get_params()
    assert params["C"] == 3.0 and params["char_ngram_range"] == (2, 3)
    assert params["max_features"] == 500
    assert not [k for k in vars(model) if k.endswith("_")]
    assert clone(model).get_params() == params


def test_fit_returns_self_and_sets_fitted_attributes(demo_kb):
    texts, labels = demo_kb.training_data()
    model = IntentClassifier()
    with pytest.raises(NotFittedError):
        model.predict_proba(["hello"])
    assert model.fit(texts, labels) is model
    assert sorted(model.classes_) == sorted(set(labels))
    assert len(model.vectorizers_) == 2 and model.n_features_ > 0
    probs = model.predict_proba(["how do I reset my password", "where is my parcel"])
    assert probs.shape == (2, len(model.classes_))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert model.predict(["how do I reset my password"])[0] == "reset_password"
    assert model.score(texts, labels) > 0.95


def test_rejects_bare_string_and_single_class():
    with pytest.raises(TypeError):
        IntentClassifier().fit("abc", ["a", "b", "c"])
    with pytest.raises(ValueError):
        IntentClassifier().fit(["a", "b"], ["x", "x"])


def test_word_tokens_split_chinese_into_characters_but_not_english():
    analyzer = Analyzer("word", 1, 2)
    assert analyzer("Reset my password") == [
        "reset", "my", "password", "reset my", "my password"
    ]
    assert analyzer("忘记密码")[:4] == ["忘", "记", "密", "码"]
    assert "记 密" in analyzer("忘记密码")


def test_normalize_folds_width_and_case():
    assert normalize("ＲＥＳＥＴ　Ｐａｓｓ１２３") == "reset pass123"
    assert normalize("  Hello\t\nWorld  ") == "hello world"


@pytest.mark.parametrize("kind, ngram", [("char_wb", (1, 4)), ("char_wb", (2, 5)), ("char", (1, 3)), ("word", (1, 3))])
def test_analyzers_match_scikit_learn(kind, ngram, demo_kb):
    ours = Analyzer(kind, *ngram)
    theirs = CountVectorizer(
        analyzer=kind, ngram_range=ngram, lowercase=False, token_pattern=ours.token_pattern
    ).build_analyzer()
    texts = [normalize(t) for t in demo_kb.training_data()[0]] + [normalize(t) for t in ODD_INPUTS]
    for text in texts:
        assert sorted(ours.analyze_normalized(text)) == sorted(theirs(text)), text


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"char_analyzer": "char", "char_ngram_range": (1, 3), "word_ngram_range": (1, 1)},
        {"sublinear_tf": False, "max_features": 300, "C": 2.0},
        {"linear": "svm"},
    ],
)
def test_compiled_matches_sklearn_probabilities(demo_kb, params):
    texts, labels = demo_kb.training_data()
    model = IntentClassifier(**params).fit(texts, labels)
    compiled = CompiledClassifier.from_fitted(model)
    queries = texts + ODD_INPUTS + ["can I pay with visa", "我的包裹什么时候到"]
    expected = model.predict_proba(queries)
    np.testing.assert_allclose(compiled.predict_proba_many(queries), expected, rtol=0, atol=1e-6)
    singles = np.vstack([compiled.predict_proba_one(q) for q in queries])
    np.testing.assert_allclose(singles, expected, rtol=0, atol=1e-6)
    assert list(compiled.classes_) == list(model.classes_)
    assert list(compiled.predict(queries)) == list(model.predict(queries))


@pytest.mark.parametrize("linear", ["logistic", "svm"])
def test_compiled_binary_model_uses_the_sigmoid_link(linear):
    texts = ["yes please", "sure", "ok go ahead", "no thanks", "nope", "do not"]
    labels = ["yes", "yes", "yes", "no", "no", "no"]
    model = IntentClassifier(linear=linear).fit(texts, labels)
    compiled = CompiledClassifier.from_fitted(model)
    queries = ["yes", "no way", "ok", "", "maybe"]
    np.testing.assert_allclose(
        compiled.predict_proba_many(queries), model.predict_proba(queries), rtol=0, atol=1e-6
    )


def test_compiled_batch_of_zero():
    texts, labels = ["alpha beta", "gamma delta", "epsilon zeta"], ["x", "y", "z"]
    compiled = CompiledClassifier.from_fitted(IntentClassifier().fit(texts, labels))
    assert compiled.predict_proba_many([]).shape == (0, 3)

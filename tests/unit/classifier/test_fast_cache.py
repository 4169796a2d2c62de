"""The compiled path's per-word cache: results stay equal to scikit-learn's
whether a word is computed, cached, evicted or shared between threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from classifier import fast
from classifier.datasets import load_clinc150
from classifier.fast import CompiledClassifier
from classifier.model import IntentClassifier

ATOL = 1e-9


@pytest.fixture(scope="module")
def demo_model(demo_kb):
    texts, labels = demo_kb.training_data()
    return IntentClassifier().fit(texts, labels)


def assert_same_as_sklearn(model, compiled, texts):
    expected = model.predict_proba(texts)
    got = compiled.predict_proba_many(texts)
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert list(got.argmax(axis=1)) == list(expected.argmax(axis=1))
    singles = np.vstack([compiled.predict_proba_one(t) for t in texts])
    np.testing.assert_allclose(singles, expected, rtol=0, atol=ATOL)


def test_words_seen_in_one_batch_are_reused_by_later_ones(demo_model):
    compiled = CompiledClassifier.from_fitted(demo_model)
    first = [f"how do I reset my password (ref {i})" for i in range(8)]
    assert_same_as_sklearn(demo_model, compiled, first)
    assert {"password", "reset", "(ref"} <= compiled._word_cache.keys()
    # Cached words in new company, repeated within a text, and alone.
    later = [
        "password",
        "my password password reset, refund my order",
        "reset my password twice (ref 99999)",
        "ＲＥＳＥＴ the   password\tplease",
        "where is my parcel?",
        "",
        "密码 reset",
    ]
    assert_same_as_sklearn(demo_model, compiled, later)
    assert_same_as_sklearn(demo_model, compiled, later[::-1])


@pytest.mark.parametrize("char_ngram_range", [(1, 4), (2, 5), (4, 6)])
def test_unseen_words_by_window_equal_sklearn_for_any_ngram_range(demo_kb, char_ngram_range, monkeypatch):
    # Words never seen (references, numbers, typos) take the window path;
    # with n from 4, "a" and "ok" are shorter than every n once padded.
    monkeypatch.setattr(fast, "WINDOW_CACHE_SIZE", 7)
    texts, labels = demo_kb.training_data()
    model = IntentClassifier(char_ngram_range=char_ngram_range).fit(texts, labels)
    compiled = CompiledClassifier.from_fitted(model)
    queries = [f"a refund ok for order #{i * 7919} ref-{i}x passwrod" for i in range(30)] + ["a", "ok", "x y"]
    for start in range(0, len(queries), 8):
        assert_same_as_sklearn(model, compiled, queries[start : start + 8])
    assert all(0 < len(w) <= 7 for w in compiled._word_cache._windows)


def test_cache_stays_under_its_cap(demo_model, monkeypatch):
    monkeypatch.setattr(fast, "WORD_CACHE_SIZE", 5)
    compiled = CompiledClassifier.from_fitted(demo_model)
    texts = [f"refund order {i} for account {i * 7} charged twice" for i in range(40)]
    for start in range(0, len(texts), 8):
        assert_same_as_sklearn(demo_model, compiled, texts[start : start + 8])
        assert len(compiled._word_cache) <= 5


def test_long_words_are_not_cached(demo_model):
    compiled = CompiledClassifier.from_fitted(demo_model)
    long_word = "x" * (fast.MAX_CACHED_WORD_CHARS + 1)
    assert_same_as_sklearn(demo_model, compiled, [f"reset {long_word} password"])
    assert long_word not in compiled._word_cache
    assert "reset" in compiled._word_cache


def test_concurrent_predictions_with_constant_eviction(demo_model, monkeypatch):
    # A tiny cap makes the threads clear the cache under each other's feet.
    monkeypatch.setattr(fast, "WORD_CACHE_SIZE", 3)
    compiled = CompiledClassifier.from_fitted(demo_model)
    texts = [f"where is my order {i}, I was charged twice for {i % 5}" for i in range(24)]
    expected = demo_model.predict_proba(texts)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(30):
                np.testing.assert_allclose(
                    compiled.predict_proba_many(texts), expected, rtol=0, atol=ATOL
                )
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[0]


@pytest.mark.datasets
def test_fast_path_equals_sklearn_on_clinc150_in_any_batch_cold_and_warm_cache(datasets_dir):
    clinc = load_clinc150(datasets_dir)
    subset = clinc.train[::4]  # every class keeps 25 examples; large enough for the static block
    # One fit, no cross-validated temperature: what is compared is the
    # scoring of a fitted model, and the three extra fits were most of the time.
    model = IntentClassifier(calibration_folds=1).fit([t for t, _ in subset], [y for _, y in subset])
    assert model.embedding_info_ is not None
    compiled = CompiledClassifier.from_fitted(model)
    queries = [t for t, _ in clinc.test]
    expected = model.predict_proba(queries)
    whole = compiled.predict_proba_many(queries)
    np.testing.assert_allclose(whole, expected, rtol=0, atol=ATOL)
    assert list(whole.argmax(axis=1)) == list(expected.argmax(axis=1))
    # Batch sizes as the micro-batcher sends them; the second pass finds
    # every word cached by the first.
    for _ in range(2):
        start = 0
        for size in (1, 8, 32, 5, 30) * 200:
            if start >= len(queries):
                break
            batch = queries[start : start + size]
            got = compiled.predict_proba_many(batch)
            np.testing.assert_allclose(got, expected[start : start + size], rtol=0, atol=ATOL)
            assert list(got.argmax(axis=1)) == list(expected[start : start + size].argmax(axis=1))
            start += size
        assert start >= len(queries)
    singles = np.vstack([compiled.predict_proba_one(q) for q in queries[::7]])
    np.testing.assert_allclose(singles, expected[::7], rtol=0, atol=ATOL)
    n_words = len({w for q in queries for w in q.lower().split()})
    assert 0 < len(compiled._word_cache) <= n_words

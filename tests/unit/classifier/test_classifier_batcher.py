from __future__ import annotations

import asyncio

import pytest

from classifier.batcher import MicroBatcher
from classifier.service import Prediction
from tierdesk.errors import InvalidInput


class CountingModel:
    """Stands in for FaqModel: records every predict_many call."""

    def __init__(self, tag: str = "m", fail: Exception | None = None) -> None:
        self.tag = tag
        self.fail = fail
        self.calls: list[list[str]] = []
        self.locales: list[list[str | None] | None] = []

    def predict_many(self, texts, locales=None):
        self.calls.append(list(texts))
        self.locales.append(list(locales) if locales is not None else None)
        if self.fail is not None:
            raise self.fail
        return [
            Prediction(f"{self.tag}:{t}", 1.0, 0.5, None, "general", False, False) for t in texts
        ]


async def test_concurrent_callers_share_one_call():
    model = CountingModel()
    batcher = MicroBatcher(lambda: model)
    texts = [f"message {i}" for i in range(10)]
    results = await asyncio.gather(*(batcher.classify(t) for t in texts))
    assert model.calls == [texts]
    assert [r.intent_id for r in results] == [f"m:{t}" for t in texts]
    assert batcher.batches_run == 1 and batcher.messages_classified == 10


async def test_sequential_callers_get_separate_batches():
    model = CountingModel()
    batcher = MicroBatcher(lambda: model)
    await batcher.classify("a")
    await batcher.classify("b")
    assert model.calls == [["a"], ["b"]]


async def test_large_bursts_are_split_at_max_batch():
    model = CountingModel()
    batcher = MicroBatcher(lambda: model, max_batch=4)
    results = await asyncio.gather(*(batcher.classify(str(i)) for i in range(10)))
    assert [len(c) for c in model.calls] == [4, 4, 2]
    assert [r.intent_id for r in results] == [f"m:{i}" for i in range(10)]


async def test_errors_reach_every_waiter_of_the_batch_and_the_next_batch_recovers():
    broken = CountingModel(fail=RuntimeError("model exploded"))
    current = {"model": broken}
    batcher = MicroBatcher(lambda: current["model"])
    results = await asyncio.gather(
        *(batcher.classify(t) for t in ["a", "b", "c"]), return_exceptions=True
    )
    assert len(broken.calls) == 1
    assert all(isinstance(r, RuntimeError) and "exploded" in str(r) for r in results)

    current["model"] = CountingModel(tag="fixed")
    assert (await batcher.classify("d")).intent_id == "fixed:d"


async def test_getter_failure_propagates():
    def getter():
        raise LookupError("no model loaded")

    batcher = MicroBatcher(getter)
    with pytest.raises(LookupError):
        await batcher.classify("hi")


async def test_hot_swap_takes_effect_on_the_next_batch():
    first, second = CountingModel("v1"), CountingModel("v2")
    current = {"model": first}
    batcher = MicroBatcher(lambda: current["model"])
    a = await batcher.classify("x")
    current["model"] = second
    b = await batcher.classify("x")
    assert (a.intent_id, b.intent_id) == ("v1:x", "v2:x")


async def test_bad_input_fails_only_its_caller():
    model = CountingModel()
    batcher = MicroBatcher(lambda: model)
    results = await asyncio.gather(
        batcher.classify("ok"), batcher.classify(42), return_exceptions=True  # type: ignore[arg-type]
    )
    assert results[0].intent_id == "m:ok"
    assert isinstance(results[1], InvalidInput)
    assert model.calls == [["ok"]]


async def test_cancelled_waiter_is_skipped():
    model = CountingModel()
    batcher = MicroBatcher(lambda: model)
    doomed = asyncio.ensure_future(batcher.classify("cancel me"))
    kept = asyncio.ensure_future(batcher.classify("keep me"))
    await asyncio.sleep(0)  # both enqueued, flush scheduled
    doomed.cancel()
    assert (await kept).intent_id == "m:keep me"
    assert model.calls == [["keep me"]]


async def test_with_real_model(trained_demo_model):
    batcher = MicroBatcher(lambda: trained_demo_model)
    texts = ["how do I reset my password", "where is my order", "tell me a joke"]
    results = await asyncio.gather(*(batcher.classify(t) for t in texts))
    expected = trained_demo_model.predict_many(texts)
    assert [r.intent_id for r in results] == [e.intent_id for e in expected]
    assert [r.confidence for r in results] == pytest.approx([e.confidence for e in expected])


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        MicroBatcher(lambda: None, max_batch=0)

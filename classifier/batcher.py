"""Coalesce concurrent classify() calls into one predict_many() call.

Under load many requests are waiting on the loop at once; scoring them as one
sparse batch costs far less than one call each. The flush runs on the event
loop itself: a batch takes well under a millisecond of GIL-bound numpy/Python
work, so a thread pool would add hand-off latency without adding parallelism.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from router.errors import InvalidInput

from .service import FaqModel, Prediction


class MicroBatcher:
    def __init__(self, model_getter: Callable[[], FaqModel], max_batch: int = 64) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._model_getter = model_getter
        self.max_batch = max_batch
        self._pending: list[tuple[str, str | None, asyncio.Future[Prediction]]] = []
        self._flush_scheduled = False
        self.batches_run = 0
        self.messages_classified = 0

    async def classify(self, text: str, locale: str | None = None) -> Prediction:
        # Validated here, per caller: a bad message inside a shared batch
        # would otherwise fail every other caller's request too.
        if not isinstance(text, str):
            raise InvalidInput(f"message must be a string, got {type(text).__name__}")
        if locale is not None and not isinstance(locale, str):
            raise InvalidInput(f"locale must be a string, got {type(locale).__name__}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((text, locale, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # call_soon runs after every callback already queued for this loop
            # iteration, i.e. after all callers that arrived together.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._flush_scheduled = False
        for start in range(0, len(pending), self.max_batch):
            chunk = [(t, loc, f) for t, loc, f in pending[start : start + self.max_batch] if not f.done()]
            if chunk:
                self._run_batch(chunk)

    def _run_batch(self, chunk: list[tuple[str, str | None, asyncio.Future[Prediction]]]) -> None:
        try:
            # Fetched per batch so that a hot-swapped model takes effect on the
            # next batch without any coordination with in-flight requests.
            model = self._model_getter()
            predictions = model.predict_many([text for text, _, _ in chunk], [locale for _, locale, _ in chunk])
            if len(predictions) != len(chunk):
                raise RuntimeError(
                    f"model returned {len(predictions)} predictions for {len(chunk)} messages"
                )
        except Exception as exc:
            for _, _, future in chunk:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches_run += 1
        self.messages_classified += len(chunk)
        for (_, _, future), prediction in zip(chunk, predictions):
            if not future.done():
                future.set_result(prediction)

"""The live FAQ model: loaded from models/, swapped without a restart.

Classification goes through a micro-batcher: requests that arrive in the
same event-loop turn share one vectorised prediction. The batcher reads the
current model at each flush, so a swap takes effect between batches and no
request sees half a model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from classifier.batcher import MicroBatcher
from classifier.knowledge_base import KnowledgeBase, load_knowledge_base
from classifier.service import FaqModel, Prediction
from tierdesk.errors import ModelNotFound, Unavailable


class LiveModel:
    def __init__(self, models_dir: Path, knowledge_base: Path, *, max_batch: int = 64) -> None:
        self.models_dir = Path(models_dir)
        self.knowledge_base = Path(knowledge_base)
        self._model: FaqModel | None = None
        self.batcher = MicroBatcher(self._current, max_batch=max_batch)

    @classmethod
    def of(cls, model: FaqModel) -> LiveModel:
        """Serve an already-built model (tests, embedding)."""
        live = cls(Path("."), Path("."))
        live._model = model
        return live

    def _current(self) -> FaqModel:
        if self._model is None:
            raise Unavailable("no FAQ model is loaded; run `tierdesk faq train`", code="model_not_loaded")
        return self._model

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def version(self) -> str | None:
        return None if self._model is None else self._model.version

    @property
    def model(self) -> FaqModel:
        return self._current()

    def _load_blocking(self) -> FaqModel:
        kb = load_knowledge_base(self.knowledge_base)
        return FaqModel.load_active(self.models_dir, kb)

    async def load(self) -> None:
        """Load the active model off the event loop; keep the old one on failure."""
        self._model = await asyncio.to_thread(self._load_blocking)

    async def try_load(self) -> Exception | None:
        try:
            await self.load()
        except (ModelNotFound, FileNotFoundError) as exc:
            return exc
        return None

    def swap(self, model: FaqModel) -> None:
        self._model = model

    def knowledge(self) -> KnowledgeBase:
        return self._current().kb

    async def classify(self, text: str) -> Prediction:
        return await self.batcher.classify(text)

"""The live FAQ model: loaded from models/, swapped without a restart.

Classification goes through a micro-batcher: requests that arrive in the
same event-loop turn share one vectorised prediction. The batcher reads the
current model at each flush, so a swap takes effect between batches and no
request sees half a model. Loading happens off the event loop; a model that
fails to load is never swapped in, so the service keeps the one it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import structlog

from classifier.artifact import ModelStore, read_metadata
from classifier.batcher import MicroBatcher
from classifier.knowledge_base import KnowledgeBase, load_knowledge_base
from classifier.service import FaqModel, Prediction
from tierdesk.errors import ModelError, ModelNotFound, TierdeskError, Unavailable

log = structlog.get_logger(__name__)


class LiveModel:
    def __init__(self, models_dir: Path, knowledge_base: Path, *, max_batch: int = 64) -> None:
        self.models_dir = Path(models_dir)
        self.knowledge_base = Path(knowledge_base)
        self.store = ModelStore(self.models_dir)
        self._model: FaqModel | None = None
        # Answer edits by (intent, language), applied over the file's answers.
        self._overrides: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()
        self.batcher = MicroBatcher(self._current, max_batch=max_batch)

    @classmethod
    def of(cls, model: FaqModel, models_dir: Path | None = None, knowledge_base: Path | None = None) -> LiveModel:
        """Serve an already-built model (tests, embedding)."""
        live = cls(models_dir or Path("."), knowledge_base or Path("."))
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

    async def classify(self, text: str, locale: str | None = None) -> Prediction:
        return await self.batcher.classify(text, locale)

    # ------------------------------------------------------------- loading
    def _kb(self, overrides: Mapping[tuple[str, str], str] | None = None) -> KnowledgeBase:
        kb = load_knowledge_base(self.knowledge_base)
        for (intent_id, language), answer in (self._overrides if overrides is None else overrides).items():
            if kb.get(intent_id) is not None and kb.get(intent_id).is_faq:  # type: ignore[union-attr]
                kb = kb.with_answer(intent_id, answer, language)
        return kb

    def load_version(self, version: str | None) -> FaqModel:
        """Build (not activate) a version against the current knowledge base; blocking."""
        kb = self._kb()
        if version is None:
            return FaqModel.load_active(self.models_dir, kb)
        return FaqModel.load(self.store.path(version), kb)

    async def load(self, overrides: Mapping[tuple[str, str], str] | None = None) -> None:
        """Load the active version (at start-up)."""
        async with self._lock:
            if overrides is not None:
                self._overrides = dict(overrides)
            self._model = await asyncio.to_thread(self.load_version, None)

    async def try_load(self, overrides: Mapping[tuple[str, str], str] | None = None) -> Exception | None:
        try:
            await self.load(overrides)
        except (TierdeskError, FileNotFoundError) as exc:
            return exc
        return None

    async def activate(self, version: str) -> FaqModel:
        """Make ``version`` live here and the active one on disk."""
        async with self._lock:
            model = await asyncio.to_thread(self.load_version, version)
            await asyncio.to_thread(self.store.activate, version, verify=False)
            self._model = model
        log.info("model_activated", version=version)
        return model

    async def rollback(self) -> FaqModel:
        async with self._lock:
            previous = self.store.previous_version()
            if previous is None:
                raise ModelNotFound("no earlier model version to roll back to")
            model = await asyncio.to_thread(self.load_version, previous)
            await asyncio.to_thread(self.store.rollback)
            self._model = model
        log.info("model_rolled_back", version=previous)
        return model

    async def follow_active(self) -> bool:
        """Pick up an activation made elsewhere (the CLI, another instance)."""
        active = await asyncio.to_thread(self.store.active_version)
        if active is None or active == self.version:
            return False
        async with self._lock:
            try:
                self._model = await asyncio.to_thread(self.load_version, active)
            except (TierdeskError, FileNotFoundError) as exc:
                log.error("model_switch_refused", version=active, error=str(exc))
                return False
        log.info("model_activated", version=active, by="pointer")
        return True

    async def reload_knowledge_base(self) -> FaqModel:
        """Re-read the knowledge base file: answer edits go live at once; a
        change to examples or intents is refused until a model is retrained."""
        async with self._lock:
            kb = await asyncio.to_thread(self._kb)
            self._model = self._current().with_knowledge_base(kb)
        return self._model

    async def set_answer(self, intent_id: str, answer: str, language: str) -> FaqModel:
        async with self._lock:
            model = self._current()
            self._model = model.with_knowledge_base(model.kb.with_answer(intent_id, answer, language))
            self._overrides[(intent_id, language)] = answer
        return self._model

    async def clear_answer(self, intent_id: str, language: str | None = None) -> FaqModel:
        """Back to the file's answer in ``language`` (every language: None)."""
        async with self._lock:
            overrides = {(i, lang): v for (i, lang), v in self._overrides.items()
                         if i != intent_id or (language is not None and lang != language)}
            kb = await asyncio.to_thread(self._kb, overrides)
            self._model = self._current().with_knowledge_base(kb)
            self._overrides = overrides
        return self._model

    def versions(self) -> list[dict[str, object]]:
        active = self.store.active_version()
        out = []
        for name in self.store.versions():
            try:
                meta = read_metadata(self.store.path(name))
            except ModelError as exc:
                out.append({"version": name, "active": name == active, "live": name == self.version,
                            "error": str(exc)})
                continue
            out.append({"version": name, "active": name == active, "live": name == self.version,
                        "created_at": meta.created_at, "kb_hash": meta.kb_hash,
                        "evaluation": meta.evaluation})
        return out

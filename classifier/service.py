"""The serving-side model: compiled classifier + knowledge base + thresholds.

Everything a router needs about an intent (answer, skill, flags, per-intent
threshold override) is read from the knowledge base at prediction time, which
is why editing an answer never requires retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from router.errors import InvalidInput

from .artifact import LoadedModel, ModelStore, load_model
from .errors import IncompatibleModelError
from .fast import CompiledClassifier
from .knowledge_base import KnowledgeBase
from .language import choose_language
from .thresholds import Thresholds

# Classification only needs the start of a message; capping it bounds the
# CPU one request can burn in the (quadratic-in-n-gram-count) tokeniser.
MAX_CLASSIFIED_CHARS = 1000
# Batches up to this many messages are scored one message at a time
# (CompiledClassifier.top_one, the same figures as top_many: to the bit on
# 3,387 texts of the demo model): for two, top_many's numpy calls for the
# whole batch cost more than the rows' arithmetic (278 us against 348, thread CPU time, the demo model,
# 2026-12-05); three are even. Not with the optional MiniLM encoder, whose
# one call per batch is what batching is for.
ONE_BY_ONE = 2


class Prediction(NamedTuple):
    # A named tuple rather than a frozen dataclass: one is made per message,
    # and a frozen dataclass's __init__ sets each field through
    # object.__setattr__ (~4x the cost of building the tuple).
    intent_id: str
    # The chance the intent is right: calibrated on held-out predictions by
    # `faq train` (docs/classifier.md, section 3).
    confidence: float
    threshold: float
    answer: str | None
    skill: str | None
    needs_human: bool
    out_of_scope: bool
    # Of a confident prediction: the intent's weight against an agent's
    # capacity (the knowledge base's ``weight``).
    weight: int = 1
    # The language ``answer`` is in (None when there is no answer).
    language: str | None = None

    @property
    def confident(self) -> bool:
        return self.confidence >= self.threshold and not self.out_of_scope

    @property
    def auto_answer(self) -> bool:
        """True when the bot should reply with ``answer`` itself."""
        return self.confident and not self.needs_human and self.answer is not None

    @property
    def handoff(self) -> bool:
        return not self.auto_answer


class FaqModel:
    """Immutable: hot-swapping means building a new FaqModel and replacing the
    reference the batcher's ``model_getter`` returns."""

    def __init__(
        self,
        compiled: CompiledClassifier,
        kb: KnowledgeBase,
        thresholds: Thresholds,
        *,
        version: str | None = None,
        trained_kb_hash: str | None = None,
    ) -> None:
        kb_hash = kb.content_hash()
        if trained_kb_hash is not None and trained_kb_hash != kb_hash:
            raise IncompatibleModelError(
                f"model {version or ''} was trained on knowledge base {trained_kb_hash[:12]}, "
                f"this knowledge base is {kb_hash[:12]}; retrain the model"
            )
        classes = [str(c) for c in compiled.classes_]
        missing = [c for c in classes if c not in kb]
        if missing:
            raise IncompatibleModelError(
                f"model predicts intents missing from the knowledge base: {missing}"
            )
        self.compiled = compiled
        self.kb = kb
        self.thresholds = thresholds
        self.version = version
        self.kb_hash = kb_hash
        self._classes = classes
        embedding = compiled.embedding
        self._one_by_one = ONE_BY_ONE if embedding is None or embedding.static else 1
        self._build_table()

    def _build_table(self) -> None:
        # Per-class facts precomputed once, so a prediction is an argmax and a
        # tuple lookup.
        default = self.kb.default_skill
        language = self.kb.default_language
        table = []
        for intent_id in self._classes:
            intent = self.kb.get(intent_id)
            assert intent is not None
            threshold = (
                intent.threshold
                if intent.threshold is not None
                else self.thresholds.for_intent(intent_id)
            )
            table.append(
                (
                    intent_id,
                    float(threshold),
                    intent.answers(language) if intent.is_faq else {},
                    intent.skill or default,
                    intent.needs_human,
                    intent.out_of_scope,
                    intent.weight,
                )
            )
        self._table = table

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, kb: KnowledgeBase) -> "FaqModel":
        return cls(
            loaded.compiled,
            kb,
            loaded.thresholds,
            version=loaded.version,
            trained_kb_hash=loaded.metadata.kb_hash,
        )

    @classmethod
    def load(cls, directory: str | Path, kb: KnowledgeBase) -> "FaqModel":
        """Load one version directory (``models/v0003``)."""
        return cls.from_loaded(load_model(directory, expected_kb_hash=kb.content_hash()), kb)

    @classmethod
    def load_active(cls, models_root: str | Path, kb: KnowledgeBase) -> "FaqModel":
        loaded = ModelStore(models_root).load_active(expected_kb_hash=kb.content_hash())
        return cls.from_loaded(loaded, kb)

    def with_knowledge_base(self, kb: KnowledgeBase) -> "FaqModel":
        """Same compiled model, new answers/skills/threshold overrides.

        Refused when the training-relevant content changed, since the model
        would then predict intents that no longer mean what it learned.
        """
        if kb.content_hash() != self.kb_hash:
            raise IncompatibleModelError(
                "knowledge base examples or intents changed since this model was trained; "
                "retrain instead of swapping the knowledge base"
            )
        return FaqModel(self.compiled, kb, self.thresholds, version=self.version)

    @property
    def intent_ids(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def _prediction(self, k: int, confidence: float, text: str, locale: str | None) -> Prediction:
        intent_id, threshold, answers, skill, needs_human, out_of_scope, weight = self._table[k]
        confident = confidence >= threshold and not out_of_scope
        language = None
        if answers:
            language = choose_language(answers, self.kb.default_language, locale=locale, text=text)
        return Prediction(
            intent_id=intent_id,
            confidence=confidence,
            threshold=threshold,
            answer=answers.get(language) if language else None,
            # An unsure guess at "billing" is no reason to queue for billing
            # agents: only a confident prediction routes to its own skill.
            skill=skill if confident else self.kb.default_skill,
            needs_human=needs_human,
            out_of_scope=out_of_scope,
            weight=weight if confident else 1,
            language=language,
        )

    def predict_many(self, texts: Sequence[str], locales: Sequence[str | None] | None = None) -> list[Prediction]:
        """``locales``: what each message's channel said its customer's
        language is (None: not said); it and the text choose the answer."""
        texts = _check_texts(texts)
        if not texts:
            return []
        if locales is None:
            locales = [None] * len(texts)
        elif len(locales) != len(texts):
            raise InvalidInput(f"{len(locales)} locales for {len(texts)} messages")
        if len(texts) <= self._one_by_one:
            return [self._prediction(*self.compiled.top_one(text), text, locale)
                    for text, locale in zip(texts, locales)]
        best, confidence = self.compiled.top_many(texts)
        return list(map(self._prediction, best.tolist(), confidence.tolist(), texts, locales))

    def predict(self, text: str, locale: str | None = None) -> Prediction:
        return self.predict_many([text], [locale])[0]


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise InvalidInput("expected a list of messages, got a single string")
    out = []
    for text in texts:
        if not isinstance(text, str):
            raise InvalidInput(f"message must be a string, got {type(text).__name__}")
        out.append(text[:MAX_CLASSIFIED_CHARS])
    return out

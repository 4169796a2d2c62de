"""FAQ tuning data: live answer edits, and the questions the bot missed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, or_, select

from . import tables as t
from .engine import Engines


@dataclass(frozen=True, slots=True)
class MissedQuestion:
    message_id: str
    text: str
    at: float
    intent: str | None
    confidence: float | None
    why: str  # thumbs_down, asked_for_person, low_confidence


MISS_VERDICTS = ("thumbs_down", "asked_for_person")


@dataclass(frozen=True, slots=True)
class LabelledQuestion:
    text: str
    outcome: str | None  # "answer" or a handoff reason
    intent: str | None  # what the live model predicted
    verdict: str | None  # "confirmed", a miss, or None (nobody said)


class FaqRepository:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def answer_overrides(self) -> dict[tuple[str, str], str]:
        """The answer edits by (intent, language)."""
        a = t.faq_answers
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(a.c.intent_id, a.c.language, a.c.answer))).all()
        return {(intent, language): answer for intent, language, answer in rows}

    async def set_answer(self, intent_id: str, language: str, answer: str, now: float) -> None:
        a = t.faq_answers
        async with self.engines.writing() as conn:
            await conn.execute(delete(a).where(a.c.intent_id == intent_id, a.c.language == language))
            await conn.execute(a.insert().values(intent_id=intent_id, language=language, answer=answer,
                                                 updated_at=now))

    async def clear_answer(self, intent_id: str, language: str | None = None) -> bool:
        """Drop the edit in ``language``, or in every language when None."""
        a = t.faq_answers
        where = [a.c.intent_id == intent_id] + ([a.c.language == language] if language is not None else [])
        async with self.engines.writing() as conn:
            result = await conn.execute(delete(a).where(*where))
        return result.rowcount > 0

    async def misses(self, since: float, limit: int = 5000) -> list[MissedQuestion]:
        m = t.messages
        q = (
            select(m.c.id, m.c.text, m.c.at, m.c.intent, m.c.confidence, m.c.verdict, m.c.outcome)
            .where(m.c.at >= since, m.c.external_id.is_not(None),
                   or_(m.c.verdict.in_(MISS_VERDICTS), m.c.outcome == "low_confidence"))
            .order_by(m.c.at.desc())
            .limit(limit)
        )
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).all()
        return [MissedQuestion(r.id, r.text, r.at, r.intent, r.confidence,
                               r.verdict if r.verdict in MISS_VERDICTS else r.outcome) for r in rows]

    async def labelled_questions(self, since: float, limit: int = 20000) -> list[LabelledQuestion]:
        """Customer messages since ``since`` with what the live system did and,
        where the customer told us, whether a bot answer was right."""
        m = t.messages
        q = (
            select(m.c.text, m.c.outcome, m.c.intent, m.c.verdict)
            .where(m.c.at >= since, m.c.external_id.is_not(None), m.c.intent.is_not(None))
            .order_by(m.c.at.desc())
            .limit(limit)
        )
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).all()
        return [LabelledQuestion(r.text, r.outcome, r.intent, r.verdict) for r in rows]

"""FAQ tuning data: live answer edits, the questions the bot missed, and
what agents said customer questions were (labels)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, delete, or_, select

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


@dataclass(frozen=True, slots=True)
class FaqLabel:
    message_id: str
    text: str
    intent: str | None  # the FAQ intent it asks; None: not an FAQ question
    labelled_by: str
    labelled_at: float
    predicted: str | None  # what the live model made of it
    outcome: str | None  # "answer" or a handoff reason


@dataclass(frozen=True, slots=True)
class TrafficLabel:
    """One customer question with what is known of its right answer: an
    agent's label (``intent``, or None for "not an FAQ"), a bot answer the
    customer confirmed (``intent``), or a bot answer the customer rejected
    (``not_intent``: answering it with that intent is wrong)."""

    text: str
    intent: str | None
    not_intent: str | None
    source: str  # "label", "confirmed", or the miss ("thumbs_down", "asked_for_person")


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

    async def customer_message(self, message_id: str) -> tuple[str, str | None, str | None] | None:
        """(text, predicted intent, outcome) of a customer message, or None."""
        m = t.messages
        q = select(m.c.text, m.c.intent, m.c.outcome).where(
            m.c.id == message_id, m.c.sender == "customer", m.c.external_id.is_not(None))
        async with self.engines.reading() as conn:
            row = (await conn.execute(q)).first()
        return None if row is None else (row.text, row.intent, row.outcome)

    async def set_label(self, message_id: str, intent_id: str | None, labelled_by: str, now: float) -> None:
        async with self.engines.writing() as conn:
            await conn.execute(delete(t.faq_labels).where(t.faq_labels.c.message_id == message_id))
            await conn.execute(t.faq_labels.insert().values(
                message_id=message_id, intent_id=intent_id, labelled_by=labelled_by, labelled_at=now))

    async def labels(self, since: float, limit: int = 5000) -> list[FaqLabel]:
        """Labels given since ``since``, newest first."""
        lab = t.faq_labels
        q = (self._labels().where(lab.c.labelled_at >= since)
             .order_by(lab.c.labelled_at.desc(), lab.c.message_id).limit(limit))
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).all()
        return [FaqLabel(*row) for row in rows]

    async def label(self, message_id: str) -> FaqLabel | None:
        async with self.engines.reading() as conn:
            row = (await conn.execute(self._labels().where(t.faq_labels.c.message_id == message_id))).first()
        return None if row is None else FaqLabel(*row)

    @staticmethod
    def _labels() -> Select:
        m, lab = t.messages, t.faq_labels
        return (select(lab.c.message_id, m.c.text, lab.c.intent_id, lab.c.labelled_by, lab.c.labelled_at,
                       m.c.intent, m.c.outcome)
                .select_from(lab.join(m, m.c.id == lab.c.message_id)))

    async def labelled_traffic(self, since: float, limit: int = 20000) -> list[TrafficLabel]:
        """Customer questions since ``since`` whose right answer is known in
        part: agents' labels first, then bot answers customers confirmed or
        rejected (a message with a label is taken from the label only)."""
        m, lab = t.messages, t.faq_labels
        labelled = (
            select(m.c.text, lab.c.intent_id)
            .select_from(lab.join(m, m.c.id == lab.c.message_id))
            .where(m.c.at >= since)
            .order_by(m.c.at.desc())
            .limit(limit)
        )
        judged = (
            select(m.c.text, m.c.intent, m.c.verdict)
            .select_from(m.outerjoin(lab, lab.c.message_id == m.c.id))
            .where(m.c.at >= since, m.c.external_id.is_not(None), m.c.outcome == "answer",
                   lab.c.message_id.is_(None),
                   m.c.verdict.in_(("confirmed", *MISS_VERDICTS)))
            .order_by(m.c.at.desc())
            .limit(limit)
        )
        async with self.engines.reading() as conn:
            rows = (await conn.execute(labelled)).all()
            verdicts = (await conn.execute(judged)).all()
        out = [TrafficLabel(r.text, r.intent_id, None, "label") for r in rows]
        for r in verdicts:
            if r.verdict == "confirmed":
                out.append(TrafficLabel(r.text, r.intent, None, "confirmed"))
            else:
                out.append(TrafficLabel(r.text, None, r.intent, r.verdict))
        return out

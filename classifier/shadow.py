"""Shadow evaluation: before a candidate model goes live, replay stored
customer messages through it and the live model, and say what would change.

Precision is measured only where the customer told us the truth: a bot
answer they confirmed (good rating, or marked resolved) gives the right
intent; a miss (thumbs down, asked for a person right after) says the
answered intent was wrong without saying which is right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .service import FaqModel, Prediction

MISSES = ("thumbs_down", "asked_for_person")


class Labelled(Protocol):
    text: str
    intent: str | None  # what the model live at the time predicted (and answered, if it did)
    verdict: str | None  # "confirmed", a miss, or None


@dataclass(frozen=True, slots=True)
class Judged:
    correct: int
    wrong: int
    answered: int

    def as_dict(self) -> dict[str, Any]:
        judged = self.correct + self.wrong
        return {"answered": self.answered, "correct": self.correct, "wrong": self.wrong,
                "precision": round(self.correct / judged, 4) if judged else None}


def judge(predictions: Sequence[Prediction], labelled: Sequence[Labelled]) -> Judged:
    correct = wrong = answered = 0
    for p, q in zip(predictions, labelled, strict=True):
        if not p.auto_answer:
            continue
        answered += 1
        if q.verdict == "confirmed":
            if p.intent_id == q.intent:
                correct += 1
            else:
                wrong += 1
        elif q.verdict in MISSES and p.intent_id == q.intent:
            wrong += 1  # gives the very answer the customer rejected
    return Judged(correct, wrong, answered)


def shadow_compare(
    live: FaqModel,
    candidate: FaqModel,
    questions: Sequence[Labelled],
    *,
    batch: int = 512,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    texts = [q.text for q in questions]
    live_p: list[Prediction] = []
    cand_p: list[Prediction] = []
    for i in range(0, len(texts), batch):
        live_p += live.predict_many(texts[i : i + batch])
        cand_p += candidate.predict_many(texts[i : i + batch])
        if progress:
            progress(f"replayed {min(i + batch, len(texts))}/{len(texts)} messages")
    to_answer = sum(1 for a, b in zip(live_p, cand_p, strict=True) if not a.auto_answer and b.auto_answer)
    to_handoff = sum(1 for a, b in zip(live_p, cand_p, strict=True) if a.auto_answer and not b.auto_answer)
    other_answer = sum(
        1 for a, b in zip(live_p, cand_p, strict=True)
        if a.auto_answer and b.auto_answer and a.intent_id != b.intent_id
    )
    labelled = [i for i, q in enumerate(questions) if q.verdict is not None]
    return {
        "messages": len(texts),
        "changed": to_answer + to_handoff + other_answer,
        "handoff_to_answer": to_answer,
        "answer_to_handoff": to_handoff,
        "different_answer": other_answer,
        "with_known_outcome": len(labelled),
        "live": {"version": live.version, **judge([live_p[i] for i in labelled],
                                                   [questions[i] for i in labelled]).as_dict()},
        "candidate": {"version": candidate.version, **judge([cand_p[i] for i in labelled],
                                                             [questions[i] for i in labelled]).as_dict()},
    }

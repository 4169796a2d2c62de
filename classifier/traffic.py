"""Precision and coverage on stored, labelled traffic (`faq eval --traffic`).

Each item says what is known of a customer question's right answer
(attributes ``text``, ``intent``, ``not_intent``, ``source``; see
storage.faq.TrafficLabel):

* ``intent`` X: the question asks FAQ X (an agent's label, or a bot answer
  the customer confirmed). Answering X is right, answering anything else
  wrong; it counts towards coverage.
* ``intent`` None and ``not_intent`` None: an agent said it is no FAQ.
  Any answer is wrong.
* ``not_intent`` Y: the customer rejected the bot's answer Y. Answering Y
  again is wrong; another answer is of unknown worth and not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .estimate import wilson


class Labelled(Protocol):
    text: str
    intent: str | None
    not_intent: str | None
    source: str


def score_on_traffic(model: Any, items: Sequence[Labelled]) -> dict[str, Any]:
    """``model``: a FaqModel (``predict_many``)."""
    predictions = model.predict_many([i.text for i in items]) if items else []
    right = wrong = faq_questions = faq_answered = not_faq = not_faq_answered = 0
    per_source: Counter[str] = Counter()
    for item, p in zip(items, predictions):
        per_source[item.source] += 1
        answered = p.auto_answer
        if item.intent is not None:
            faq_questions += 1
            if answered:
                faq_answered += 1
                right += p.intent_id == item.intent
                wrong += p.intent_id != item.intent
        elif item.not_intent is not None:
            wrong += answered and p.intent_id == item.not_intent
        else:
            not_faq += 1
            not_faq_answered += answered
            wrong += answered
    judged = right + wrong
    return {
        "model": getattr(model, "version", None),
        "items": len(items),
        "sources": dict(sorted(per_source.items())),
        "judged_answers": judged,
        "precision": right / judged if judged else None,
        "precision_interval": wilson(right, judged),
        "faq_questions": faq_questions,
        "coverage": faq_answered / faq_questions if faq_questions else None,
        "coverage_interval": wilson(faq_answered, faq_questions),
        "not_faq": not_faq,
        "not_faq_answered": not_faq_answered / not_faq if not_faq else None,
    }


def training_examples(items: Iterable[Labelled], kb: Any) -> tuple[list[str], list[str], list[str]]:
    """(texts, intent ids, warnings) to train on from agents' labels: a
    question labelled FAQ X becomes an example of X; one labelled "not an
    FAQ" an example of the out-of-scope intent, which is how the model
    learns the on-topic questions no FAQ answers. Customers' verdicts are
    not used: a rejected answer says what the question is not, not what it is."""
    from .text import normalize

    known = {normalize(e): i.id for i in kb.intents for e in i.examples}
    oos = [i.id for i in kb.intents if i.out_of_scope]
    texts: list[str] = []
    labels: list[str] = []
    skipped: Counter[str] = Counter()
    for item in items:
        if item.source != "label":
            continue
        target = item.intent if item.intent is not None else (oos[0] if len(oos) == 1 else None)
        if target is None:
            skipped["labelled not an FAQ, but the knowledge base has no single out_of_scope intent"] += 1
            continue
        intent = kb.get(target)
        if intent is None:
            skipped[f"labelled {target!r}, no longer an intent of the knowledge base"] += 1
            continue
        key = normalize(item.text)
        if key in known:
            if known[key] != target:
                skipped[f"labelled {target!r}, but an example of {known[key]!r} in the knowledge base"] += 1
            continue
        known[key] = target
        texts.append(item.text)
        labels.append(target)
    warnings = [f"{n} labelled question(s) not used: {why}" for why, n in sorted(skipped.items())]
    return texts, labels, warnings


def format_traffic(report: dict[str, Any], days: float) -> str:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    def interval(v: Any) -> str:
        return "" if not v else f" [{100 * v[0]:.1f}%, {100 * v[1]:.1f}%]"

    sources = ", ".join(f"{k} {v}" for k, v in report["sources"].items()) or "none"
    return "\n".join([
        f"model {report['model']} on labelled traffic of the last {days:g} days: {report['items']} questions "
        f"({sources})",
        f"precision {pct(report['precision'])}{interval(report['precision_interval'])} over "
        f"{report['judged_answers']} judged answers",
        f"coverage {pct(report['coverage'])}{interval(report['coverage_interval'])} of "
        f"{report['faq_questions']} questions known to ask an FAQ",
        f"labelled not an FAQ: {report['not_faq']}, answered {pct(report['not_faq_answered'])}",
        "(95% Wilson intervals; label = an agent's label, confirmed = a bot answer the customer confirmed, "
        "thumbs_down / asked_for_person = one the customer rejected)",
    ])

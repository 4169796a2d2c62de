"""FAQ work that needs stored traffic: misses, suggestions, shadow runs.

Shared by the CLI (`tierdesk faq misses|suggest|shadow`) and the admin API,
so both give the same numbers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from classifier.clustering import Cluster, cluster_questions
from classifier.knowledge_base import load_knowledge_base
from classifier.shadow import shadow_compare
from classifier.text import normalize
from tierdesk.errors import TierdeskError
from storage.faq import FaqRepository, MissedQuestion
from tierdesk.models import LiveModel


async def missed_clusters(repo: FaqRepository, since: float, limit: int = 2000) -> tuple[list[MissedQuestion],
                                                                                         list[Cluster]]:
    misses = await repo.misses(since, limit)
    clusters = await asyncio.to_thread(
        cluster_questions, [m.text for m in misses], [m.intent for m in misses], [m.why for m in misses]
    )
    return misses, clusters


def known_examples(knowledge_base: Path) -> dict[str, str]:
    """Every example of the knowledge base, normalised, with its intent's id
    (empty when the knowledge base cannot be read: nothing is then known)."""
    try:
        kb = load_knowledge_base(knowledge_base)
    except TierdeskError:
        return {}
    return {normalize(e): i.id for i in kb.intents for e in i.examples}


# A question shorter than this (normalised) and of one word is a greeting or
# noise ("hi", "hello?", "你好"), not an FAQ entry to write.
_SHORTEST_QUESTION = 6


def _too_short(text: str) -> bool:
    t = normalize(text)
    return len(t) < _SHORTEST_QUESTION and len(t.split()) < 2


def suggestion_yaml(clusters: list[Cluster], *, min_size: int = 2, top: int = 10, misses: int | None = None,
                    days: float | None = None, known: Mapping[str, str] | None = None,
                    labelled: Mapping[str, str] | None = None) -> str:
    """Draft knowledge-base entries for the biggest clusters, to edit and
    paste, with a comment on every cluster that was not drafted and why.
    ``known``: the knowledge base's examples (``known_examples``): a cluster
    made of an existing intent's own examples is that intent's problem (its
    answer, or its threshold), not a new intent. ``labelled``: questions
    agents labelled as an FAQ intent (normalised text -> intent): that intent
    covers them already. Only clusters of handed-off questions are drafted:
    a question the bot answered and the customer rejected has an intent."""
    known = known or {}
    labelled = labelled or {}
    drafts: list[Cluster] = []
    notes: list[str] = []
    small = 0
    for c in clusters:
        covered = sorted({known[normalize(e)] for e in c.examples if normalize(e) in known})
        if c.size < min_size:
            small += 1
        elif _too_short(c.representative):
            notes.append(f"{_questions(c.size)} like {c.representative!r}: too short to be an FAQ question")
        elif covered:
            notes.append(f"{_questions(c.size)} like {c.representative!r}: already examples of intent "
                         f"{', '.join(covered)}; review its answer or threshold instead ({_reasons(c)})")
        elif labels := sorted({labelled[normalize(e)] for e in c.examples if normalize(e) in labelled}):
            notes.append(f"{_questions(c.size)} like {c.representative!r}: labelled by agents as intent "
                         f"{', '.join(labels)}; train on them with `tierdesk faq train --traffic DAYS`")
        elif "low_confidence" not in c.reasons:
            notes.append(f"{_questions(c.size)} like {c.representative!r}: answered by the bot as "
                         f"{c.top_intent or '-'} and rejected ({_reasons(c)}); review that intent's answer")
        elif len(drafts) < top:
            drafts.append(c)
        else:
            notes.append(f"{_questions(c.size)} like {c.representative!r}: past --top {top}")
    if small:
        largest = max(c.size for c in clusters if c.size < min_size)
        notes.append(f"{small} cluster{'s' if small != 1 else ''} smaller than --min-size {min_size} "
                     f"(the largest: {_questions(largest)})")
    window = f" in the last {days:g} days" if days is not None else ""
    found = f"{misses} missed questions{window}" if misses is not None else f"Missed questions{window}"
    lines = [f"# Suggested FAQ entries from questions the bot missed{window}, biggest first.",
             f"# {found}, {len(clusters)} cluster{'s' if len(clusters) != 1 else ''}: "
             f"{len(drafts)} drafted.",
             "# Review each: give it a good id and answer, drop what is noise."]
    if not drafts:
        lines.append("# Nothing to draft" + (": no missed questions." if not clusters else
                                              ". Lower --min-size or look further back with --days."))
    if notes:
        lines.append("# Not drafted:")
        lines += [f"#   {n}" for n in notes]
    if not drafts:
        return "\n".join(lines + ["intents: []"]) + "\n"
    lines.append("intents:")
    for n, c in enumerate(drafts, start=1):
        slug = re.sub(r"[^a-z0-9]+", "_", c.representative.lower()).strip("_")[:40] or f"suggestion_{n}"
        lines += [f"  - id: {slug}  # {_questions(c.size)}; model guessed {c.top_intent or '-'}; {_reasons(c)}",
                  "    answer: \"TODO: write the answer\"",
                  "    examples:"]
        lines += [f"      - {json.dumps(e, ensure_ascii=False)}" for e in c.examples]
    return "\n".join(lines) + "\n"


def _questions(n: int) -> str:
    return f"{n} question{'s' if n != 1 else ''}"


def _reasons(c: Cluster) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.reasons.items())) or "no reason recorded"


def format_shadow(report: Mapping[str, Any], days: float | None = None) -> str:
    """A shadow run as a table, like `faq eval`'s: what would change, and
    each model's precision where customers told us."""
    live, cand = report["live"], report["candidate"]

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    window = f" over the last {days:g} days" if days is not None else ""
    n = report["messages"]
    changed = report["changed"]
    lines = [
        f"candidate {cand['version']} against the live {live['version']}{window}: {n:,} customer messages, "
        f"{report['with_known_outcome']:,} with a known outcome",
        "",
    ]
    header = f"{'':<30} {'live ' + str(live['version']):>16} {'candidate ' + str(cand['version']):>20}"
    lines += [header, "-" * len(header)]
    for label, key, fmt in (("answered by the bot", "answered", str), ("confirmed right", "correct", str),
                            ("wrong", "wrong", str), ("precision (right / judged)", "precision", pct)):
        lines.append(f"{label:<30} {fmt(live[key]):>16} {fmt(cand[key]):>20}")
    lines += [
        "",
        f"would change: {changed:,} of {n:,} messages" + (f" ({changed / n:.1%})" if n else ""),
        f"  {report['handoff_to_answer']:>6,}  handed off today, answered by the candidate",
        f"  {report['answer_to_handoff']:>6,}  answered today, handed off by the candidate",
        f"  {report['different_answer']:>6,}  answered by both, with a different answer",
        "",
        "right = an answer the customer confirmed (rating 4-5 or \"resolved\") given again; wrong = another "
        "answer where one was confirmed, or the answer a customer rejected given again.",
    ]
    return "\n".join(lines)


async def shadow_run(live: LiveModel, repo: FaqRepository, version: str, since: float,
                     progress: Any = None) -> dict[str, Any]:
    candidate = await asyncio.to_thread(live.load_version, version)
    questions = await repo.labelled_questions(since)
    return await asyncio.to_thread(shadow_compare, live.model, candidate, questions, progress=progress)

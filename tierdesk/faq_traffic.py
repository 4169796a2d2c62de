"""FAQ work that needs stored traffic: misses, suggestions, shadow runs.

Shared by the CLI (`tierdesk faq misses|suggest|shadow`) and the admin API,
so both give the same numbers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from classifier.clustering import Cluster, cluster_questions
from classifier.shadow import shadow_compare
from storage.faq import FaqRepository, MissedQuestion
from tierdesk.models import LiveModel


async def missed_clusters(repo: FaqRepository, since: float, limit: int = 2000) -> tuple[list[MissedQuestion],
                                                                                         list[Cluster]]:
    misses = await repo.misses(since, limit)
    clusters = await asyncio.to_thread(
        cluster_questions, [m.text for m in misses], [m.intent for m in misses], [m.why for m in misses]
    )
    return misses, clusters


def suggestion_yaml(clusters: list[Cluster], min_size: int = 2, top: int = 10) -> str:
    """Draft knowledge-base entries for the biggest clusters, to edit and paste."""
    lines = ["# Suggested FAQ entries from questions the bot missed, biggest first.",
             "# Review each: give it a good id and answer, drop what is noise.", "intents:"]
    for n, c in enumerate([c for c in clusters if c.size >= min_size][:top], start=1):
        slug = re.sub(r"[^a-z0-9]+", "_", c.representative.lower()).strip("_")[:40] or f"suggestion_{n}"
        lines += [f"  - id: {slug}  # {c.size} missed questions; model guessed {c.top_intent or '-'}",
                  "    answer: \"TODO: write the answer\"",
                  "    examples:"]
        lines += [f"      - {e!r}" for e in c.examples]
    return "\n".join(lines) + "\n"


async def shadow_run(live: LiveModel, repo: FaqRepository, version: str, since: float,
                     progress: Any = None) -> dict[str, Any]:
    candidate = await asyncio.to_thread(live.load_version, version)
    questions = await repo.labelled_questions(since)
    return await asyncio.to_thread(shadow_compare, live.model, candidate, questions, progress=progress)

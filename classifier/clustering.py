"""Group the questions the bot missed into clusters of similar questions,
so the people tuning the FAQ see which new entries would take most traffic."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Cluster:
    size: int
    representative: str  # the question closest to the cluster's centre
    examples: tuple[str, ...]
    top_intent: str | None  # what the model guessed most often
    reasons: dict[str, int]
    members: tuple[int, ...]  # indices into the input


def cluster_questions(
    texts: Sequence[str],
    intents: Sequence[str | None] | None = None,
    reasons: Sequence[str] | None = None,
    *,
    distance_threshold: float = 0.8,
    max_examples: int = 5,
) -> list[Cluster]:
    """Average-linkage clustering on cosine distance of character n-gram
    TF-IDF (works for English and Chinese alike); largest clusters first.

    ``distance_threshold`` is the cosine distance above which two groups are
    not merged: lower gives tighter, smaller clusters."""
    # Imported here: the server imports this module for GET /v1/faq/misses,
    # and scikit-learn (with the SciPy it pulls in) is ~100 MiB of every
    # serving process's memory that only a clustering request needs.
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(texts)
    if n == 0:
        return []
    intents = list(intents) if intents is not None else [None] * n
    reasons = list(reasons) if reasons is not None else [""] * n
    if n == 1:
        return [Cluster(1, texts[0], (texts[0],), intents[0], dict(Counter(reasons)), (0,))]
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), lowercase=True,
                              sublinear_tf=True).fit_transform(texts)
    dense = vectors.toarray()
    labels = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=distance_threshold,
    ).fit_predict(dense)
    clusters: list[Cluster] = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        centre = dense[idx].mean(axis=0)
        closeness = dense[idx] @ centre
        order = idx[np.argsort(-closeness)]
        top = Counter(i for i in (intents[j] for j in idx) if i).most_common(1)
        clusters.append(Cluster(
            size=len(idx),
            representative=texts[order[0]],
            examples=tuple(texts[j] for j in order[:max_examples]),
            top_intent=top[0][0] if top else None,
            reasons=dict(Counter(reasons[j] for j in idx)),
            members=tuple(int(j) for j in order),
        ))
    clusters.sort(key=lambda c: (-c.size, c.representative))
    return clusters

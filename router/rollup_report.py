"""Reading the rollups: stored histograms as arrays, percentiles from their
bins, and the metrics report (the same shape as router/metrics.py's
replay) from the rollup rows of a range of hours.

The write side, which keeps the rollups as events happen, is
router/rollups.py; this side is numpy's (a week of hourly histograms is
summed and searched in a few vector operations).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import SLA, Bucket, _iso, group_label, ratio, report_header
from .rollups import (ACCURACY, BIN_FLOOR, EMPTY_HISTOGRAM, N_BINS, HistogramDelta, bin_value, pack_histogram,
                      unpack_histogram)


def dense(bins: Mapping[int, int]) -> np.ndarray:
    counts = np.zeros(N_BINS, dtype=np.int64)
    for b, n in bins.items():
        counts[b] += n
    return counts


@dataclass(slots=True)
class Histogram:
    """A stored histogram read back: counts per bin, and the least and the
    greatest sample (inf and -inf when empty)."""

    counts: np.ndarray
    low: float = math.inf
    high: float = -math.inf

    def __add__(self, other: Histogram) -> Histogram:
        return Histogram(self.counts + other.counts, min(self.low, other.low), max(self.high, other.high))

    @classmethod
    def of(cls, delta: HistogramDelta) -> Histogram:
        return cls(dense(delta.bins), delta.low, delta.high)


def encode(h: Histogram) -> bytes:
    """Only the span of occupied bins is stored: a response-time histogram
    covers a few hundred of the N_BINS."""
    nz = np.flatnonzero(h.counts)
    if nz.size == 0:
        return EMPTY_HISTOGRAM
    first, last = int(nz[0]), int(nz[-1])
    return pack_histogram(first, h.counts[first : last + 1].astype("<i8").tobytes(), h.low, h.high)


def decode(blob: bytes) -> Histogram:
    first, raw, low, high = unpack_histogram(blob)
    counts = np.zeros(N_BINS, dtype=np.int64)
    span = np.frombuffer(raw, dtype="<i8")
    counts[first : first + span.size] = span
    return Histogram(counts, low, high)


def histogram_percentile(bins: Sequence[float], n: float, q: float, cumulative: np.ndarray | None = None,
                         low: float = -math.inf, high: float = math.inf) -> float | None:
    """The q-quantile as metrics.percentile computes it exactly (linear
    interpolation between the two closest ranks), from bin counts: each rank
    is read as its bin's value, within 1% of the true sample, and so is the
    interpolation between two of them. Clamped to [low, high], the least and
    greatest sample, which it may otherwise pass by up to 1% (a single 60 s
    sample would read 60.34 s). Pass ``cumulative`` (the running total of
    ``bins``) to ask for several quantiles of one histogram."""
    if n <= 0:
        return None
    if cumulative is None:
        cumulative = np.cumsum(np.asarray(bins))
    pos = (n - 1) * q
    lo_rank, hi_rank = math.floor(pos), math.ceil(pos)
    lo_v = bin_value(int(np.searchsorted(cumulative, lo_rank, side="right")))
    if hi_rank == lo_rank:
        v = lo_v
    else:
        hi_v = bin_value(int(np.searchsorted(cumulative, hi_rank, side="right")))
        v = lo_v + (hi_v - lo_v) * (pos - lo_rank)
    return min(max(v, low), high)


def _stats(c: Mapping[str, float], hists: Mapping[str, Histogram], stat: str) -> dict[str, Any]:
    n = c.get(f"{stat}.n", 0.0)
    total = c.get(f"{stat}.sum", 0.0)
    h = hists.get(stat)
    p50 = p90 = None
    if h is not None:
        cumulative = np.cumsum(h.counts)
        p50 = histogram_percentile(h.counts, n, 0.5, cumulative, h.low, h.high)
        p90 = histogram_percentile(h.counts, n, 0.9, cumulative, h.low, h.high)
    return {
        "count": int(n),
        "sum": round(total, 6),
        "avg": round(total / n, 6) if n else None,
        "p50": None if p50 is None else round(p50, 6),
        "p90": None if p90 is None else round(p90, 6),
    }


def _figures(c: Mapping[str, float], hists: Mapping[str, Histogram], pending: Mapping[str, int]) -> dict[str, Any]:
    def i(name: str) -> int:
        return int(round(c.get(name, 0.0)))

    out: dict[str, Any] = {}
    for tier in ("bot", "human"):
        messages = i(f"{tier}.messages")
        waiting = pending.get(tier, 0)
        f: dict[str, Any] = {
            "messages": messages,
            "pending": waiting,
            "response_rate_within_sla": ratio(i(f"{tier}.within_sla"), messages - waiting),
            "response_time": _stats(c, hists, f"{tier}.rt"),
        }
        out[tier] = f
    bot, human = out["bot"], out["human"]
    started = i("episodes.started")
    bot["conversations_started"] = started
    bot["containment"] = ratio(i("bot.contained"), started)
    bot["resolution_time"] = _stats(c, hists, "bot.resolution")
    bot["satisfaction"] = ratio(i("bot.ratings_good"), i("bot.ratings"))
    handoffs = i("human.handoffs")
    human["handoffs"] = handoffs
    human["handoff_rate"] = ratio(i("episodes.handoffs"), started)
    human["handoff_reasons"] = dict(sorted(
        (k[len("human.reason."):], int(round(v))) for k, v in c.items() if k.startswith("human.reason.") and v
    ))
    human["first_response_time"] = _stats(c, hists, "human.first")
    human["first_response_within_sla"] = ratio(i("human.first_within"), handoffs - pending.get("first", 0))
    human["first_response_pending"] = pending.get("first", 0)
    human["reply_interval"] = _stats(c, hists, "human.interval")
    human["queue_wait"] = _stats(c, hists, "human.queue_wait")
    human["resolution_time"] = _stats(c, hists, "human.resolution")
    human["abandonment"] = ratio(i("human.abandoned"), handoffs)
    human["satisfaction"] = ratio(i("human.ratings_good"), i("human.ratings"))
    return out


def report(
    rows: Iterable[tuple[float, str, str, float]],
    histograms: Iterable[tuple[float, str, str, Histogram]],
    pending: Mapping[tuple[float, str], Mapping[str, int]],
    *,
    start: float,
    end: float,
    now: float,
    sla: SLA,
    group_by: str = "tier",
    bucket: Bucket = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The metrics report (same shape as metrics.compute) from rollup rows
    (hour, channel, name, value) and histograms (hour, channel, stat, bin
    counts) of hours in [start, end), and the pending counts (messages and
    first responses still inside their SLA) per (hour, channel)."""
    groups: dict[tuple[str | None, float | None], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    waiting: dict[tuple[str | None, float | None], dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def gkey(hour: float, channel: str) -> tuple[str | None, float | None]:
        b = None if bucket is None else (hour if bucket == "hour" else math.floor(hour / 86400) * 86400)
        return (channel if group_by == "channel" else None, b)

    hists: dict[tuple[str | None, float | None], dict[str, Histogram]] = defaultdict(dict)
    for hour, channel, name, value in rows:
        groups[gkey(hour, channel)][name] += value
    for hour, channel, stat, h in histograms:
        slot = hists[gkey(hour, channel)]
        slot[stat] = slot[stat] + h if stat in slot else h
    for (hour, channel), counts in pending.items():
        for k, v in counts.items():
            waiting[gkey(hour, channel)][k] += v
            groups[gkey(hour, channel)]  # make the group exist
    keys = sorted(groups, key=lambda k: (k[0] or "", k[1] or 0.0)) or [(None, None)]
    return {
        **report_header(start=start, end=end, now=now, sla=sla, group_by=group_by, bucket=bucket,
                        percentile_error=(ACCURACY, BIN_FLOOR)),
        "groups": [
            {"key": {} if group_by == "tier" else {group_by: k[0]}, "label": group_label(group_by, k[0], names),
             "bucket": _iso(k[1]),
             **_figures(groups.get(k, {}), hists.get(k, {}), waiting.get(k, {}))}
            for k in keys
        ],
    }

"""Metric rollups maintained on write: hourly counters and response-time
histograms per channel, so a week of metrics is a read of a few thousand
rows instead of a replay of millions of events.

Each conversation keeps a ConversationTally: the same state machine as the
replay in router/metrics.py, but it emits additive deltas as events happen.
Counts are exact; percentiles come from a fixed array of log-spaced bins
(DDSketch's layout with a relative accuracy of 1%): each sample is
represented within 1% of its true value, so every percentile is too. SLA comparisons use the SLAs in
force when the reply happened (`tierdesk metrics rebuild` recomputes).

The replay (metrics.compute) stays the reference: tests check that both
give the same report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import SLA, Bucket, _iso, ratio, report_header
from .model import Tier
from .tracker import EventKind, TrackerEvent

HOUR = 3600.0
ACCURACY = 0.01
BIN_GROWTH = (1 + ACCURACY) / (1 - ACCURACY)  # a bin's representative is within 1% of all it holds
BIN_FLOOR = 1e-4  # seconds; anything shorter counts as 0 (bin 0)
N_BINS = 1200  # up to BIN_FLOOR * BIN_GROWTH**1199 ≈ 2.6e6 s (a month)
_LOG_GROWTH = math.log(BIN_GROWTH)

# A rollup key: (hour start, channel id, counter name).
Key = tuple[float, str, str]


def hour_of(t: float) -> float:
    return math.floor(t / HOUR) * HOUR


def bin_of(seconds: float) -> int:
    if seconds < BIN_FLOOR:
        return 0
    return min(N_BINS - 1, 1 + int(math.log(seconds / BIN_FLOOR) / _LOG_GROWTH))


def bin_value(b: int) -> float:
    """The value that stands for bin b: within ACCURACY of anything in it."""
    if b == 0:
        return 0.0
    lo = BIN_FLOOR * BIN_GROWTH ** (b - 1)
    hi = lo * BIN_GROWTH
    return 2 * lo * hi / (lo + hi)


def dense(bins: Mapping[int, int]) -> np.ndarray:
    counts = np.zeros(N_BINS, dtype=np.int64)
    for b, n in bins.items():
        counts[b] += n
    return counts


def encode(counts: np.ndarray) -> bytes:
    """Only the span of occupied bins is stored: a response-time histogram
    covers a few hundred of the N_BINS."""
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return b"\x00\x00"
    first, last = int(nz[0]), int(nz[-1])
    return first.to_bytes(2, "little") + counts[first : last + 1].astype("<i8").tobytes()


def decode(blob: bytes) -> np.ndarray:
    counts = np.zeros(N_BINS, dtype=np.int64)
    first = int.from_bytes(blob[:2], "little")
    span = np.frombuffer(blob, dtype="<i8", offset=2)
    counts[first : first + span.size] = span
    return counts


@dataclass(slots=True)
class Deltas:
    """Counter increments, summed per key."""

    values: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    # Histogram increments per (hour, channel, stat): bin -> count.
    hist: dict[Key, dict[int, int]] = field(default_factory=dict)
    # Customer messages that got their first agent reply: (message id, when).
    replied: list[tuple[str, float]] = field(default_factory=list)

    def add(self, t: float, channel: str, name: str, value: float = 1.0) -> None:
        self.values[(hour_of(t), channel, name)] += value

    def sample(self, t: float, channel: str, stat: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.add(t, channel, f"{stat}.n")
        self.add(t, channel, f"{stat}.sum", seconds)
        bins = self.hist.setdefault((hour_of(t), channel, stat), {})
        b = bin_of(seconds)
        bins[b] = bins.get(b, 0) + 1

    def merge(self, other: Deltas) -> None:
        for k, v in other.values.items():
            self.values[k] += v
        for k, bins in other.hist.items():
            mine = self.hist.setdefault(k, {})
            for b, n in bins.items():
                mine[b] = mine.get(b, 0) + n
        self.replied.extend(other.replied)

    def __bool__(self) -> bool:
        return bool(self.values or self.replied)


@dataclass(slots=True)
class _Handoff:
    requested_at: float
    assigned: bool = False
    first_reply_at: float | None = None
    resolved: bool = False


class ConversationTally:
    """The incremental twin of metrics.replay for one conversation."""

    __slots__ = ("channel", "episode_start", "episode_handoffs", "last_tier", "handoff", "awaiting_bot",
                 "awaiting_human")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.episode_start: float | None = None
        self.episode_handoffs = 0
        self.last_tier = Tier.BOT
        self.handoff: _Handoff | None = None
        self.awaiting_bot: dict[str, float] = {}
        # (message id, received at, after the handoff's first reply)
        self.awaiting_human: list[tuple[str | None, float, bool]] = []

    def apply(self, e: TrackerEvent, sla: SLA, out: Deltas) -> None:
        ch = self.channel
        kind = e.kind
        if kind is EventKind.MESSAGE_RECEIVED:
            if self.episode_start is None:
                self.episode_start = e.at
                self.episode_handoffs = 0
                self.last_tier = Tier.BOT
                out.add(e.at, ch, "episodes.started")
            tier = e.data.get("tier", "bot")
            out.add(e.at, ch, f"{tier}.messages")
            if tier == "bot":
                if e.message_id:
                    self.awaiting_bot[e.message_id] = e.at
            else:
                after = self.handoff is not None and self.handoff.first_reply_at is not None
                self.awaiting_human.append((e.message_id, e.at, after))
        elif kind is EventKind.BOT_ANSWERED:
            received = self.awaiting_bot.pop(str(e.data.get("in_reply_to")), None)
            if received is not None:
                self._replied(received, e.at, "bot", sla.bot_seconds, out)
        elif kind is EventKind.HANDOFF_REQUESTED:
            self.handoff = _Handoff(requested_at=e.at)
            if self.episode_start is None:  # pragma: no cover - a handoff always follows a message
                self.episode_start = e.at
                out.add(e.at, ch, "episodes.started")
            self.episode_handoffs += 1
            self.last_tier = Tier.HUMAN
            out.add(self.episode_start, ch, "episodes.handoffs")
            out.add(e.at, ch, "human.handoffs")
            out.add(e.at, ch, f"human.reason.{e.data.get('reason', 'other')}")
        elif kind is EventKind.ASSIGNED:
            h = self.handoff
            if h is not None and not h.assigned:
                h.assigned = True
                out.sample(h.requested_at, ch, "human.queue_wait", e.at - h.requested_at)
        elif kind is EventKind.AGENT_REPLIED:
            for message_id, received, after in self.awaiting_human:
                self._replied(received, e.at, "human", sla.human_seconds, out)
                if after:
                    out.sample(received, ch, "human.interval", e.at - received)
                if message_id:
                    out.replied.append((message_id, e.at))
            self.awaiting_human.clear()
            h = self.handoff
            if h is not None and h.first_reply_at is None:
                h.first_reply_at = e.at
                first = e.at - h.requested_at
                out.sample(h.requested_at, ch, "human.first", first)
                if first <= sla.human_first_response_seconds:
                    out.add(h.requested_at, ch, "human.first_within")
        elif kind is EventKind.RESOLVED:
            h = self.handoff
            if h is not None and not h.resolved:
                h.resolved = True
                if e.data.get("abandoned"):
                    out.add(h.requested_at, ch, "human.abandoned")
                else:
                    out.sample(h.requested_at, ch, "human.resolution", e.at - h.requested_at)
            if self.episode_start is not None and self.episode_handoffs == 0:
                out.add(self.episode_start, ch, "bot.contained")
                out.sample(self.episode_start, ch, "bot.resolution", e.at - self.episode_start)
            self.episode_start = None
            self.handoff = None
            self.awaiting_bot.clear()
            self.awaiting_human.clear()
        elif kind is EventKind.FEEDBACK:
            rating = e.data.get("rating")
            if rating is not None:
                tier = self.last_tier.value
                out.add(e.at, ch, f"{tier}.ratings")
                if int(rating) >= 4:
                    out.add(e.at, ch, f"{tier}.ratings_good")

    def _replied(self, received: float, at: float, tier: str, sla_seconds: float, out: Deltas) -> None:
        rt = at - received
        out.sample(received, self.channel, f"{tier}.rt", rt)
        if rt <= sla_seconds:
            out.add(received, self.channel, f"{tier}.within_sla")


def tally_events(events: Iterable[TrackerEvent], sla: SLA) -> tuple[dict[str, ConversationTally], Deltas]:
    """Run events (ordered) through fresh tallies: for rebuilding rollups and
    for restoring a conversation's tally after a restart."""
    tallies: dict[str, ConversationTally] = {}
    out = Deltas()
    for e in events:
        tally = tallies.get(e.conversation_id)
        if tally is None:
            tally = tallies[e.conversation_id] = ConversationTally(e.channel_id)
        tally.apply(e, sla, out)
    return tallies, out


# ------------------------------------------------------------------ reading
def histogram_percentile(bins: Sequence[float], n: float, q: float, cumulative: np.ndarray | None = None
                         ) -> float | None:
    """The q-quantile as metrics.percentile computes it exactly (linear
    interpolation between the two closest ranks), from bin counts: each rank
    is read as its bin's value, within 1% of the true sample, and so is the
    interpolation between two of them. Pass ``cumulative`` (the running
    total of ``bins``) to ask for several quantiles of one histogram."""
    if n <= 0:
        return None
    if cumulative is None:
        cumulative = np.cumsum(np.asarray(bins))
    pos = (n - 1) * q
    lo_rank, hi_rank = math.floor(pos), math.ceil(pos)
    lo_v = bin_value(int(np.searchsorted(cumulative, lo_rank, side="right")))
    if hi_rank == lo_rank:
        return lo_v
    hi_v = bin_value(int(np.searchsorted(cumulative, hi_rank, side="right")))
    return lo_v + (hi_v - lo_v) * (pos - lo_rank)


def _stats(c: Mapping[str, float], hists: Mapping[str, np.ndarray], stat: str) -> dict[str, Any]:
    n = c.get(f"{stat}.n", 0.0)
    total = c.get(f"{stat}.sum", 0.0)
    bins = hists.get(stat)
    p50 = p90 = None
    if bins is not None:
        cumulative = np.cumsum(bins)
        p50 = histogram_percentile(bins, n, 0.5, cumulative)
        p90 = histogram_percentile(bins, n, 0.9, cumulative)
    return {
        "count": int(n),
        "sum": round(total, 6),
        "avg": round(total / n, 6) if n else None,
        "p50": None if p50 is None else round(p50, 6),
        "p90": None if p90 is None else round(p90, 6),
    }


def _figures(c: Mapping[str, float], hists: Mapping[str, np.ndarray], pending: Mapping[str, int]) -> dict[str, Any]:
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
    human["reply_interval"] = _stats(c, hists, "human.interval")
    human["queue_wait"] = _stats(c, hists, "human.queue_wait")
    human["resolution_time"] = _stats(c, hists, "human.resolution")
    human["abandonment"] = ratio(i("human.abandoned"), handoffs)
    human["satisfaction"] = ratio(i("human.ratings_good"), i("human.ratings"))
    return out


def report(
    rows: Iterable[tuple[float, str, str, float]],
    histograms: Iterable[tuple[float, str, str, np.ndarray]],
    pending: Mapping[tuple[float, str], Mapping[str, int]],
    *,
    start: float,
    end: float,
    now: float,
    sla: SLA,
    group_by: str = "tier",
    bucket: Bucket = None,
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

    hists: dict[tuple[str | None, float | None], dict[str, np.ndarray]] = defaultdict(dict)
    for hour, channel, name, value in rows:
        groups[gkey(hour, channel)][name] += value
    for hour, channel, stat, counts in histograms:
        slot = hists[gkey(hour, channel)]
        slot[stat] = slot[stat] + counts if stat in slot else counts.astype(np.int64)
    for (hour, channel), counts in pending.items():
        for k, v in counts.items():
            waiting[gkey(hour, channel)][k] += v
            groups[gkey(hour, channel)]  # make the group exist
    keys = sorted(groups, key=lambda k: (k[0] or "", k[1] or 0.0)) or [(None, None)]
    return {
        **report_header(start=start, end=end, now=now, sla=sla, group_by=group_by, bucket=bucket),
        "groups": [
            {"key": {} if group_by == "tier" else {group_by: k[0]}, "bucket": _iso(k[1]),
             **_figures(groups.get(k, {}), hists.get(k, {}), waiting.get(k, {}))}
            for k in keys
        ],
    }

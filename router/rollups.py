"""Metric rollups maintained on write: hourly counters and response-time
histograms per channel, so a week of metrics is a read of a few thousand
rows instead of a replay of millions of events.

Each conversation keeps a ConversationTally: the same state machine as the
replay in router/metrics.py, but it emits additive deltas as events happen.
Counts are exact; percentiles come from a fixed array of log-spaced bins
(DDSketch's layout with a relative accuracy of 1%): each sample is
represented within 1% of its true value, so every percentile is too. SLA comparisons, and the business
hours the human tier's clocks count, are those in force when the reply happened (`tierdesk metrics
rebuild` recomputes with today's).

The replay (metrics.compute) stays the reference: tests check that both
give the same report. Reading the rollups back into a report is
router/rollup_report.py's; this module needs no numpy, so the SQLite
writer's process, which imports it, does without.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .metrics import SLA, resolves
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


@dataclass(slots=True)
class HistogramDelta:
    """Samples added to one stored histogram: a count per bin, and the least
    and greatest sample, kept so that a percentile read from the bins can be
    clamped to what was observed (spec: "A percentile never lies outside the
    observed values"; a bin's value alone may lie up to 1% beyond them)."""

    bins: dict[int, int] = field(default_factory=dict)
    low: float = math.inf
    high: float = -math.inf

    def add(self, seconds: float) -> None:
        b = bin_of(seconds)
        self.bins[b] = self.bins.get(b, 0) + 1
        if seconds < self.low:
            self.low = seconds
        if seconds > self.high:
            self.high = seconds

    def merge(self, other: HistogramDelta) -> None:
        for b, n in other.bins.items():
            self.bins[b] = self.bins.get(b, 0) + n
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)


def bin_bounds(b: int) -> tuple[float, float]:
    """What bin b can hold: [low, high)."""
    if b == 0:
        return 0.0, BIN_FLOOR
    lo = BIN_FLOOR * BIN_GROWTH ** (b - 1)
    return lo, lo * BIN_GROWTH


# A stored histogram (metric_histograms.counts): the format byte 0x01, the
# first occupied bin's number (2 bytes little-endian), the least and the
# greatest sample (two little-endian doubles), then one little-endian int64
# count per bin up to the last occupied one; b"\x00\x00" when empty.
# Histograms written before the bounds were kept (before 2026-12) have no
# format byte or bounds (2 + 8n bytes; this format is 19 + 8n, so the
# length tells them apart); their bounds are read as their bins' edges, and
# `tierdesk metrics rebuild` makes them exact. Written here, in plain Python
# (the writer's process adds to stored ones and has no use for numpy's
# ~19 MiB); read as arrays by router/rollup_report.py.
EMPTY_HISTOGRAM = b"\x00\x00"
FORMAT_1 = b"\x01"
_HEADER_1 = 1 + 2 + 16


def is_legacy_histogram(blob: bytes) -> bool:
    return len(blob) % 8 == 2


def unpack_histogram(blob: bytes) -> tuple[int, bytes, float, float]:
    """(first bin, the counts' bytes, least, greatest) of a stored histogram."""
    if is_legacy_histogram(blob):
        first = int.from_bytes(blob[:2], "little")
        span = (len(blob) - 2) // 8
        if span == 0:
            return first, b"", math.inf, -math.inf
        return first, blob[2:], bin_bounds(first)[0], bin_bounds(first + span - 1)[1]
    first = int.from_bytes(blob[1:3], "little")
    low, high = struct.unpack("<2d", blob[3:_HEADER_1])
    return first, blob[_HEADER_1:], low, high


def pack_histogram(first: int, counts: bytes, low: float, high: float) -> bytes:
    if not counts:
        return EMPTY_HISTOGRAM
    return FORMAT_1 + first.to_bytes(2, "little") + struct.pack("<2d", low, high) + counts


def add_to_histogram(blob: bytes, delta: HistogramDelta) -> bytes:
    """A stored histogram with samples added (or, with negative counts, taken
    back out: the bounds then stay as they were, still true bounds)."""
    first, raw, low, high = unpack_histogram(blob)
    span = len(raw) // 8
    counts = dict(enumerate(struct.unpack(f"<{span}q", raw), start=first))
    for b, n in delta.bins.items():
        counts[b] = counts.get(b, 0) + n
    occupied = [b for b, n in counts.items() if n]
    if not occupied:
        return EMPTY_HISTOGRAM
    lo, hi = min(occupied), max(occupied)
    packed = struct.pack(f"<{hi - lo + 1}q", *(counts.get(b, 0) for b in range(lo, hi + 1)))
    return pack_histogram(lo, packed, min(low, delta.low), max(high, delta.high))


@dataclass(slots=True)
class Deltas:
    """Counter increments, summed per key."""

    values: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    # Histogram increments per (hour, channel, stat).
    hist: dict[Key, HistogramDelta] = field(default_factory=dict)
    # Customer messages that got their first agent reply: (message id, when).
    replied: list[tuple[str, float]] = field(default_factory=list)

    def add(self, t: float, channel: str, name: str, value: float = 1.0) -> None:
        self.values[(hour_of(t), channel, name)] += value

    def sample(self, t: float, channel: str, stat: str, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.add(t, channel, f"{stat}.n")
        self.add(t, channel, f"{stat}.sum", seconds)
        key = (hour_of(t), channel, stat)
        delta = self.hist.get(key)
        if delta is None:
            delta = self.hist[key] = HistogramDelta()
        delta.add(seconds)

    def merge(self, other: Deltas) -> None:
        for k, v in other.values.items():
            self.values[k] += v
        for k, delta in other.hist.items():
            mine = self.hist.get(k)
            if mine is None:
                mine = self.hist[k] = HistogramDelta()
            mine.merge(delta)
        self.replied.extend(other.replied)

    def __bool__(self) -> bool:
        return bool(self.values or self.replied)


@dataclass(slots=True)
class _Handoff:
    requested_at: float
    skill: str | None = None  # the one it is in now: its hours run its SLA clocks
    assigned: bool = False
    first_reply_at: float | None = None
    ended: bool = False


# The layout of ConversationTally.snapshot(); one it does not know is
# replayed from the conversation's events instead.
SNAPSHOT_FORMAT = 1


class ConversationTally:
    """The incremental twin of metrics.replay for one conversation."""

    __slots__ = ("channel", "episode_start", "episode_handoffs", "last_tier", "handoff", "awaiting_bot",
                 "awaiting_human", "waiting_ratings", "rated")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.episode_start: float | None = None
        self.episode_handoffs = 0
        self.last_tier = Tier.BOT  # of the episode going on, or of the last one
        # Ratings given during the episode going on: counted when it ends,
        # for the tier that ends it.
        self.waiting_ratings: list[int] = []
        self.handoff: _Handoff | None = None
        self.awaiting_bot: dict[str, float] = {}
        # (message id, received at, after the handoff's first reply)
        self.awaiting_human: list[tuple[str | None, float, bool]] = []
        # The episode's counted rating (when, tier, value), taken back if replaced.
        self.rated: tuple[float, str, int] | None = None

    def apply(self, e: TrackerEvent, sla: SLA, out: Deltas) -> None:
        ch = self.channel
        kind = e.kind
        if kind is EventKind.MESSAGE_RECEIVED:
            if self.episode_start is None:
                self.episode_start = e.at
                self.episode_handoffs = 0
                self.last_tier = Tier.BOT
                self.waiting_ratings = []
                self.rated = None
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
                self._replied(received, e.at - received, "bot", sla.bot_seconds, out)
        elif kind is EventKind.HANDOFF_REQUESTED:
            self.handoff = _Handoff(requested_at=e.at, skill=str(e.data.get("skill", "")))
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
                out.sample(h.requested_at, ch, "human.queue_wait",
                           sla.elapsed(Tier.HUMAN, h.skill, h.requested_at, e.at))
        elif kind is EventKind.AGENT_REPLIED:
            h = self.handoff
            skill = h.skill if h is not None else None
            for message_id, received, after in self.awaiting_human:
                rt = sla.elapsed(Tier.HUMAN, skill, received, e.at)
                self._replied(received, rt, "human", sla.human_seconds, out)
                if after:
                    out.sample(received, ch, "human.interval", rt)
                if message_id:
                    out.replied.append((message_id, e.at))
            self.awaiting_human.clear()
            if h is not None and h.first_reply_at is None:
                h.first_reply_at = e.at
                first = sla.elapsed(Tier.HUMAN, h.skill, h.requested_at, e.at)
                out.sample(h.requested_at, ch, "human.first", first)
                if first <= sla.human_first_response_seconds:
                    out.add(h.requested_at, ch, "human.first_within")
        elif kind is EventKind.TRANSFERRED:
            if self.handoff is not None:
                self.handoff.skill = str(e.data.get("skill") or self.handoff.skill)
        elif kind is EventKind.RESOLVED:
            h = self.handoff
            if h is not None and not h.ended:
                h.ended = True
                if e.data.get("abandoned"):
                    out.add(h.requested_at, ch, "human.abandoned")
                elif resolves(e):
                    out.sample(h.requested_at, ch, "human.resolution", e.at - h.requested_at)
            if self.episode_start is not None and self.episode_handoffs == 0:
                out.add(self.episode_start, ch, "bot.contained")
                out.sample(self.episode_start, ch, "bot.resolution", e.at - self.episode_start)
            for rating in self.waiting_ratings:
                self._rated(rating, e.at, out)
            self.waiting_ratings = []
            self.episode_start = None
            self.handoff = None
            self.awaiting_bot.clear()
            self.awaiting_human.clear()
        elif kind is EventKind.FEEDBACK:
            rating = e.data.get("rating")
            if rating is None:
                pass
            elif self.episode_start is not None:
                # Counted when the episode ends; one that replaces another
                # (one rating per episode) takes its place.
                if e.data.get("replaces") is not None and self.waiting_ratings:
                    self.waiting_ratings.pop()
                self.waiting_ratings.append(int(rating))
            else:  # after the end, before any reopening: the episode that ended
                if e.data.get("replaces") is not None and self.rated is not None:
                    # Taken back in the hour it was counted in.
                    at, tier, old = self.rated
                    out.add(at, ch, f"{tier}.ratings", -1)
                    if old >= 4:
                        out.add(at, ch, f"{tier}.ratings_good", -1)
                self._rated(int(rating), e.at, out)

    def snapshot(self) -> list[Any]:
        """The tally's state as plain JSON values, stored with the conversation
        at each change: an instance that reads the conversation (to load it,
        or because another instance changed it) takes it from there instead
        of replaying the conversation's events."""
        h = self.handoff
        return [
            SNAPSHOT_FORMAT, self.episode_start, self.episode_handoffs, self.last_tier.value,
            None if h is None else [h.requested_at, h.skill, h.assigned, h.first_reply_at, h.ended],
            dict(self.awaiting_bot), [list(x) for x in self.awaiting_human], list(self.waiting_ratings),
            None if self.rated is None else list(self.rated),
        ]

    @classmethod
    def restore(cls, channel: str, snapshot: Any) -> ConversationTally | None:
        """The tally a snapshot holds, or None if it is not one this version
        writes (the caller replays the events instead)."""
        if not isinstance(snapshot, list) or len(snapshot) != 9 or snapshot[0] != SNAPSHOT_FORMAT:
            return None
        _, start, handoffs, last_tier, h, awaiting_bot, awaiting_human, waiting, rated = snapshot
        tally = cls(channel)
        tally.episode_start = start
        tally.episode_handoffs = handoffs
        tally.last_tier = Tier(last_tier)
        tally.handoff = None if h is None else _Handoff(*h)
        tally.awaiting_bot = dict(awaiting_bot)
        tally.awaiting_human = [(m, at, after) for m, at, after in awaiting_human]
        tally.waiting_ratings = list(waiting)
        tally.rated = None if rated is None else (rated[0], rated[1], rated[2])
        return tally

    def _rated(self, rating: int, at: float, out: Deltas) -> None:
        tier = self.last_tier.value
        out.add(at, self.channel, f"{tier}.ratings")
        if rating >= 4:
            out.add(at, self.channel, f"{tier}.ratings_good")
        self.rated = (at, tier, rating)

    def _replied(self, received: float, rt: float, tier: str, sla_seconds: float, out: Deltas) -> None:
        """``rt``: the response time on the tier's SLA clock."""
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

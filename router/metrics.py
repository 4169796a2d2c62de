"""Tiered response metrics, computed by replaying the tracker's events.

Definitions follow docs/metrics.md (the product's spec): a customer message
belongs to the bot tier if the bot answered it and to the human tier if it
caused a handoff or arrived while a person held or was due to hold the
conversation. Every ratio carries its numerator and denominator and every
duration statistic its count and sum, so ranges can be added up correctly.

The replay is the reference implementation: faster paths (rollups) must
agree with it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .business_hours import Schedule
from .model import Tier
from .tracker import EndedBy, EventKind, TrackerEvent

GroupBy = Literal["tier", "skill", "agent", "channel"]
Bucket = Literal["hour", "day"] | None


@dataclass(frozen=True, slots=True)
class SLA:
    bot_seconds: float = 2.0
    human_seconds: float = 60.0
    human_first_response_seconds: float = 60.0
    # Per skill, business hours: the human tier's SLA clocks (response time,
    # first response, queue wait) count only the time the skill is open.
    # Those of the rules in effect when the figure is computed.
    hours: Schedule = field(default_factory=Schedule)

    def elapsed(self, tier: Tier, skill: str | None, a: float, b: float) -> float:
        """How much of [a, b) a tier's SLA clock counts: all of it for the
        bot, the skill's business time for the human tier."""
        return max(0.0, b - a) if tier is Tier.BOT else self.hours.elapsed(skill, a, b)

    def for_tier(self, tier: Tier) -> float:
        return self.bot_seconds if tier is Tier.BOT else self.human_seconds


# ---------------------------------------------------------------- replay facts
@dataclass(slots=True)
class _HandoffFact:
    id: str
    channel: str
    requested_at: float
    reason: str
    skill: str
    agent: str | None = None  # holding it now (or when it ended)
    first_agent: str | None = None  # took it from the queue: its queue wait
    assigned_at: float | None = None
    first_reply_at: float | None = None
    first_reply_by: str | None = None  # sent the first response
    # The SLA clocks (business time of the skill it was in then).
    queue_wait: float | None = None
    first_response: float | None = None
    ended_at: float | None = None
    # Resolved (by an agent, or the customer's "resolved"), as opposed to
    # ended by the customer leaving or the idle timeout: only a resolution
    # has a resolution time.
    resolved: bool = False
    resolved_by: str | None = None
    abandoned: bool = False


@dataclass(slots=True)
class _MessageFact:
    tier: Tier
    channel: str
    received_at: float
    handoff: _HandoffFact | None = None
    after_first_reply: bool = False
    replied_at: float | None = None
    replied_by: str | None = None
    # On the tier's SLA clock (business time for the human tier).
    response_time: float | None = None

    def skill(self) -> str | None:
        return None if self.handoff is None else self.handoff.skill


@dataclass(slots=True)
class _Episode:
    """A conversation from its first message (or reopening) to its end."""

    channel: str
    started_at: float
    handoffs: list[_HandoffFact] = field(default_factory=list)
    ended_at: float | None = None
    # Ratings given while it is open wait for its end (the spec attributes a
    # rating to the tier that ended the episode, when it ends).
    waiting_ratings: list[int] = field(default_factory=list)

    @property
    def tier(self) -> Tier:
        """The tier that ends it: a hand-back to the bot is a resolution, so
        an episode with a handoff ends in the human tier."""
        return Tier.HUMAN if self.handoffs else Tier.BOT


@dataclass(slots=True)
class _Rating:
    # When it counts: the episode's end for a rating given before it, else
    # when it was given (a rating after the end, before any reopening).
    at: float
    rating: int
    episode: _Episode
    tier: Tier  # the tier that ended the episode


@dataclass(slots=True)
class _Replay:
    messages: list[_MessageFact] = field(default_factory=list)
    handoffs: list[_HandoffFact] = field(default_factory=list)
    episodes: list[_Episode] = field(default_factory=list)
    ratings: list[_Rating] = field(default_factory=list)


@dataclass(slots=True)
class _ConversationState:
    channel: str
    episode: _Episode | None = None
    handoff: _HandoffFact | None = None
    unlinked_human: list[_MessageFact] = field(default_factory=list)
    awaiting_bot: dict[str, _MessageFact] = field(default_factory=dict)
    awaiting_human: list[_MessageFact] = field(default_factory=list)
    last_episode: _Episode | None = None


def replay(events: Iterable[TrackerEvent], sla: SLA | None = None) -> _Replay:
    """Turn the event log (ordered by time, then log order) into facts;
    durations on ``sla``'s clocks (business hours)."""
    sla = sla or SLA()
    out = _Replay()
    states: dict[str, _ConversationState] = {}
    for e in events:
        st = states.get(e.conversation_id)
        if st is None:
            st = states[e.conversation_id] = _ConversationState(channel=e.channel_id)
        kind = e.kind
        if kind is EventKind.MESSAGE_RECEIVED:
            if st.episode is None:
                st.episode = _Episode(channel=st.channel, started_at=e.at)
                st.last_episode = st.episode
                out.episodes.append(st.episode)
            tier = Tier(e.data.get("tier", "bot"))
            fact = _MessageFact(tier=tier, channel=st.channel, received_at=e.at)
            out.messages.append(fact)
            if tier is Tier.BOT:
                if e.message_id:
                    st.awaiting_bot[e.message_id] = fact
            else:
                if st.handoff is not None:
                    fact.handoff = st.handoff
                    fact.after_first_reply = st.handoff.first_reply_at is not None
                else:
                    st.unlinked_human.append(fact)
                st.awaiting_human.append(fact)
        elif kind is EventKind.BOT_ANSWERED:
            fact = st.awaiting_bot.pop(str(e.data.get("in_reply_to")), None)
            if fact is not None and fact.replied_at is None:
                fact.replied_at = e.at
                fact.response_time = e.at - fact.received_at
        elif kind is EventKind.HANDOFF_REQUESTED:
            h = _HandoffFact(id=e.handoff_id or "", channel=st.channel, requested_at=e.at,
                             reason=str(e.data.get("reason", "other")), skill=str(e.data.get("skill", "")))
            out.handoffs.append(h)
            st.handoff = h
            if st.episode is None:  # pragma: no cover - a handoff always follows a message
                st.episode = _Episode(channel=st.channel, started_at=e.at)
                out.episodes.append(st.episode)
            st.episode.handoffs.append(h)
            for fact in st.unlinked_human:
                fact.handoff = h
            st.unlinked_human.clear()
        elif kind is EventKind.ASSIGNED:
            if st.handoff is not None:
                st.handoff.agent = e.agent_id
                if st.handoff.assigned_at is None:
                    st.handoff.assigned_at = e.at
                    st.handoff.first_agent = e.agent_id
                    st.handoff.queue_wait = sla.elapsed(Tier.HUMAN, st.handoff.skill, st.handoff.requested_at, e.at)
        elif kind is EventKind.AGENT_REPLIED:
            for fact in st.awaiting_human:
                fact.replied_at = e.at
                fact.replied_by = e.agent_id
                fact.response_time = sla.elapsed(Tier.HUMAN, fact.skill(), fact.received_at, e.at)
            st.awaiting_human.clear()
            if st.handoff is not None and st.handoff.first_reply_at is None:
                st.handoff.first_reply_at = e.at
                st.handoff.first_reply_by = e.agent_id
                st.handoff.first_response = sla.elapsed(Tier.HUMAN, st.handoff.skill, st.handoff.requested_at, e.at)
        elif kind is EventKind.TRANSFERRED:
            if st.handoff is not None:
                st.handoff.skill = str(e.data.get("skill") or st.handoff.skill)
                st.handoff.agent = None
        elif kind is EventKind.REQUEUED:  # its agent went away: back in the queue, held by nobody
            if st.handoff is not None:
                st.handoff.agent = None
        elif kind is EventKind.RESOLVED:
            h = st.handoff
            if h is not None and h.ended_at is None:
                h.ended_at = e.at
                h.abandoned = bool(e.data.get("abandoned"))
                h.resolved = resolves(e)
                if h.resolved:
                    h.resolved_by = e.agent_id or h.agent
            if st.episode is not None:
                ep = st.episode
                ep.ended_at = e.at
                out.ratings += [_Rating(at=e.at, rating=r, episode=ep, tier=ep.tier) for r in ep.waiting_ratings]
                ep.waiting_ratings.clear()
            st.episode = None
            st.handoff = None
            st.awaiting_bot.clear()
            st.awaiting_human.clear()
            st.unlinked_human.clear()
        elif kind is EventKind.FEEDBACK:
            rating = e.data.get("rating")
            if rating is None:
                pass
            elif st.episode is not None:
                # Counted when the episode ends. One rating per episode: one
                # that replaces another (the event says so) takes its place.
                waiting = st.episode.waiting_ratings
                if e.data.get("replaces") is not None and waiting:
                    waiting.pop()
                waiting.append(int(rating))
            elif st.last_episode is not None:  # after the end, before any reopening
                ep = st.last_episode
                if e.data.get("replaces") is not None:
                    for i in range(len(out.ratings) - 1, -1, -1):
                        if out.ratings[i].episode is ep:
                            del out.ratings[i]
                            break
                out.ratings.append(_Rating(at=e.at, rating=int(rating), episode=ep, tier=ep.tier))
    return out


# How a conversation ended, from its `resolved` event: by an agent, or by the
# customer's "resolved" feedback, it was resolved; by the customer leaving or
# the idle timeout it merely ended (spec: "a handoff whose conversation ended
# — customer left, idle timeout — is not resolved and is left out").
RESOLVING = frozenset({EndedBy.AGENT.value, EndedBy.FEEDBACK.value})


def resolves(e: TrackerEvent) -> bool:
    return e.data.get("by") in RESOLVING


# ---------------------------------------------------------------- aggregation
def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return sorted_values[lo]
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def duration_stats(values: list[float]) -> dict[str, Any]:
    values = sorted(values)
    total = sum(values)
    n = len(values)
    return {
        "count": n,
        "sum": round(total, 6),
        "avg": round(total / n, 6) if n else None,
        "p50": _round(percentile(values, 0.5)),
        "p90": _round(percentile(values, 0.9)),
    }


def ratio(numerator: int, denominator: int) -> dict[str, Any]:
    return {
        "value": round(numerator / denominator, 6) if denominator else None,
        "numerator": numerator,
        "denominator": denominator,
    }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def bucket_start(t: float, bucket: Bucket) -> float | None:
    if bucket is None:
        return None
    size = 3600 if bucket == "hour" else 86400
    return math.floor(t / size) * size


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Group:
    bot_messages: list[_MessageFact] = field(default_factory=list)
    human_messages: list[_MessageFact] = field(default_factory=list)
    # Handoffs for their count, reasons and abandonment; and for each of
    # their durations, which by agent may go to different groups.
    handoffs: list[_HandoffFact] = field(default_factory=list)
    first_responses: list[_HandoffFact] = field(default_factory=list)
    queue_waits: list[_HandoffFact] = field(default_factory=list)
    resolutions: list[_HandoffFact] = field(default_factory=list)
    episodes: list[_Episode] = field(default_factory=list)
    ratings: list[_Rating] = field(default_factory=list)


# What the group whose key is null holds, by grouping (docs/metrics.md).
NO_KEY_LABELS = {
    "skill": "no skill (bot tier)",
    "agent": "no agent (bot tier, and handoffs no agent took or answered)",
    "channel": "no channel",
}


def group_label(group_by: str, key: str | None, names: Mapping[str, str] | None = None) -> str:
    """A group's name for people: the agent's or channel's name, the skill."""
    if group_by == "tier":
        return "all"
    if key is None:
        return NO_KEY_LABELS[group_by]
    return (names or {}).get(key, key)


def _message_key(m: _MessageFact, group_by: GroupBy) -> str | None:
    if group_by == "channel":
        return m.channel
    if m.tier is Tier.BOT or m.handoff is None:
        return None
    if group_by == "skill":
        return m.handoff.skill
    if group_by == "agent":
        # The agent whose reply answered it; unanswered, the one holding it.
        return m.replied_by or m.handoff.agent
    return None


def _handoff_key(h: _HandoffFact, group_by: GroupBy, agent: str | None) -> str | None:
    """``agent``: the one credited with the figure at hand (spec: "each
    figure goes to the agent who did it")."""
    return {"channel": h.channel, "skill": h.skill, "agent": agent}.get(group_by)


def _episode_key(ep: _Episode, group_by: GroupBy) -> str | None:
    if group_by == "channel":
        return ep.channel
    if not ep.handoffs:
        return None
    last = ep.handoffs[-1]
    # The agent who ended it (or holds it now): ratings go to whoever ended
    # the episode, as they go to the tier that ended it.
    return _handoff_key(last, group_by, last.resolved_by or last.agent)


def report_header(*, start: float, end: float, now: float, sla: SLA, group_by: str, bucket: Bucket,
                  percentile_error: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """What every report says about itself, however it was computed.
    ``percentile_error``: how far p50 and p90 may be from the exact figure,
    relative and in seconds (the larger of the two applies); 0 when exact."""
    return {
        "from": _iso(start),
        "to": _iso(end),
        "generated_at": _iso(now),
        "group_by": group_by,
        "bucket": bucket,
        "sla": {
            "bot_seconds": sla.bot_seconds,
            "human_seconds": sla.human_seconds,
            "human_first_response_seconds": sla.human_first_response_seconds,
        },
        "percentile_error": {"relative": percentile_error[0], "seconds": percentile_error[1]},
    }


def compute(
    events: Iterable[TrackerEvent],
    *,
    start: float,
    end: float,
    now: float,
    sla: SLA = SLA(),
    group_by: GroupBy = "tier",
    bucket: Bucket = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Metrics for what started in [start, end): messages received, handoffs
    requested, conversations started, and ratings counted (at their episode's
    end) in the range. ``names``: agents' or channels' names by id, for the
    groups' labels."""
    facts = replay(events, sla)
    groups: dict[tuple[str | None, float | None], _Group] = defaultdict(_Group)

    def inside(t: float) -> bool:
        return start <= t < end

    for m in facts.messages:
        if inside(m.received_at):
            g = groups[(_message_key(m, group_by), bucket_start(m.received_at, bucket))]
            (g.bot_messages if m.tier is Tier.BOT else g.human_messages).append(m)
    for h in facts.handoffs:
        if not inside(h.requested_at):
            continue
        b = bucket_start(h.requested_at, bucket)
        # By agent: the handoff itself and its queue wait to the agent who
        # first took it, its first response to the agent who sent it (or who
        # holds it unanswered), its resolution to the agent who resolved it.
        groups[(_handoff_key(h, group_by, h.first_agent), b)].handoffs.append(h)
        if h.assigned_at is not None:
            groups[(_handoff_key(h, group_by, h.first_agent), b)].queue_waits.append(h)
        groups[(_handoff_key(h, group_by, h.first_reply_by or h.agent), b)].first_responses.append(h)
        if h.resolved:
            groups[(_handoff_key(h, group_by, h.resolved_by), b)].resolutions.append(h)
    for ep in facts.episodes:
        if inside(ep.started_at):
            groups[(_episode_key(ep, group_by), bucket_start(ep.started_at, bucket))].episodes.append(ep)
    for r in facts.ratings:
        if inside(r.at):
            groups[(_episode_key(r.episode, group_by), bucket_start(r.at, bucket))].ratings.append(r)

    def sort_key(item: tuple[tuple[str | None, float | None], _Group]) -> tuple[str, float]:
        (key, b), _ = item
        return (key or "", b or 0.0)

    out_groups = []
    for (key, b), g in sorted(groups.items(), key=sort_key):
        out_groups.append({
            "key": {} if group_by == "tier" else {group_by: key},
            "label": group_label(group_by, key, names),
            "bucket": _iso(b),
            "bot": _bot_figures(g, sla, now),
            "human": _human_figures(g, sla, now),
        })
    if not out_groups:
        out_groups.append({"key": {}, "label": "all", "bucket": None, "bot": _bot_figures(_Group(), sla, now),
                           "human": _human_figures(_Group(), sla, now)})
    return {
        **report_header(start=start, end=end, now=now, sla=sla, group_by=group_by, bucket=bucket),
        "groups": out_groups,
    }


def _message_figures(messages: list[_MessageFact], sla: SLA, tier: Tier, now: float) -> dict[str, Any]:
    sla_seconds = sla.for_tier(tier)
    replied = [m.response_time for m in messages if m.response_time is not None]
    within = sum(1 for t in replied if t <= sla_seconds)
    # Due once a reply arrived or the SLA has *passed*: at the deadline itself
    # a reply could still land within it (replies at exactly the SLA count as
    # within), so the message is still pending.
    due = sum(1 for m in messages
              if m.replied_at is not None or sla.elapsed(tier, m.skill(), m.received_at, now) > sla_seconds)
    return {
        "messages": len(messages),
        "pending": len(messages) - due,
        "response_rate_within_sla": ratio(within, due),
        "response_time": duration_stats(replied),  # type: ignore[arg-type]
    }


def _satisfaction(ratings: list[_Rating], tier: Tier) -> dict[str, Any]:
    given = [r for r in ratings if r.tier is tier]
    return ratio(sum(1 for r in given if r.rating >= 4), len(given))


def _bot_figures(g: _Group, sla: SLA, now: float) -> dict[str, Any]:
    figures = _message_figures(g.bot_messages, sla, Tier.BOT, now)
    contained = [ep for ep in g.episodes if ep.ended_at is not None and not ep.handoffs]
    figures["conversations_started"] = len(g.episodes)
    figures["containment"] = ratio(len(contained), len(g.episodes))
    figures["resolution_time"] = duration_stats([ep.ended_at - ep.started_at for ep in contained])  # type: ignore[operator]
    figures["satisfaction"] = _satisfaction(g.ratings, Tier.BOT)
    return figures


def _human_figures(g: _Group, sla: SLA, now: float) -> dict[str, Any]:
    figures = _message_figures(g.human_messages, sla, Tier.HUMAN, now)
    hs = g.handoffs
    first_sla = sla.human_first_response_seconds
    first = [h.first_response for h in g.first_responses if h.first_response is not None]
    # As for messages: due once answered or past the SLA; before that pending.
    first_pending = sum(1 for h in g.first_responses if h.first_reply_at is None
                        and sla.elapsed(Tier.HUMAN, h.skill, h.requested_at, now) <= first_sla)
    reasons: dict[str, int] = defaultdict(int)
    for h in hs:
        reasons[h.reason] += 1
    interval = [m.response_time for m in g.human_messages if m.after_first_reply and m.response_time is not None]
    figures["handoffs"] = len(hs)
    figures["handoff_rate"] = ratio(sum(len(ep.handoffs) for ep in g.episodes), len(g.episodes))
    figures["handoff_reasons"] = dict(sorted(reasons.items()))
    figures["first_response_time"] = duration_stats(first)
    figures["first_response_within_sla"] = ratio(
        sum(1 for t in first if t <= first_sla), len(g.first_responses) - first_pending
    )
    figures["first_response_pending"] = first_pending
    figures["reply_interval"] = duration_stats(interval)  # type: ignore[arg-type]
    figures["queue_wait"] = duration_stats([h.queue_wait for h in g.queue_waits])  # type: ignore[misc]
    figures["resolution_time"] = duration_stats([h.ended_at - h.requested_at for h in g.resolutions])  # type: ignore[operator]
    figures["abandonment"] = ratio(sum(1 for h in hs if h.abandoned), len(hs))
    figures["satisfaction"] = _satisfaction(g.ratings, Tier.HUMAN)
    return figures

"""Tiered metrics by event replay, checked against the product's spec
(/work/shared/specs/metrics.md, restated in docs/metrics.md).

Every test builds an exact timeline of TrackerEvents, the way the Desk
writes them, and asserts the figures with their numerators, denominators
and sample counts.
"""

from __future__ import annotations

from typing import Any

import pytest

from router import rollups
from router.metrics import SLA, compute, percentile
from router.tracker import EventKind, TrackerEvent

from .test_rollups import assert_same, report_via_rollups

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, on an hour boundary
HOUR = 3600.0


class Timeline:
    """The events of one conversation, written as the Desk writes them."""

    def __init__(self, conversation_id: str = "c1", channel_id: str = "web") -> None:
        self.cid = conversation_id
        self.channel = channel_id
        self.events: list[TrackerEvent] = []
        self._n = 0
        self.handoff_id: str | None = None
        self.agent: str | None = None

    def _e(self, kind: EventKind, t: float, **kw: Any) -> None:
        self.events.append(TrackerEvent(kind, T0 + t, self.channel, self.cid, **kw))

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{self.cid}-{prefix}{self._n}"

    def asked(self, t: float, *, answered_at: float | None = None) -> str:
        """A customer message the bot answers (answered_at defaults to t)."""
        mid = self._id("m")
        self._e(EventKind.MESSAGE_RECEIVED, t, message_id=mid, data={"tier": "bot"})
        self._e(EventKind.BOT_ANSWERED, t if answered_at is None else answered_at, message_id=self._id("r"),
                data={"in_reply_to": mid, "faq_id": "faq", "confidence": 0.9})
        return mid

    def human_message(self, t: float) -> str:
        mid = self._id("m")
        self._e(EventKind.MESSAGE_RECEIVED, t, message_id=mid, handoff_id=self.handoff_id, agent_id=self.agent,
                data={"tier": "human"})
        return mid

    def handoff(self, t: float, reason: str = "customer_asked", skill: str = "general") -> str:
        """A customer message that causes a handoff, then the handoff, queued."""
        self.human_message(t)
        self.handoff_id = self._id("h")
        self.agent = None
        self._e(EventKind.HANDOFF_REQUESTED, t, handoff_id=self.handoff_id, data={"reason": reason, "skill": skill})
        self._e(EventKind.QUEUED, t, handoff_id=self.handoff_id, data={"skill": skill})
        return self.handoff_id

    def assigned(self, t: float, agent: str) -> None:
        self.agent = agent
        self._e(EventKind.ASSIGNED, t, handoff_id=self.handoff_id, agent_id=agent)

    def agent_replies(self, t: float) -> None:
        self._e(EventKind.AGENT_REPLIED, t, message_id=self._id("a"), handoff_id=self.handoff_id,
                agent_id=self.agent)

    def transferred(self, t: float, skill: str) -> None:
        self._e(EventKind.TRANSFERRED, t, handoff_id=self.handoff_id, agent_id=self.agent,
                data={"skill": skill, "to_agent": None})
        self.agent = None
        self._e(EventKind.QUEUED, t, handoff_id=self.handoff_id, data={"skill": skill})

    def resolved(self, t: float, by: str = "agent") -> None:
        data: dict[str, Any] = {"by": by}
        if self.handoff_id is not None:
            # What the Desk records: ended by the customer or idleness before
            # any agent reply is an abandoned handoff.
            replied = any(e.kind is EventKind.AGENT_REPLIED and e.handoff_id == self.handoff_id
                          for e in self.events)
            data["abandoned"] = not replied and by in ("customer", "idle")
        self._e(EventKind.RESOLVED, t, handoff_id=self.handoff_id, agent_id=self.agent, data=data)
        self.handoff_id = None
        self.agent = None

    def reopened(self, t: float) -> None:
        self._e(EventKind.REOPENED, t)

    def feedback(self, t: float, rating: int | None, resolved: bool = False, replaces: int | None = None) -> None:
        data: dict[str, Any] = {"rating": rating, "resolved": resolved}
        if replaces is not None:  # the Desk's mark of a changed rating (one per episode)
            data["replaces"] = replaces
        self._e(EventKind.FEEDBACK, t, handoff_id=self.handoff_id, data=data)
        if resolved:
            self.resolved(t, by="feedback")


def merged(*timelines: Timeline) -> list[TrackerEvent]:
    """All events by time, then log order (what events_between returns)."""
    events = [e for tl in timelines for e in tl.events]
    return sorted(events, key=lambda e: e.at)  # sort is stable: log order within a timestamp


def report(events: list[TrackerEvent], *, start: float = 0.0, end: float = HOUR, now: float = HOUR,
           **kw: Any) -> dict[str, Any]:
    return compute(events, start=T0 + start, end=T0 + end, now=T0 + now, **kw)


def both(events: list[TrackerEvent], *, start: float = 0.0, end: float = HOUR, now: float = HOUR,
         **kw: Any) -> dict[str, Any]:
    """The replay's report, checked against the rollups' (whole hours, the
    default SLAs): the two paths must agree on every figure."""
    exact = report(events, start=start, end=end, now=now, **kw)
    assert start % HOUR == 0 and end % HOUR == 0
    assert_same(exact, report_via_rollups(events, T0 + start, T0 + end, T0 + now, kw.get("group_by", "tier"),
                                          kw.get("bucket")))
    return exact


def only_group(r: dict[str, Any]) -> dict[str, Any]:
    assert len(r["groups"]) == 1, r["groups"]
    return r["groups"][0]


def stats(d: dict[str, Any]) -> tuple[int, float | None]:
    return d["count"], d["avg"]


def rate(d: dict[str, Any]) -> tuple[int, int]:
    return d["numerator"], d["denominator"]


# ------------------------------------------------------------ worked example
def worked_example() -> Timeline:
    tl = Timeline()
    tl.asked(0, answered_at=0.3)  # m1 "how do I reset my password"
    tl.handoff(20, reason="customer_asked")  # m2 "that didn't work, I want a person"
    tl.assigned(50, "ann")
    tl.agent_replies(80)
    tl.human_message(90)  # m3
    tl.human_message(95)  # m4
    tl.agent_replies(130)
    tl.resolved(200)
    return tl


def test_spec_worked_example_every_figure() -> None:
    r = report(merged(worked_example()))
    g = only_group(r)
    assert g["key"] == {} and g["bucket"] is None
    bot, human = g["bot"], g["human"]

    # Bot: 1 message, rate 1/1, 0.3 s.
    assert bot["messages"] == 1
    assert bot["pending"] == 0
    assert rate(bot["response_rate_within_sla"]) == (1, 1)
    assert bot["response_rate_within_sla"]["value"] == 1.0
    assert bot["response_time"] == {"count": 1, "sum": 0.3, "avg": 0.3, "p50": 0.3, "p90": 0.3}
    assert bot["conversations_started"] == 1
    assert rate(bot["containment"]) == (0, 1)
    assert bot["containment"]["value"] == 0.0
    assert bot["resolution_time"]["count"] == 0  # the bot did not keep it
    assert rate(bot["satisfaction"]) == (0, 0) and bot["satisfaction"]["value"] is None

    # Human: m2, m3, m4 answered in 60, 40, 35 s, all due and within 60 s.
    assert human["messages"] == 3
    assert human["pending"] == 0
    assert rate(human["response_rate_within_sla"]) == (3, 3)
    assert human["response_time"] == {"count": 3, "sum": 135.0, "avg": 45.0, "p50": 40.0, "p90": 56.0}
    assert human["first_response_time"] == {"count": 1, "sum": 60.0, "avg": 60.0, "p50": 60.0, "p90": 60.0}
    assert rate(human["first_response_within_sla"]) == (1, 1)
    assert human["queue_wait"] == {"count": 1, "sum": 30.0, "avg": 30.0, "p50": 30.0, "p90": 30.0}
    assert human["reply_interval"]["count"] == 2
    assert human["reply_interval"]["sum"] == 75.0
    assert human["reply_interval"]["avg"] == 37.5
    assert human["resolution_time"] == {"count": 1, "sum": 180.0, "avg": 180.0, "p50": 180.0, "p90": 180.0}
    assert human["handoffs"] == 1
    assert rate(human["handoff_rate"]) == (1, 1)
    assert human["handoff_reasons"] == {"customer_asked": 1}
    assert rate(human["abandonment"]) == (0, 1)

    # The report says what it was computed with.
    assert r["from"] == "2026-01-01T00:00:00Z" and r["to"] == "2026-01-01T01:00:00Z"
    assert r["sla"] == {"bot_seconds": 2.0, "human_seconds": 60.0, "human_first_response_seconds": 60.0}


def test_worked_example_with_tighter_slas_counts_late_replies_against() -> None:
    sla = SLA(bot_seconds=0.2, human_seconds=38.0, human_first_response_seconds=59.0)
    g = only_group(report(merged(worked_example()), sla=sla))
    assert rate(g["bot"]["response_rate_within_sla"]) == (0, 1)  # 0.3 s > 0.2 s
    assert rate(g["human"]["response_rate_within_sla"]) == (1, 3)  # only m4's 35 s
    assert rate(g["human"]["first_response_within_sla"]) == (0, 1)  # 60 s > 59 s


def test_percentiles_interpolate_linearly_like_numpy() -> None:
    assert percentile([35.0, 40.0, 60.0], 0.5) == 40.0
    assert percentile([35.0, 40.0, 60.0], 0.9) == pytest.approx(56.0)
    assert percentile([1.0, 2.0], 0.5) == 1.5
    assert percentile([], 0.5) is None


# ------------------------------------------------------------ pending vs due
def test_unanswered_message_inside_its_sla_is_pending_and_left_out_of_the_rate() -> None:
    tl = Timeline()
    tl.handoff(100)
    tl.assigned(100, "ann")
    events = merged(tl)

    inside = only_group(report(events, now=130))["human"]
    assert inside["messages"] == 1
    assert inside["pending"] == 1
    assert rate(inside["response_rate_within_sla"]) == (0, 0)
    assert inside["response_rate_within_sla"]["value"] is None
    assert rate(inside["first_response_within_sla"]) == (0, 0)

    # At the deadline itself a reply could still be within the SLA: pending.
    at_deadline = only_group(report(events, now=160))["human"]
    assert at_deadline["pending"] == 1
    assert rate(at_deadline["response_rate_within_sla"]) == (0, 0)

    overdue = only_group(report(events, now=160.5))["human"]
    assert overdue["pending"] == 0
    assert rate(overdue["response_rate_within_sla"]) == (0, 1)  # counts against
    assert overdue["response_time"]["count"] == 0  # no reply, no response time
    assert rate(overdue["first_response_within_sla"]) == (0, 1)


def test_a_reply_makes_a_message_due_even_inside_its_sla() -> None:
    tl = Timeline()
    tl.handoff(100)
    tl.assigned(100, "ann")
    tl.agent_replies(160)  # exactly at the SLA: within
    tl.human_message(170)  # not replied yet, inside its SLA at now=200
    human = only_group(report(merged(tl), now=200))["human"]
    assert human["messages"] == 2
    assert human["pending"] == 1
    assert rate(human["response_rate_within_sla"]) == (1, 1)


def test_late_reply_is_due_and_not_within() -> None:
    tl = Timeline()
    tl.handoff(0)
    tl.assigned(0, "ann")
    tl.agent_replies(61)
    human = only_group(report(merged(tl)))["human"]
    assert rate(human["response_rate_within_sla"]) == (0, 1)
    assert human["response_time"]["avg"] == 61.0
    assert rate(human["first_response_within_sla"]) == (0, 1)


# ------------------------------------------------------------------- bursts
def test_burst_before_one_reply_gives_each_message_its_own_response_time() -> None:
    tl = Timeline()
    tl.handoff(0)
    tl.assigned(0, "ann")
    tl.agent_replies(5)
    tl.human_message(10)
    tl.human_message(12)
    tl.human_message(15)
    tl.agent_replies(40)
    tl.agent_replies(41)  # a second reply does not answer them again
    human = only_group(report(merged(tl)))["human"]
    assert human["messages"] == 4
    assert human["response_time"]["count"] == 4
    assert human["response_time"]["sum"] == 5 + 30 + 28 + 25
    assert human["reply_interval"] == {"count": 3, "sum": 83.0, "avg": pytest.approx(83 / 3),
                                       "p50": 28.0, "p90": pytest.approx(29.6)}


def test_messages_while_queued_wait_for_the_first_agent_reply() -> None:
    tl = Timeline()
    tl.handoff(0)  # queued, nobody free
    tl.human_message(10)  # "hello?"
    tl.assigned(30, "ann")
    tl.agent_replies(45)
    human = only_group(report(merged(tl)))["human"]
    assert human["response_time"]["sum"] == 45 + 35
    # Neither came after the first agent reply: no reply-interval samples.
    assert human["reply_interval"]["count"] == 0
    assert human["first_response_time"]["avg"] == 45.0
    assert human["queue_wait"]["avg"] == 30.0


def test_bot_answer_then_handoff_keeps_the_answered_message_in_the_bot_tier() -> None:
    tl = Timeline()
    tl.asked(0, answered_at=0.5)
    tl.asked(10, answered_at=13)  # late bot answer: over the 2 s SLA
    tl.handoff(20, reason="repeated_miss")
    g = only_group(report(merged(tl), now=50))
    assert g["bot"]["messages"] == 2
    assert rate(g["bot"]["response_rate_within_sla"]) == (1, 2)
    assert g["bot"]["response_time"]["sum"] == 3.5
    assert g["human"]["messages"] == 1
    assert g["human"]["pending"] == 1


# ------------------------------------------------ several handoffs, episodes
def test_every_handoff_counts_when_a_conversation_is_handed_back_and_off_again() -> None:
    tl = Timeline()
    tl.handoff(0, reason="customer_asked", skill="general")
    tl.assigned(10, "ann")
    tl.agent_replies(20)
    tl.human_message(30)
    tl.agent_replies(40)
    tl.resolved(100)  # handed back: the bot holds the conversation again
    tl.reopened(200)
    tl.asked(200, answered_at=200.5)
    tl.handoff(300, reason="repeated_miss", skill="billing")
    # This message comes after ann's replies but before the second handoff's
    # first reply: it is not a reply-interval sample.
    tl.human_message(310)
    tl.assigned(330, "bob")
    tl.agent_replies(360)
    tl.human_message(370)
    tl.agent_replies(380)
    tl.resolved(500)
    g = only_group(report(merged(tl)))
    bot, human = g["bot"], g["human"]

    assert bot["conversations_started"] == 2  # two episodes
    assert rate(bot["containment"]) == (0, 2)
    assert bot["messages"] == 1
    assert human["handoffs"] == 2
    assert rate(human["handoff_rate"]) == (2, 2)
    assert human["handoff_reasons"] == {"customer_asked": 1, "repeated_miss": 1}
    assert human["first_response_time"]["count"] == 2
    assert human["first_response_time"]["sum"] == 20 + 60
    assert human["queue_wait"]["sum"] == 10 + 30
    assert human["resolution_time"]["sum"] == 100 + 200
    assert human["messages"] == 5
    assert human["response_time"]["sum"] == 20 + 10 + 60 + 50 + 10
    assert human["reply_interval"]["count"] == 2
    assert human["reply_interval"]["sum"] == 10 + 10


def test_bot_kept_episode_is_contained_and_timed_from_first_message_to_end() -> None:
    kept = Timeline("kept")
    kept.asked(0)
    kept.asked(30)
    kept.resolved(90, by="idle")
    handed = Timeline("handed")
    handed.handoff(5)
    ongoing = Timeline("ongoing")  # started, not ended: in the denominator only
    ongoing.asked(40)
    g = only_group(report(merged(kept, handed, ongoing)))
    assert g["bot"]["conversations_started"] == 3
    assert rate(g["bot"]["containment"]) == (1, 3)
    assert g["bot"]["resolution_time"] == {"count": 1, "sum": 90.0, "avg": 90.0, "p50": 90.0, "p90": 90.0}
    assert rate(g["human"]["handoff_rate"]) == (1, 3)


# --------------------------------------------------------------- abandonment
def test_abandoned_handoffs_count_and_stay_out_of_resolution_time() -> None:
    left = Timeline("left")
    left.handoff(0)
    left.resolved(40, by="customer")  # left before any agent reply
    idle = Timeline("idle")
    idle.handoff(0)
    idle.assigned(5, "ann")
    idle.resolved(1800, by="idle")
    served = Timeline("served")
    served.handoff(0)
    served.assigned(5, "ann")
    served.agent_replies(20)
    served.resolved(100, by="customer")  # replied first: not abandoned (nor resolved)
    g = only_group(both(merged(left, idle, served), end=2 * HOUR, now=2 * HOUR))
    human = g["human"]
    assert rate(human["abandonment"]) == (2, 3)
    assert human["resolution_time"]["count"] == 0
    assert human["queue_wait"]["count"] == 2  # "left" was never assigned
    # Abandoned handoffs never got a first reply: once overdue they count against.
    assert rate(human["first_response_within_sla"]) == (1, 3)
    assert rate(human["response_rate_within_sla"]) == (1, 3)


# -------------------------------------------------------------- satisfaction
def test_satisfaction_goes_to_the_tier_that_ended_the_conversation() -> None:
    bot_kept = Timeline("b")
    bot_kept.asked(0)
    bot_kept.feedback(10, rating=5, resolved=True)
    human_low = Timeline("h1")
    human_low.asked(0)
    human_low.handoff(10)
    human_low.assigned(10, "ann")
    human_low.agent_replies(20)
    human_low.feedback(30, rating=2, resolved=True)
    human_high = Timeline("h2")
    human_high.handoff(0)
    human_high.assigned(0, "ann")
    human_high.agent_replies(10)
    human_high.resolved(50)
    human_high.feedback(60, rating=4)  # given after the end: still that episode
    no_rating = Timeline("n")
    no_rating.asked(0)
    no_rating.feedback(5, rating=None, resolved=True)
    g = only_group(report(merged(bot_kept, human_low, human_high, no_rating)))
    assert rate(g["bot"]["satisfaction"]) == (1, 1)
    assert rate(g["human"]["satisfaction"]) == (1, 2)
    assert g["human"]["satisfaction"]["value"] == 0.5


def test_rating_after_reopening_goes_to_the_new_episode() -> None:
    tl = Timeline()
    tl.handoff(0)
    tl.assigned(0, "ann")
    tl.agent_replies(10)
    tl.resolved(20)
    tl.reopened(100)
    tl.asked(100)
    tl.feedback(110, rating=5, resolved=True)
    g = only_group(report(merged(tl)))
    assert rate(g["bot"]["satisfaction"]) == (1, 1)
    assert rate(g["human"]["satisfaction"]) == (0, 0)


# ---------------------------------------------------------------- group_by
def two_skills() -> list[TrackerEvent]:
    a = Timeline("a", channel_id="web")
    a.asked(0)
    a.handoff(10, skill="billing")
    a.assigned(10, "ann")
    a.agent_replies(30)
    a.resolved(60)
    b = Timeline("b", channel_id="sms")
    b.handoff(0, reason="needs_human", skill="tech")
    b.assigned(5, "bob")
    b.agent_replies(50)
    b.human_message(60)
    b.agent_replies(70)
    b.resolved(100)
    c = Timeline("c", channel_id="sms")
    c.asked(0)
    c.resolved(20, by="customer")
    return merged(a, b, c)


def by_key(r: dict[str, Any], name: str) -> dict[Any, dict[str, Any]]:
    return {g["key"].get(name): g for g in r["groups"]}


def test_group_by_skill() -> None:
    r = report(two_skills(), group_by="skill")
    groups = by_key(r, "skill")
    assert set(groups) == {None, "billing", "tech"}
    assert groups["billing"]["human"]["messages"] == 1
    assert groups["billing"]["human"]["first_response_time"]["avg"] == 20.0
    assert groups["tech"]["human"]["messages"] == 2
    assert groups["tech"]["human"]["handoff_reasons"] == {"needs_human": 1}
    assert groups["tech"]["human"]["queue_wait"]["avg"] == 5.0
    # Bot messages and bot-kept conversations belong to no skill.
    assert groups[None]["bot"]["messages"] == 2
    assert rate(groups[None]["bot"]["containment"]) == (1, 1)
    assert groups["billing"]["bot"]["messages"] == 0


def test_transfer_moves_the_handoff_to_the_new_skill() -> None:
    tl = Timeline("t")
    tl.handoff(0, skill="general")
    tl.assigned(0, "ann")
    tl.transferred(20, skill="billing")
    r = report(merged(tl), group_by="skill")
    assert set(by_key(r, "skill")) == {"billing"}


def test_group_by_channel() -> None:
    groups = by_key(report(two_skills(), group_by="channel"), "channel")
    assert set(groups) == {"web", "sms"}
    assert groups["web"]["bot"]["messages"] == 1
    assert groups["web"]["human"]["messages"] == 1
    assert groups["sms"]["bot"]["messages"] == 1
    assert groups["sms"]["human"]["messages"] == 2
    assert groups["sms"]["bot"]["conversations_started"] == 2
    assert rate(groups["sms"]["bot"]["containment"]) == (1, 2)
    assert rate(groups["sms"]["human"]["handoff_rate"]) == (1, 2)


def test_hour_buckets() -> None:
    early = Timeline("early")
    early.asked(10)
    late = Timeline("late")
    late.asked(HOUR + 10)
    late.asked(HOUR + 20)
    late.handoff(HOUR + 30)
    r = report(merged(early, late), end=2 * HOUR, now=2 * HOUR, bucket="hour")
    buckets = {g["bucket"]: g for g in r["groups"]}
    assert list(buckets) == ["2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"]
    assert buckets["2026-01-01T00:00:00Z"]["bot"]["messages"] == 1
    assert buckets["2026-01-01T01:00:00Z"]["bot"]["messages"] == 2
    assert buckets["2026-01-01T01:00:00Z"]["human"]["handoffs"] == 1
    assert r["bucket"] == "hour"
    # Ratios carry numerators and denominators, so buckets add up to the total.
    total = only_group(report(merged(early, late), end=2 * HOUR, now=2 * HOUR))
    assert sum(g["bot"]["conversations_started"] for g in r["groups"]) == total["bot"]["conversations_started"]


def test_empty_range_still_reports_zero_figures() -> None:
    g = only_group(report([]))
    assert g["bot"]["messages"] == 0
    assert rate(g["bot"]["containment"]) == (0, 0) and g["bot"]["containment"]["value"] is None
    assert g["human"]["handoffs"] == 0
    assert g["human"]["response_time"]["avg"] is None


# ---------------------------------------------------------- range boundaries
def test_range_is_half_open_on_received_time() -> None:
    tl = Timeline()
    tl.asked(-1)  # before the range
    tl.asked(0)  # at from: in
    tl.asked(99.5)  # in
    tl.asked(100)  # at to: out
    g = only_group(report(merged(tl), start=0, end=100, now=200))
    assert g["bot"]["messages"] == 2
    # The conversation started before the range: not counted as started here.
    assert g["bot"]["conversations_started"] == 0


def test_replies_after_the_range_still_count_for_messages_inside_it() -> None:
    tl = Timeline()
    tl.handoff(90)
    tl.assigned(95, "ann")
    tl.agent_replies(130)  # after to=100
    tl.human_message(140)  # outside the range
    tl.agent_replies(150)
    g = only_group(report(merged(tl), start=0, end=100, now=200))
    human = g["human"]
    assert human["messages"] == 1
    assert human["response_time"]["sum"] == 40.0
    assert human["handoffs"] == 1
    assert human["first_response_time"]["avg"] == 40.0


def test_handoff_before_the_range_is_not_counted_in_it() -> None:
    tl = Timeline()
    tl.handoff(-30)
    tl.assigned(-10, "ann")
    tl.human_message(5)  # inside: a human message of the earlier handoff
    tl.agent_replies(20)
    g = only_group(report(merged(tl), start=0, end=100, now=200))
    human = g["human"]
    assert human["handoffs"] == 0
    assert human["queue_wait"]["count"] == 0
    assert human["first_response_time"]["count"] == 0
    assert human["messages"] == 1
    assert human["response_time"]["avg"] == 15.0


# ------------------------------------------- the spec's sentences, one by one
# Each test below quotes the sentence of /work/shared/specs/metrics.md it
# enforces and runs its timeline through the replay and the rollups.

def test_human_resolution_is_handoff_to_resolved_and_an_ended_handoff_is_left_out() -> None:
    """Spec: "human: handoff → resolved (a handoff whose conversation ended —
    customer left, idle timeout — is not resolved and is left out)"."""
    by_agent = Timeline("agent")
    by_agent.handoff(0)
    by_agent.assigned(10, "ann")
    by_agent.agent_replies(20)
    by_agent.resolved(180)
    by_customer = Timeline("says-resolved")  # the customer's "resolved" feedback resolves it
    by_customer.handoff(0)
    by_customer.assigned(10, "ann")
    by_customer.agent_replies(20)
    by_customer.feedback(90, rating=None, resolved=True)
    idle = Timeline("idle")  # replied, then nobody wrote for the 600 s idle timeout
    idle.handoff(0)
    idle.assigned(10, "ann")
    idle.agent_replies(50)
    idle.resolved(650, by="idle")
    left = Timeline("left")  # replied, then the customer left
    left.handoff(0)
    left.assigned(10, "ann")
    left.agent_replies(20)
    left.resolved(300, by="customer")
    human = only_group(both(merged(by_agent, by_customer, idle, left)))["human"]
    assert human["resolution_time"] == {"count": 2, "sum": 270.0, "avg": 135.0, "p50": 135.0, "p90": 171.0}
    # Ended after a reply: neither resolved nor abandoned.
    assert rate(human["abandonment"]) == (0, 4)


def test_a_rating_goes_to_the_tier_that_ended_the_episode_when_it_ends() -> None:
    """Spec: "satisfaction | ratings 4–5 ÷ ratings given (1–5 scale),
    attributed to the tier that ended the conversation (episode): a rating
    that arrives before the end is attributed when it ends"."""
    tl = Timeline()
    tl.asked(0)
    tl.feedback(10, rating=1)  # a thumbs-down while the bot holds the conversation
    tl.handoff(20)
    tl.assigned(20, "ann")
    tl.agent_replies(40)
    tl.resolved(HOUR + 100)  # a person resolves it, in the next hour
    events = merged(tl)

    # Before the end (the events written by then) it is attributed to no tier yet.
    so_far = [e for e in events if e.at <= T0 + HOUR + 50]
    open_ = only_group(both(so_far, end=2 * HOUR, now=HOUR + 50))
    assert rate(open_["bot"]["satisfaction"]) == (0, 0) and rate(open_["human"]["satisfaction"]) == (0, 0)

    ended = both(events, end=2 * HOUR, now=2 * HOUR, bucket="hour")
    buckets = {g["bucket"]: g for g in ended["groups"]}
    # Counted for the human tier, at the end (the second hour), not when given.
    assert rate(buckets["2026-01-01T00:00:00Z"]["human"]["satisfaction"]) == (0, 0)
    assert rate(buckets["2026-01-01T01:00:00Z"]["human"]["satisfaction"]) == (0, 1)
    assert all(rate(g["bot"]["satisfaction"]) == (0, 0) for g in ended["groups"])


def test_a_rating_after_the_end_goes_to_the_episode_that_ended() -> None:
    """Spec: "attributed to the tier that ended the conversation (episode)"."""
    kept = Timeline("kept")
    kept.asked(0)
    kept.resolved(30, by="idle")
    kept.feedback(40, rating=5)  # after the bot's episode ended
    handed = Timeline("handed")
    handed.handoff(0)
    handed.assigned(0, "ann")
    handed.agent_replies(10)
    handed.resolved(20)
    handed.feedback(25, rating=2)
    g = only_group(both(merged(kept, handed)))
    assert rate(g["bot"]["satisfaction"]) == (1, 1)
    assert rate(g["human"]["satisfaction"]) == (0, 1)


@pytest.mark.parametrize("first_responses", [[60.0], [10.0, 60.0], [0.3, 59.7, 60.0]])
def test_a_percentile_never_lies_outside_the_observed_values(first_responses: list[float]) -> None:
    """Spec: "A percentile never lies outside the observed values." One first
    response of exactly 60 s reads 60 s from the rollups too, not a breach."""
    timelines = []
    for i, seconds in enumerate(first_responses):
        tl = Timeline(f"c{i}")
        tl.handoff(0)
        tl.assigned(0, "ann")
        tl.agent_replies(seconds)
        timelines.append(tl)
    events = merged(*timelines)
    exact = only_group(report(events))["human"]
    fast = only_group(report_via_rollups(events, T0, T0 + HOUR, T0 + HOUR))["human"]
    for figures in (exact, fast):
        first = figures["first_response_time"]
        for q in ("p50", "p90"):
            assert min(first_responses) <= first[q] <= max(first_responses), (q, first)
        assert rate(figures["first_response_within_sla"]) == (len(first_responses), len(first_responses))
    if len(first_responses) == 1:
        assert fast["first_response_time"]["p50"] == fast["first_response_time"]["p90"] == 60.0
    assert_same(report(events), report_via_rollups(events, T0, T0 + HOUR, T0 + HOUR))


def test_rollup_percentiles_stay_inside_the_samples_on_random_values() -> None:
    """Spec: "A percentile never lies outside the observed values.\""""
    import random

    rng = random.Random(3)
    for _ in range(200):
        values = [round(rng.lognormvariate(3.0, 1.0), 3) for _ in range(rng.randint(1, 4))]
        delta = rollups.HistogramDelta()
        for v in values:
            delta.add(v)
        from router.rollup_report import Histogram, histogram_percentile

        h = Histogram.of(delta)
        for q in (0.5, 0.9):
            got = histogram_percentile(h.counts, len(values), q, low=h.low, high=h.high)
            assert got is not None and min(values) <= got <= max(values)
            assert got == pytest.approx(percentile(sorted(values), q), rel=0.01)


def test_first_response_within_sla_reports_handoffs_still_inside_it_as_pending() -> None:
    """Spec: "share within the first-response SLA (default 60 s) over due
    handoffs (answered, or unanswered past the SLA; those still inside it
    are pending, reported as such)"."""
    answered = Timeline("answered")
    answered.handoff(0)
    answered.assigned(0, "ann")
    answered.agent_replies(30)
    overdue = Timeline("overdue")
    overdue.handoff(10)
    waiting = Timeline("waiting")
    waiting.handoff(100)
    events = merged(answered, overdue, waiting)
    human = only_group(both(events, now=130))["human"]
    assert human["handoffs"] == 3
    assert rate(human["first_response_within_sla"]) == (1, 2)  # the overdue one counts against
    assert human["first_response_pending"] == 1  # the one still inside its SLA
    later = only_group(both(events, now=200))["human"]
    assert rate(later["first_response_within_sla"]) == (1, 3) and later["first_response_pending"] == 0


def test_by_agent_each_figure_goes_to_the_agent_who_did_it() -> None:
    """Spec: "Grouped by agent, each figure goes to the agent who did it: a
    first response to the agent who sent it, a queue wait to the agent first
    assigned, a resolution to the agent who resolved."""
    tl = Timeline("t")
    tl.handoff(0, skill="general")
    tl.assigned(10, "ann")
    tl.agent_replies(30)  # ann's first response: 30 s
    tl.transferred(40, skill="billing")
    tl.assigned(45, "bob")
    tl.human_message(50)
    tl.agent_replies(60)
    tl.resolved(100)  # bob resolves: 100 s from the handoff
    r = report(merged(tl), group_by="agent", names={"ann": "Ann Lee", "bob": "Bob Roe"})
    groups = by_key(r, "agent")
    assert set(groups) == {"ann", "bob"}
    ann, bob = groups["ann"], groups["bob"]
    assert ann["label"] == "Ann Lee" and bob["label"] == "Bob Roe"
    assert ann["human"]["first_response_time"]["sum"] == 30.0
    assert rate(ann["human"]["first_response_within_sla"]) == (1, 1)
    assert ann["human"]["queue_wait"]["sum"] == 10.0
    assert ann["human"]["handoffs"] == 1  # the agent who took it from the queue
    assert ann["human"]["resolution_time"]["count"] == 0
    assert bob["human"]["first_response_time"]["count"] == 0
    assert rate(bob["human"]["first_response_within_sla"]) == (0, 0)
    assert bob["human"]["queue_wait"]["count"] == 0
    assert bob["human"]["handoffs"] == 0
    assert bob["human"]["resolution_time"]["sum"] == 100.0
    # Each message to the agent whose reply answered it.
    assert ann["human"]["messages"] == 1 and bob["human"]["messages"] == 1
    assert bob["human"]["response_time"]["avg"] == 10.0


def test_by_agent_the_group_without_an_agent_is_labelled_and_holds_what_no_agent_did() -> None:
    """Spec: "Grouped by agent, each figure goes to the agent who did it":
    bot-tier figures and handoffs no agent took have no agent."""
    bot = Timeline("bot")
    bot.asked(0)
    bot.resolved(20, by="idle")
    waiting = Timeline("waiting")
    waiting.handoff(0)  # nobody took it
    served = Timeline("served")
    served.handoff(0)
    served.assigned(5, "ann")
    served.agent_replies(15)
    r = report(merged(bot, waiting, served), group_by="agent", names={"ann": "Ann Lee"})
    groups = by_key(r, "agent")
    none = groups[None]
    assert none["label"] == "no agent (bot tier, and handoffs no agent took or answered)"
    assert none["bot"]["messages"] == 1 and rate(none["bot"]["containment"]) == (1, 2)
    assert none["human"]["handoffs"] == 1 and rate(none["human"]["first_response_within_sla"]) == (0, 1)
    assert groups["ann"]["human"]["handoffs"] == 1
    # Groups are labelled whatever the grouping.
    assert [g["label"] for g in report(merged(bot), group_by="tier")["groups"]] == ["all"]
    assert {g["label"] for g in report(merged(bot, waiting), group_by="skill")["groups"]} == {
        "general", "no skill (bot tier)"}


def test_a_changed_rating_replaces_the_episodes_rating_before_and_after_its_end() -> None:
    """Spec: "satisfaction | ratings 4–5 ÷ ratings given (1–5 scale),
    attributed to the tier that ended the conversation (episode)", with one
    rating per episode: a changed one takes the earlier one's place."""
    before = Timeline("before")
    before.asked(0)
    before.feedback(5, rating=1)
    before.feedback(8, rating=5, replaces=1)  # changed their mind while the bot held it
    before.handoff(20)
    before.assigned(20, "ann")
    before.agent_replies(30)
    before.resolved(60)
    after = Timeline("after")
    after.asked(0)
    after.resolved(10, by="idle")
    after.feedback(20, rating=5)
    after.feedback(30, rating=2, replaces=5)
    g = only_group(both(merged(before, after)))
    assert rate(g["human"]["satisfaction"]) == (1, 1)
    assert rate(g["bot"]["satisfaction"]) == (0, 1)

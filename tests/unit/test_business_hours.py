"""Business hours and holidays per skill (router/business_hours.py): open or
closed, the next opening, business seconds across nights, weekends,
holidays and daylight-saving changes; and what they do to the SLA clocks of
the replay, the rollups and the SLA monitor, and to a handoff at the Desk."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from router import metrics, rollups
from router.alerts import Alert, AlertRules, SkillThresholds, evaluate
from router.business_hours import BusinessHours, HoursError, Schedule, parse_hours
from router.metrics import SLA
from router.model import AgentStatus, Customer
from router.ports import FakeClock
from router.rules import parse_rules
from router.services import Desk, DeskConfig, IncomingMessage
from router.tracker import EventKind, TrackerEvent
from tests.unit.test_alerts import late_by_walking
from tests.unit.test_rollups import assert_same, report_via_rollups, simulate
from tests.unit.test_routing import handoff
from tierdesk.errors import InvalidInput

from .fakes import FakeClassifier, FakeStore, Prediction


def at(text: str) -> float:
    """An instant written in UTC: "2026-12-24 10:00"."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


SHANGHAI = parse_hours({"timezone": "Asia/Shanghai", "weekly": {"mon-fri": "09:00-18:00"},
                        "holidays": ["2026-12-25"]})
BERLIN = parse_hours({"timezone": "Europe/Berlin", "weekly": {"mon-sun": "09:00-18:00"}})


# ------------------------------------------------------------ the pure rule
def test_open_in_the_skills_own_time_zone() -> None:
    # Thursday 2026-12-24: 09:00-18:00 in Shanghai is 01:00-10:00 UTC.
    assert not SHANGHAI.is_open(at("2026-12-24 00:59:59"))
    assert SHANGHAI.is_open(at("2026-12-24 01:00"))
    assert SHANGHAI.is_open(at("2026-12-24 09:59:59"))
    assert not SHANGHAI.is_open(at("2026-12-24 10:00"))  # a range is [start, end)


def test_the_next_opening_skips_the_night_the_holiday_and_the_weekend() -> None:
    assert SHANGHAI.next_opening(at("2026-12-24 05:00")) == at("2026-12-24 05:00")  # open: now
    # Thursday evening; Friday is Christmas (a holiday), then the weekend.
    assert SHANGHAI.next_opening(at("2026-12-24 10:30")) == at("2026-12-28 01:00")
    assert not SHANGHAI.is_open(at("2026-12-25 03:00"))
    assert SHANGHAI.next_opening(at("2026-12-27 23:00")) == at("2026-12-28 01:00")


def test_business_seconds_count_only_opening_hours() -> None:
    # Thursday 17:59:30 local to Monday 09:00:30 local: 30 s + 30 s.
    assert SHANGHAI.business_seconds(at("2026-12-24 09:59:30"), at("2026-12-28 01:00:30")) == 60.0
    assert SHANGHAI.business_seconds(at("2026-12-24 01:00"), at("2026-12-24 10:00")) == 9 * 3600
    assert SHANGHAI.business_seconds(at("2026-12-24 12:00"), at("2026-12-24 11:00")) == 0.0
    # One whole week: four working days, the fifth a holiday.
    assert SHANGHAI.business_seconds(at("2026-12-20 00:00"), at("2026-12-27 00:00")) == 4 * 9 * 3600


def test_after_is_the_inverse_of_business_seconds() -> None:
    start = at("2026-12-24 09:59:30")
    due = SHANGHAI.after(start, 60.0)
    assert due == at("2026-12-28 01:00:30")
    assert SHANGHAI.business_seconds(start, due) == 60.0  # type: ignore[arg-type]


def test_opening_hours_follow_the_wall_clock_across_daylight_saving() -> None:
    # Berlin: CET (UTC+1) to CEST (UTC+2) on 2026-03-29, back on 2026-10-25.
    assert BERLIN.next_opening(at("2026-03-28 00:00")) == at("2026-03-28 08:00")
    assert BERLIN.next_opening(at("2026-03-29 00:00")) == at("2026-03-29 07:00")
    assert BERLIN.next_opening(at("2026-10-25 00:00")) == at("2026-10-25 08:00")
    for day in ("2026-03-29", "2026-10-25"):  # 9 hours a day, however long the day
        assert BERLIN.business_seconds(at(f"{day} 00:00"), at(f"{day} 23:59")) == 9 * 3600
    night = parse_hours({"timezone": "Europe/Berlin", "weekly": {"sun": ["01:00-04:00", "23:00-24:00"]}})
    # 01:00-04:00 local loses the skipped hour in spring and gains the repeated one in autumn.
    assert night.business_seconds(at("2026-03-28 23:00"), at("2026-03-29 03:00")) == 2 * 3600
    assert night.business_seconds(at("2026-10-24 22:00"), at("2026-10-25 04:00")) == 4 * 3600
    # 24:00 is the next midnight: open up to it.
    assert night.is_open(at("2026-03-29 21:59:59")) and not night.is_open(at("2026-03-29 22:00"))


def test_a_skill_without_hours_is_open_seven_by_twenty_four() -> None:
    schedule = Schedule({"billing": SHANGHAI})
    t = at("2026-12-25 03:00")
    assert schedule.is_open("general", t) and not schedule.is_open("billing", t)
    assert schedule.next_opening("general", t) == t
    assert schedule.elapsed("general", t, t + 100) == 100.0
    assert schedule.elapsed("billing", t, t + 100) == 0.0
    assert schedule.after("general", t, 60) == t + 60


def test_weekly_days_and_ranges_are_read_as_written() -> None:
    h = parse_hours({"timezone": "UTC", "weekly": {"fri-mon": "10:00-12:00", "wed": ["08:00-09:00", "13:00-14:00"]}})
    assert [bool(r) for r in h.weekly] == [True, False, True, False, True, True, True]
    assert h.weekly[2] == ((480, 540), (780, 840))
    always = parse_hours({"timezone": "UTC", "holidays": ["2026-01-01"]})
    assert not always.is_open(at("2026-01-01 12:00")) and always.is_open(at("2026-01-02 00:00"))


@pytest.mark.parametrize("bad,why", [
    ({"weekly": {"mon": "09:00-18:00"}}, "needs a timezone"),
    ({"timezone": "Mars/Olympus"}, "not an IANA"),
    ({"timezone": "UTC", "weekly": {"mon": "18:00-09:00"}}, "must end after"),
    ({"timezone": "UTC", "weekly": {"mon": "9-18"}}, "not a time"),
    ({"timezone": "UTC", "weekly": {"mon": "09:00-25:00"}}, "not a time of day"),
    ({"timezone": "UTC", "weekly": {"monday": "09:00-18:00"}}, "names days"),
    ({"timezone": "UTC", "weekly": {"mon": ["09:00-12:00", "11:00-13:00"]}}, "overlap"),
    ({"timezone": "UTC", "weekly": {}}, "weekly maps"),
    ({"timezone": "UTC", "holidays": ["Christmas"]}, "not a date"),
    ({"timezone": "UTC", "open": True}, "takes timezone"),
])
def test_bad_hours_are_refused_with_what_is_wrong(bad: dict[str, Any], why: str) -> None:
    with pytest.raises(HoursError, match=why):
        parse_hours(bad)
    with pytest.raises(InvalidInput, match=f"skills.billing.hours .*{why}"):
        parse_rules({"skills": {"billing": {"hours": bad}}})


def test_the_routing_rules_file_gives_each_skill_its_hours() -> None:
    import datetime as dt

    rules = parse_rules({"skills": {  # YAML reads an unquoted 2026-12-25 as a date
        "billing": {"hours": {"timezone": "Asia/Shanghai", "weekly": {"mon-fri": "09:00-18:00"},
                              "holidays": [dt.date(2026, 12, 25)]}},
        "general": {"reservation_timeout_seconds": 30}}})
    assert rules.hours() == Schedule({"billing": SHANGHAI})


# ------------------------------------------------------------- SLA clocks
SLA_HOURS = SLA(2.0, 60.0, 60.0, hours=Schedule({"billing": SHANGHAI}))


def overnight_handoff(reply: bool) -> list[TrackerEvent]:
    """A billing handoff 30 s before Thursday's closing, assigned and
    answered 30 s after Monday's opening."""
    t0 = at("2026-12-24 09:59:30")
    c, ch = "conv", "web"
    events = [
        TrackerEvent(EventKind.MESSAGE_RECEIVED, t0, ch, c, message_id="m1", data={"tier": "human"}),
        TrackerEvent(EventKind.HANDOFF_REQUESTED, t0, ch, c, handoff_id="h", data={"reason": "customer_asked",
                                                                                   "skill": "billing"}),
        TrackerEvent(EventKind.QUEUED, t0, ch, c, handoff_id="h", data={"skill": "billing"}),
    ]
    if reply:
        t1 = at("2026-12-28 01:00:20")
        events += [TrackerEvent(EventKind.ASSIGNED, t1, ch, c, handoff_id="h", agent_id="a", data={"skill": "billing"}),
                   TrackerEvent(EventKind.AGENT_REPLIED, t1 + 10, ch, c, handoff_id="h", agent_id="a")]
    return events


def test_the_replay_counts_business_time_on_the_human_tiers_clocks() -> None:
    events = overnight_handoff(reply=True)
    report = metrics.compute(events, start=at("2026-12-24 00:00"), end=at("2026-12-29 00:00"),
                             now=at("2026-12-29 00:00"), sla=SLA_HOURS)
    human = report["groups"][0]["human"]
    assert human["first_response_time"]["avg"] == 60.0  # 30 s on Thursday, 30 s on Monday
    assert human["first_response_within_sla"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    assert human["queue_wait"]["avg"] == 50.0
    assert human["response_time"]["avg"] == 60.0
    wall = metrics.compute(events, start=at("2026-12-24 00:00"), end=at("2026-12-29 00:00"),
                           now=at("2026-12-29 00:00"), sla=SLA(2.0, 60.0, 60.0))["groups"][0]["human"]
    assert wall["first_response_within_sla"]["numerator"] == 0  # 7×24, the same reply is days late


def test_an_unanswered_handoff_stays_pending_while_its_skill_is_closed() -> None:
    events = overnight_handoff(reply=False)
    start, end = at("2026-12-24 00:00"), at("2026-12-29 00:00")
    for now, pending in ((at("2026-12-26 12:00"), 1), (at("2026-12-28 01:00:30"), 1), (at("2026-12-28 01:00:31"), 0)):
        human = metrics.compute(events, start=start, end=end, now=now, sla=SLA_HOURS)["groups"][0]["human"]
        assert (human["first_response_pending"], human["pending"]) == (pending, pending), now


def test_rollups_count_the_same_business_time_as_the_replay() -> None:
    events = overnight_handoff(reply=True)
    start, end = rollups.hour_of(events[0].at), at("2026-12-29 00:00")
    exact = metrics.compute(events, start=start, end=end, now=end, sla=SLA_HOURS)
    assert_same(exact, report_via_rollups(events, start, end, end, sla=SLA_HOURS))
    assert exact["groups"][0]["human"]["first_response_time"]["sum"] == 60.0


# A day in UTC cut into short openings, so a couple of hours of random
# traffic crosses many openings and closings (the simulation starts at
# 2026-01-01 00:00 UTC).
CHOPPY = SLA(2.0, 60.0, 60.0, hours=Schedule({"billing": parse_hours(
    {"timezone": "UTC", "weekly": {"mon-sun": ["00:00-00:20", "00:35-01:10", "01:30-01:45", "02:00-02:30"]}})}))


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_traffic_with_business_hours_gives_the_same_report(seed: int) -> None:
    events, now = await simulate(seed, CHOPPY)
    start, end = rollups.hour_of(events[0].at), rollups.hour_of(now) + 3600
    for t_now in (now, now + 30, now + 3600):
        for group_by, bucket in (("tier", None), ("channel", "hour")):
            exact = metrics.compute(events, start=start, end=end, now=t_now, sla=CHOPPY, group_by=group_by,  # type: ignore[arg-type]
                                    bucket=bucket)  # type: ignore[arg-type]
            assert_same(exact, report_via_rollups(events, start, end, t_now, group_by, bucket, sla=CHOPPY))  # type: ignore[arg-type]
    first = metrics.compute(events, start=start, end=end, now=now + 3600, sla=CHOPPY)["groups"][0]["human"]
    wall = metrics.compute(events, start=start, end=end, now=now + 3600, sla=SLA(2.0, 60.0, 60.0))["groups"][0]["human"]
    assert first["first_response_time"]["count"] == wall["first_response_time"]["count"] > 0
    assert first["first_response_time"]["sum"] < wall["first_response_time"]["sum"]  # closed time is not counted


# ---------------------------------------------------------- the SLA monitor
def run(open_alerts: dict[str, Alert], now: float, **kw: Any) -> tuple[list[str], list[str]]:
    hours = Schedule({"billing": SHANGHAI})
    handoffs = kw.pop("handoffs", [])
    decisions = evaluate(open_alerts, now, handoffs=handoffs, queues=kw.pop("queues", {}),
                         late=late_by_walking(handoffs, now, 60.0, kw["rules"], hours),
                         containment=None, first_response_sla=60.0, hours=hours, **kw)
    for a in decisions.raise_:
        open_alerts[a.key] = a
    for k in decisions.clear:
        del open_alerts[k]
    return [a.key for a in decisions.raise_], decisions.clear


def test_the_monitor_does_not_warn_about_a_closed_skills_handoffs() -> None:
    rules = AlertRules(warn_margin=0.2, per_skill={"billing": SkillThresholds(queue_length=1, oldest_wait_seconds=30)})
    h = handoff(at("2026-12-24 10:30"), "billing")  # after closing
    alerts: dict[str, Alert] = {}
    queues = {"billing": (1, h.requested_at)}
    for t in ("2026-12-24 12:00", "2026-12-26 12:00", "2026-12-28 00:59:59"):
        assert run(alerts, at(t), handoffs=[h], queues=queues, rules=rules) == ([], []), t
    # Monday 09:00 local: the queue is judged at once; the handoff's clock starts now.
    assert run(alerts, at("2026-12-28 01:00"), handoffs=[h], queues=queues, rules=rules) == (
        ["queue_length:billing"], [])
    assert run(alerts, at("2026-12-28 01:00:30"), handoffs=[h], queues=queues, rules=rules) == (
        ["oldest_wait:billing"], [])
    assert run(alerts, at("2026-12-28 01:00:47.9"), handoffs=[h], queues=queues, rules=rules) == ([], [])
    raised, _ = run(alerts, at("2026-12-28 01:00:48"), handoffs=[h], queues=queues, rules=rules)
    assert raised == [f"first_response:{h.id}"]
    assert alerts[f"first_response:{h.id}"].data["due_at"] == at("2026-12-28 01:01")
    # Closing with the alert open: it stays as it is (no flapping), and is
    # still there the next morning.
    for t in ("2026-12-28 10:00", "2026-12-29 00:59"):
        assert run(alerts, at(t), handoffs=[h], queues=queues, rules=rules) == ([], []), t
    assert f"first_response:{h.id}" in alerts


def test_a_closed_skills_backlog_alert_stays_until_it_opens() -> None:
    rules = AlertRules(warn_margin=0.2, first_response_alerts_per_skill=0)
    h = handoff(at("2026-12-28 01:00"), "billing")  # Monday 09:00 local
    alerts: dict[str, Alert] = {}
    assert run(alerts, at("2026-12-28 01:00:48"), handoffs=[h], rules=rules) == (
        ["first_response_backlog:billing"], [])
    h.first_reply_at = at("2026-12-28 10:30")  # answered after closing
    assert run(alerts, at("2026-12-28 10:31"), handoffs=[h], rules=rules) == ([], [])
    assert run(alerts, at("2026-12-29 01:00"), handoffs=[h], rules=rules) == (
        [], ["first_response_backlog:billing"])


# ------------------------------------------------------------------ the Desk
async def desk_at(t: float, *, agents_online: bool) -> tuple[Desk, FakeStore, FakeClock]:
    clock = FakeClock(t)
    store = FakeStore()
    store.seed_agent("ann", ["billing"], capacity=2,
                     status=AgentStatus.ONLINE if agents_online else AgentStatus.OFFLINE)
    classifier = FakeClassifier()
    classifier.says("refund", Prediction("refund", 0.95, 0.5, None, "billing", True, False))
    desk = Desk(store, classifier, clock, DeskConfig(sla=SLA_HOURS), notices=_Wants({"out_of_hours", "handoff"}))
    await desk.start()
    return desk, store, clock


class _Wants:
    def __init__(self, kinds: set[str]) -> None:
        self.kinds = kinds

    def wanted(self, channel_id: str, kind: str) -> bool:
        return kind == "agent_message" or kind in self.kinds


async def test_out_of_hours_a_handoff_answers_with_the_opening_and_stays_queued() -> None:
    desk, store, clock = await desk_at(at("2026-12-24 10:30"), agents_online=False)
    msg = IncomingMessage("m1", "c1", Customer("u1"), "refund")
    response = await desk.receive_message("web", msg)
    assert response == {"action": "handoff", "reason": "needs_human", "skill": "billing", "agent_id": None,
                        "queue_position": 1, "opens_at": "2026-12-28T01:00:00Z"}
    [item] = [o for o in store.t.outbox if o.kind != "agent_message"]
    assert (item.kind, item.payload["opens_at"], item.payload["timezone"]) == (
        "out_of_hours", at("2026-12-28 01:00"), "Asia/Shanghai")
    # Still queued: a message meanwhile is told the same opening.
    clock.advance(60)
    again = await desk.receive_message("web", IncomingMessage("m2", "c1", Customer("u1"), "anyone?"))
    assert again["opens_at"] == "2026-12-28T01:00:00Z" and again["queue_position"] == 1
    # An agent who comes online (even before opening) takes it, as any time.
    await desk.update_agent("ann", status=AgentStatus.ONLINE)
    [conv] = await desk.open_conversations("ann")
    assert conv.handoff is not None and desk.opens_at(conv.handoff) is None


async def test_an_agent_online_out_of_hours_still_takes_the_handoff() -> None:
    desk, store, _ = await desk_at(at("2026-12-24 10:30"), agents_online=True)
    response = await desk.receive_message("web", IncomingMessage("m1", "c1", Customer("u1"), "refund"))
    assert response["agent_id"] == "ann" and "opens_at" not in response
    assert [o.kind for o in store.t.outbox if o.kind != "agent_message"] == ["handoff"]


async def test_in_hours_a_handoff_is_told_nothing_about_hours() -> None:
    desk, store, _ = await desk_at(at("2026-12-24 03:00"), agents_online=False)
    response = await desk.receive_message("web", IncomingMessage("m1", "c1", Customer("u1"), "refund"))
    assert response["queue_position"] == 1 and "opens_at" not in response
    assert [o.kind for o in store.t.outbox if o.kind != "agent_message"] == ["handoff"]


def test_the_documented_example_rules_file_loads() -> None:
    from pathlib import Path

    from tierdesk.rules_file import load_routing_rules

    rules = load_routing_rules(Path(__file__).resolve().parents[2] / "docs" / "routing.example.yaml")
    billing = rules.hours().by_skill["billing"]
    assert billing.timezone == "Asia/Shanghai" and len(billing.holidays) == 2
    assert not billing.is_open(at("2026-12-25 03:00")) and billing.is_open(at("2026-12-24 03:00"))


def test_matrix_tells_the_opening_in_the_skills_time_zone() -> None:
    from tierdesk.channels.matrix import local_time

    assert local_time(at("2026-12-28 01:00"), "Asia/Shanghai") == "2026-12-28 09:00 (Asia/Shanghai)"
    assert local_time(at("2026-12-28 01:00"), None) == "2026-12-28 01:00 (UTC)"
    assert local_time(None, "Asia/Shanghai") == "?"

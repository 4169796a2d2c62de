"""The SLA monitor's rules (router/alerts.py): raised once before the breach,
cleared once, no flapping at a threshold."""

from __future__ import annotations

from collections.abc import Iterable

from router.alerts import Alert, AlertRules, SkillThresholds, evaluate
from router.business_hours import Schedule
from router.model import Handoff
from tests.unit.test_routing import handoff

SLA = 60.0


def late_by_walking(handoffs: Iterable[Handoff], now: float, first_response_sla: float, rules: AlertRules,
                    hours: Schedule | None = None) -> dict[str, int]:
    """Per skill, the unanswered handoffs past the warning, by looking at
    every one (the Desk counts them without the walk)."""
    hours = hours or Schedule()
    after = rules.first_response_warning(first_response_sla)
    late: dict[str, int] = {}
    for h in handoffs:
        if (h.is_open and h.first_reply_at is None and not h.left_message
                and hours.elapsed(h.skill, h.requested_at, now) >= after):
            late[h.skill] = late.get(h.skill, 0) + 1
    return late


def run(open_alerts: dict[str, Alert], now: float, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("handoffs", [])
    kw.setdefault("queues", {})
    kw.setdefault("containment", None)
    kw.setdefault("late", late_by_walking(kw["handoffs"], now, SLA, kw["rules"]))
    decisions = evaluate(open_alerts, now, first_response_sla=SLA, **kw)
    for a in decisions.raise_:
        open_alerts[a.key] = a
    for k in decisions.clear:
        del open_alerts[k]
    return [a.key for a in decisions.raise_], decisions.clear


def test_a_handoff_is_warned_about_before_its_breach_once_and_cleared_once() -> None:
    rules = AlertRules(warn_margin=0.2)
    h = handoff(0.0, "billing")
    alerts: dict[str, Alert] = {}
    assert run(alerts, 47.9, handoffs=[h], rules=rules) == ([], [])
    assert run(alerts, 48.0, handoffs=[h], rules=rules) == ([f"first_response:{h.id}"], [])
    assert alerts[f"first_response:{h.id}"].data["due_at"] == 60.0
    for t in (50.0, 61.0, 300.0):  # still unanswered, breached: raised once, not again
        assert run(alerts, t, handoffs=[h], rules=rules) == ([], [])
    h.first_reply_at = 301.0
    assert run(alerts, 302.0, handoffs=[h], rules=rules) == ([], [f"first_response:{h.id}"])
    assert run(alerts, 303.0, handoffs=[h], rules=rules) == ([], [])


def test_an_ended_handoff_clears_its_alert() -> None:
    rules = AlertRules()
    h = handoff(0.0)
    alerts: dict[str, Alert] = {}
    run(alerts, 50.0, handoffs=[h], rules=rules)
    h.resolved_at = 55.0
    assert run(alerts, 56.0, handoffs=[h], rules=rules)[1] == [f"first_response:{h.id}"]


def test_queue_thresholds_do_not_flap() -> None:
    rules = AlertRules(per_skill={"billing": SkillThresholds(queue_length=10, oldest_wait_seconds=120)},
                       clear_ratio=0.8)
    alerts: dict[str, Alert] = {}
    assert run(alerts, 0.0, queues={"billing": (9, 0.0)}, rules=rules) == ([], [])
    assert run(alerts, 1.0, queues={"billing": (10, 0.0)}, rules=rules) == (["queue_length:billing"], [])
    for n in (9, 10, 8, 9, 11):  # hovering at the threshold: no new raise, no clear
        assert run(alerts, 2.0, queues={"billing": (n, 0.0)}, rules=rules) == ([], [])
    assert run(alerts, 3.0, queues={"billing": (7, 0.0)}, rules=rules) == ([], ["queue_length:billing"])
    # oldest wait: now - oldest request time
    assert run(alerts, 120.0, queues={"billing": (1, 0.0)}, rules=rules) == (["oldest_wait:billing"], [])
    assert run(alerts, 200.0, queues={"billing": (1, 150.0)}, rules=rules) == ([], ["oldest_wait:billing"])


def test_containment_under_the_floor_with_enough_conversations() -> None:
    rules = AlertRules(containment_floor=0.5, containment_min_conversations=20, containment_clear_margin=0.05)
    alerts: dict[str, Alert] = {}
    assert run(alerts, 0.0, containment=(2, 10), rules=rules) == ([], [])  # too few to judge
    assert run(alerts, 1.0, containment=(9, 20), rules=rules) == (["containment"], [])
    assert run(alerts, 2.0, containment=(10, 20), rules=rules) == ([], [])  # at the floor: inside the margin
    assert run(alerts, 3.0, containment=(11, 20), rules=rules) == ([], ["containment"])


def test_past_the_cap_one_backlog_alert_stands_for_the_late_handoffs_of_a_skill() -> None:
    rules = AlertRules(first_response_alerts_per_skill=2, clear_ratio=0.8)
    hs = [handoff(float(i), "billing") for i in range(5)]
    other = handoff(0.5, "tech")
    left = handoff(0.0, "billing")
    left.left_message = True  # waits its turn: never late, never counted
    alerts: dict[str, Alert] = {}
    raised, cleared = run(alerts, 100.0, handoffs=[*hs, other, left], rules=rules)
    # The two oldest of billing, tech's own, and billing's backlog carrying the count.
    assert raised == [f"first_response:{hs[0].id}", f"first_response:{hs[1].id}", f"first_response:{other.id}",
                      "first_response_backlog:billing"] and cleared == []
    assert alerts["first_response_backlog:billing"].data == {"late": 5, "alerts_per_skill": 2}
    assert alerts["first_response_backlog:billing"].subject == {"skill": "billing"}
    assert run(alerts, 101.0, handoffs=[*hs, other, left], rules=rules) == ([], [])
    # The oldest is answered: its alert clears and the next oldest gets one.
    hs[0].first_reply_at = 101.5
    assert run(alerts, 102.0, handoffs=[*hs, other, left], rules=rules) == (
        [f"first_response:{hs[2].id}"], [f"first_response:{hs[0].id}"])
    # 2 late of a cap of 2: each has its own now, but the backlog stays
    # until no more than 80 % of the cap are late (no flapping).
    hs[1].first_reply_at = hs[2].first_reply_at = 102.5
    assert run(alerts, 103.0, handoffs=[*hs, other, left], rules=rules) == (
        [f"first_response:{hs[3].id}", f"first_response:{hs[4].id}"],
        [f"first_response:{hs[1].id}", f"first_response:{hs[2].id}"])
    assert run(alerts, 103.5, handoffs=[*hs, other, left], rules=rules) == ([], [])
    assert "first_response_backlog:billing" in alerts
    hs[3].resolved_at = 104.0
    assert run(alerts, 104.5, handoffs=[*hs, other, left], rules=rules) == (
        [], [f"first_response:{hs[3].id}", "first_response_backlog:billing"])


def test_alerts_over_a_lowered_cap_are_cleared_the_oldest_kept() -> None:
    hs = [handoff(float(i), "billing") for i in range(4)]
    alerts: dict[str, Alert] = {}
    assert len(run(alerts, 100.0, handoffs=hs, rules=AlertRules(first_response_alerts_per_skill=20))[0]) == 4
    raised, cleared = run(alerts, 101.0, handoffs=hs, rules=AlertRules(first_response_alerts_per_skill=1))
    assert raised == ["first_response_backlog:billing"]
    assert cleared == sorted(f"first_response:{h.id}" for h in hs[1:])
    assert [a.subject.get("handoff_id") for a in alerts.values() if a.kind == "first_response"] == [hs[0].id]


def test_with_no_alert_per_handoff_the_backlog_alone_warns() -> None:
    rules = AlertRules(first_response_alerts_per_skill=0)
    h = handoff(0.0, "billing")
    alerts: dict[str, Alert] = {}
    assert run(alerts, 47.0, handoffs=[h], rules=rules) == ([], [])
    assert run(alerts, 48.0, handoffs=[h], rules=rules) == (["first_response_backlog:billing"], [])
    h.first_reply_at = 49.0
    assert run(alerts, 50.0, handoffs=[h], rules=rules) == ([], ["first_response_backlog:billing"])


def test_the_backlog_counts_what_it_is_told_not_what_it_judges() -> None:
    """The monitor passes the few handoffs it judges and the count of all
    those late (router/services.py counts them without walking the queue)."""
    rules = AlertRules(first_response_alerts_per_skill=2)
    hs = [handoff(float(i), "billing") for i in range(2)]
    alerts: dict[str, Alert] = {}
    raised, _ = run(alerts, 100.0, handoffs=hs, late={"billing": 30_000}, rules=rules)
    assert raised == [*(f"first_response:{h.id}" for h in hs), "first_response_backlog:billing"]
    assert alerts["first_response_backlog:billing"].data["late"] == 30_000

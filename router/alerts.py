"""The SLA monitor's rules: which alerts to raise and which to clear, given
what is open now. Each alert has a key; it is raised once when its
condition starts and cleared once when it ends, with a margin between the
two for thresholds so a value hovering at one does not flap.

- ``first_response:<handoff>``: an unanswered handoff has less than the
  warning margin of its first-response SLA left (raised before the breach);
  cleared when an agent answers or the conversation ends. At most
  ``first_response_alerts_per_skill`` per skill, the oldest late handoffs:
  an alert open stays open, the room left goes to the oldest without one.
- ``first_response_backlog:<skill>``: more of the skill's handoffs are late
  than have an alert of their own: one alert, carrying how many were late
  when it was raised, in place of one per handoff (a flooded queue made
  tens of thousands, each recorded, logged and pushed); cleared once no
  more than ``clear_ratio`` of the cap are late.
- ``queue_length:<skill>`` / ``oldest_wait:<skill>``: past the skill's
  threshold; cleared below ``clear_ratio`` of it.
- ``containment``: bot containment over the last window under the floor
  (with enough conversations to judge); cleared ``clear_margin`` above it.

A skill with business hours is judged on its business time (the SLA
clocks stop while it is closed), and not at all while it is closed: no
alert about it is raised then, and one already open stays as it is until
the skill opens and the condition can be judged again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .business_hours import Schedule
from .model import Handoff


@dataclass(frozen=True, slots=True)
class SkillThresholds:
    queue_length: int | None = None
    oldest_wait_seconds: float | None = None


def warning_point(first_response_sla: float, warn_margin: float) -> float:
    """How much of its skill's business time a handoff nobody has answered
    may wait before it is at risk: the live view's and the SLA monitor's."""
    return first_response_sla * (1 - warn_margin)


@dataclass(frozen=True, slots=True)
class AlertRules:
    warn_margin: float = 0.2
    per_skill: Mapping[str, SkillThresholds] = field(default_factory=dict)
    clear_ratio: float = 0.8
    containment_floor: float | None = None
    containment_min_conversations: int = 20
    containment_clear_margin: float = 0.05
    # Late handoffs of one skill that get a first_response alert of their
    # own; past it one first_response_backlog alert stands for the rest.
    first_response_alerts_per_skill: int = 20

    def first_response_warning(self, first_response_sla: float) -> float:
        return warning_point(first_response_sla, self.warn_margin)


@dataclass(frozen=True, slots=True)
class Alert:
    key: str
    kind: str
    raised_at: float
    subject: Mapping[str, Any]
    data: Mapping[str, Any]

    def view(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "raised_at": self.raised_at, **self.subject, **self.data}


@dataclass(frozen=True, slots=True)
class Decisions:
    raise_: list[Alert]
    clear: list[str]


def evaluate(open_alerts: Mapping[str, Alert], now: float, *, handoffs: Iterable[Handoff],
             late: Mapping[str, int], queues: Mapping[str, tuple[int, float]],
             containment: tuple[int, int] | None, first_response_sla: float, rules: AlertRules,
             hours: Schedule | None = None) -> Decisions:
    """``handoffs``: the ones judged one by one. Every open handoff will do;
    the same decisions need only those with a first_response alert open,
    those agents hold, and the oldest ``rules.first_response_alerts_per_skill``
    unanswered late ones waiting in each skill and priority class (a queue
    of tens of thousands is not walked each round). ``late``: per skill, how
    many unanswered handoffs, waiting live or held, are past the warning.
    ``queues``: per skill (waiting, oldest request time); ``containment``:
    (contained, conversations started) over the last window."""
    raise_: list[Alert] = []
    active: set[str] = set()
    hours = hours or Schedule()

    def want(key: str, kind: str, subject: dict[str, Any], data: dict[str, Any]) -> None:
        active.add(key)
        if key not in open_alerts:
            raise_.append(Alert(key, kind, now, subject, data))

    warn_after = rules.first_response_warning(first_response_sla)
    cap = rules.first_response_alerts_per_skill
    late_by_skill: dict[str, dict[str, Handoff]] = {}
    for h in handoffs:
        # A message left for a full queue waits its turn: nobody is on the line.
        if not h.is_open or h.first_reply_at is not None or h.left_message:
            continue
        key = f"first_response:{h.id}"
        if not hours.is_open(h.skill, now):
            if key in open_alerts:
                active.add(key)  # closed: judged again when it opens
            continue
        if hours.elapsed(h.skill, h.requested_at, now) >= warn_after:
            late_by_skill.setdefault(h.skill, {})[h.id] = h
    for skill in sorted(late_by_skill):
        oldest_first = sorted(late_by_skill[skill].values(), key=lambda h: (h.requested_at, h.id))
        alerted = [h for h in oldest_first if f"first_response:{h.id}" in open_alerts]
        fresh = [h for h in oldest_first if f"first_response:{h.id}" not in open_alerts]
        # Past the cap (lowered, or alerts from before it) the youngest
        # alerts are cleared: the backlog alert counts their handoffs.
        for h in alerted[:cap] + fresh[:max(cap - len(alerted), 0)]:
            want(f"first_response:{h.id}", "first_response",
                 {"handoff_id": h.id, "conversation_id": h.conversation_id, "skill": h.skill},
                 {"requested_at": h.requested_at, "due_at": hours.after(h.skill, h.requested_at, first_response_sla),
                  "agent_id": h.agent_id})

    backlogs = {k.partition(":")[2] for k in open_alerts if k.startswith("first_response_backlog:")}
    for skill in sorted(backlogs | {s for s, n in late.items() if n > cap}):
        key = f"first_response_backlog:{skill}"
        if not hours.is_open(skill, now):
            if key in open_alerts:
                active.add(key)
            continue
        n = late.get(skill, 0)
        if n > cap or (key in open_alerts and n > cap * rules.clear_ratio):
            want(key, "first_response_backlog", {"skill": skill}, {"late": n, "alerts_per_skill": cap})

    for skill, limits in rules.per_skill.items():
        if not hours.is_open(skill, now):
            active.update(k for k in (f"queue_length:{skill}", f"oldest_wait:{skill}") if k in open_alerts)
            continue
        waiting, oldest_at = queues.get(skill, (0, now))
        oldest = hours.elapsed(skill, oldest_at, now) if waiting else 0.0
        key = f"queue_length:{skill}"
        if limits.queue_length is not None and (
                waiting >= limits.queue_length or
                (key in open_alerts and waiting >= limits.queue_length * rules.clear_ratio)):
            want(key, "queue_length", {"skill": skill}, {"waiting": waiting, "threshold": limits.queue_length})
        key = f"oldest_wait:{skill}"
        if limits.oldest_wait_seconds is not None and (
                oldest >= limits.oldest_wait_seconds or
                (key in open_alerts and oldest >= limits.oldest_wait_seconds * rules.clear_ratio)):
            want(key, "oldest_wait", {"skill": skill},
                 {"oldest_wait_seconds": round(oldest, 3), "threshold": limits.oldest_wait_seconds})

    if rules.containment_floor is not None and containment is not None:
        contained, started = containment
        if started >= rules.containment_min_conversations:
            ratio = contained / started
            floor = rules.containment_floor
            if ratio < floor or ("containment" in open_alerts and ratio < floor + rules.containment_clear_margin):
                want("containment", "containment", {},
                     {"contained": contained, "conversations": started, "value": round(ratio, 6), "floor": floor})
        elif "containment" in open_alerts:
            active.add("containment")  # too few conversations to judge: no change

    return Decisions(raise_, sorted(k for k in open_alerts if k not in active))

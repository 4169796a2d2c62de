"""What a supervisor watches now: per skill the queue and the handoffs about
to breach their first-response SLA, per agent their state and load.

Read from the dispatcher's structures, never from a walk of every open
conversation: the queue is kept sorted per skill, so its counts are
bisections, and only the few handoffs agents hold are looked at one by one
(a queue of 100,000 held the event loop for tens of milliseconds a view)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .alerts import warning_point
from .business_hours import Schedule
from .model import AgentStatus, Handoff
from .routing import Dispatcher


def live_view(dispatcher: Dispatcher, held: Iterable[Handoff], now: float, *,
              first_response_sla: float, warn_margin: float,
              queue_limits: Mapping[str, int] | None = None, hours: Schedule | None = None) -> dict[str, Any]:
    """``held``: the open handoffs agents hold. ``warn_margin``: a handoff is
    at risk once less than this share of its first-response SLA is left and
    nobody has answered it. ``hours``: a skill's SLA clock counts its
    business time only (a wait is shown as it is, on the wall clock)."""
    hours = hours or Schedule()
    agents = [a for a in dispatcher.agents.values() if a.disabled_at is None]
    held = list(held)
    waiting = dispatcher.waiting_by_skill()
    left = dispatcher.left_messages()
    skills = sorted({s for a in agents for s in a.skills} | set(waiting) | set(left) | {h.skill for h in held})
    warn_after = warning_point(first_response_sla, warn_margin)
    per_skill: dict[str, dict[str, Any]] = {}
    for s in skills:
        live, oldest = waiting.get(s, (0, now))
        # Customers waiting that nobody answered: a prefix of each priority
        # class by request time, since business time elapsed only shrinks as
        # the request time grows.
        breached, _ = dispatcher.unanswered_waiting(s, lambda r, s=s: hours.elapsed(s, r, now) >= first_response_sla)
        warned, _ = dispatcher.unanswered_waiting(s, lambda r, s=s: hours.elapsed(s, r, now) >= warn_after)
        per_skill[s] = {
            "skill": s, "waiting": live, "oldest_wait_seconds": round(now - oldest, 3) if live else None,
            "at_risk": max(warned - breached, 0) if hours.is_open(s, now) else 0, "breached": breached,
            "left_messages": left.get(s, 0), "queue_limit": (queue_limits or {}).get(s), "agents_online": 0,
            "agents_with_free_slot": 0}
    by_agent: dict[str, list[Handoff]] = {}
    for h in held:
        by_agent.setdefault(h.agent_id or "", []).append(h)
        if h.first_reply_at is None:
            row = per_skill[h.skill]
            on_clock = hours.elapsed(h.skill, h.requested_at, now)
            if on_clock >= first_response_sla:
                row["breached"] += 1
            elif on_clock >= warn_after and hours.is_open(h.skill, now):
                row["at_risk"] += 1
    for a in agents:
        present = a.presence_lost_at is None
        for s in a.skills:
            if a.status is AgentStatus.ONLINE and present:
                per_skill[s]["agents_online"] += 1
                if a.has_free_slot():
                    per_skill[s]["agents_with_free_slot"] += 1
    return {
        "skills": list(per_skill.values()),
        "agents": [
            {"id": a.id, "name": a.name, "status": a.status.value, "present": a.presence_lost_at is None,
             "skills": sorted(a.skills), "load": a.open_count, "capacity": a.capacity,
             "conversations": len(by_agent.get(a.id, [])),
             "unanswered": sum(1 for h in by_agent.get(a.id, []) if h.first_reply_at is None),
             "oldest_unanswered_seconds": max((round(now - h.requested_at, 3) for h in by_agent.get(a.id, [])
                                               if h.first_reply_at is None), default=None),
             "missed_reservations": a.missed_reservations}
            for a in sorted(agents, key=lambda a: (a.name, a.id))
        ],
    }

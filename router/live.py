"""What a supervisor watches now: per skill the queue and the handoffs about
to breach their first-response SLA, per agent their state and load."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .business_hours import Schedule
from .model import Agent, AgentStatus, Conversation


def live_view(agents: Iterable[Agent], conversations: Iterable[Conversation], now: float, *,
              first_response_sla: float, warn_margin: float,
              queue_limits: Mapping[str, int] | None = None, hours: Schedule | None = None) -> dict[str, Any]:
    """``warn_margin``: a handoff is at risk once less than this share of its
    first-response SLA is left and nobody has answered it. ``hours``: a
    skill's SLA clock counts its business time only (a wait is shown as it
    is, on the wall clock)."""
    hours = hours or Schedule()
    agents = [a for a in agents if a.disabled_at is None]
    open_handoffs = [c.handoff for c in conversations if c.handoff is not None and c.handoff.is_open]
    skills = sorted({s for a in agents for s in a.skills} | {h.skill for h in open_handoffs})
    per_skill: dict[str, dict[str, Any]] = {
        s: {"skill": s, "waiting": 0, "oldest_wait_seconds": None, "at_risk": 0, "breached": 0,
            "left_messages": 0, "queue_limit": (queue_limits or {}).get(s), "agents_online": 0,
            "agents_with_free_slot": 0} for s in skills}
    warn_after = first_response_sla * (1 - warn_margin)
    held: dict[str, list[Any]] = {}
    for h in open_handoffs:
        row = per_skill[h.skill]
        waited = now - h.requested_at
        if h.agent_id is None and h.left_message:
            # Waits its turn after the customers on the line: not the queue.
            row["left_messages"] += 1
            continue
        if h.agent_id is None:
            row["waiting"] += 1
            if row["oldest_wait_seconds"] is None or waited > row["oldest_wait_seconds"]:
                row["oldest_wait_seconds"] = round(waited, 3)
        else:
            held.setdefault(h.agent_id, []).append(h)
        if h.first_reply_at is None:
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
             "conversations": len(held.get(a.id, [])),
             "unanswered": sum(1 for h in held.get(a.id, []) if h.first_reply_at is None),
             "oldest_unanswered_seconds": max((round(now - h.requested_at, 3) for h in held.get(a.id, [])
                                               if h.first_reply_at is None), default=None),
             "missed_reservations": a.missed_reservations}
            for a in sorted(agents, key=lambda a: (a.name, a.id))
        ],
    }

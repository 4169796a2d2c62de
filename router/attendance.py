"""The human tier when people are away or slow: which conversations leave an
agent who went offline or whose client went away, and which assignments
were not taken up in time (reservations).

Plain rules over the domain model; the Desk applies them (router/services.py)
and the timekeeper calls it (tierdesk/web/timekeeper.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .model import Conversation


@dataclass(frozen=True, slots=True)
class AttendanceRules:
    # How long an agent's last connection may be gone before they count as
    # away from their desk (a page reload or a network blip is shorter).
    presence_grace_seconds: float = 60.0
    # When an agent leaves (offline, or their presence is gone), the
    # conversations they never answered go back to the queue; answered ones
    # stay with them unless this is on.
    requeue_answered_on_leave: bool = False
    # An assignment not answered within this long is offered to the next
    # eligible agent (per skill where set); 0 turns reservations off.
    reservation_timeout_seconds: float = 60.0
    reservation_timeout_by_skill: Mapping[str, float] = field(default_factory=dict)
    # This many reservations in a row let lapse and the agent is set away.
    misses_before_away: int = 2

    def reservation_timeout(self, skill: str) -> float:
        return self.reservation_timeout_by_skill.get(skill, self.reservation_timeout_seconds)


def leaving_with(agent_id: str, conversations: Iterable[Conversation], rules: AttendanceRules) -> list[Conversation]:
    """What goes back to the queue when the agent leaves, oldest request first."""
    held = [c for c in conversations
            if c.agent_id == agent_id and c.handoff is not None
            and (c.handoff.first_reply_at is None or rules.requeue_answered_on_leave)]
    return sorted(held, key=lambda c: c.handoff.requested_at)  # type: ignore[union-attr]


def lapsed_reservations(conversations: Iterable[Conversation], now: float,
                        rules: AttendanceRules) -> list[Conversation]:
    """Assignments nobody answered within their skill's reservation timeout,
    oldest request first."""
    lapsed = []
    for c in conversations:
        h = c.handoff
        if h is None or h.agent_id is None or h.first_reply_at is not None or h.assigned_at is None:
            continue
        timeout = rules.reservation_timeout(h.skill)
        if timeout > 0 and now - h.assigned_at >= timeout and h.is_open:
            lapsed.append(c)
    return sorted(lapsed, key=lambda c: c.handoff.requested_at)  # type: ignore[union-attr]

"""Queue limits per skill: past its limit a skill's queue takes no one
else live. The customer is told how long the wait would be and offered to
leave a message instead; their next message is that message, routed to an
agent once the skill has room for it (after the customers waiting live).

Plain rules on the Dispatcher's state; the Desk applies them, the channels
tell the customer (docs/routing.md, "Queue limits").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .routing import Dispatcher


@dataclass(frozen=True, slots=True)
class QueueFull:
    skill: str
    waiting: int  # customers waiting live for the skill now
    limit: int

    def as_dict(self) -> dict[str, object]:
        return {"skill": self.skill, "queue_length": self.waiting, "queue_limit": self.limit}


def over_limit(dispatcher: Dispatcher, skill: str, weight: int, limits: Mapping[str, int]) -> QueueFull | None:
    """A new handoff of ``skill`` would wait behind ``limit`` or more
    customers already: the queue is full. One an agent can take at once
    never waits, so it is never refused."""
    limit = limits.get(skill)
    if limit is None:
        return None
    waiting = dispatcher.live_waiting(skill)
    if waiting < limit or dispatcher.takes_now(skill, weight):
        return None
    return QueueFull(skill, waiting, limit)

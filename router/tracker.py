"""The tracker's event log: every handoff and reply, append-only.

Metrics are computed by replaying these events, so each event carries what a
replay needs and nothing is ever updated in place. Timestamps come from the
injected clock (seconds since the epoch, float), so tests replay exact
timelines.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    MESSAGE_RECEIVED = "message_received"  # data: tier
    BOT_ANSWERED = "bot_answered"  # data: in_reply_to, faq_id, confidence
    HANDOFF_REQUESTED = "handoff_requested"  # data: reason, skill
    QUEUED = "queued"  # data: skill
    ASSIGNED = "assigned"
    AGENT_REPLIED = "agent_replied"
    TRANSFERRED = "transferred"  # agent_id: who passed it on; data: skill, to_agent (None: to a skill)
    REQUEUED = "requeued"  # agent_id: who held it; data: reason, skill
    RESOLVED = "resolved"  # data: by (agent|customer|idle|bot), abandoned
    REOPENED = "reopened"
    FEEDBACK = "feedback"  # data: rating, resolved
    BOT_MISS = "bot_miss"  # message_id: the question the bot got wrong; data: why
    # The skill's queue was full: offered to leave a message instead.
    QUEUE_FULL = "queue_full"  # data: skill, queue_length, queue_limit, reason
    MESSAGE_LEFT = "message_left"  # message_id: the message the customer left; data: skill


class EndedBy(enum.StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"  # the channel reports the customer closed or left
    IDLE = "idle"  # nobody wrote for the idle timeout
    FEEDBACK = "feedback"  # the customer marked it resolved


# Not frozen: one is made per event (router/changes.py says why).
@dataclass(slots=True)
class TrackerEvent:
    kind: EventKind
    at: float
    channel_id: str
    conversation_id: str
    message_id: str | None = None
    handoff_id: str | None = None
    agent_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

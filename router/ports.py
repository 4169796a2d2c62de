"""Ports: what the use cases need from the outside world.

Adapters implement them: storage/ for the Store, classifier/ for the
Classifier, the web layer for the Notifier. Unit tests pass fakes.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from .changes import Changes, MessageRecord
from .model import Agent, Conversation, Handoff
from .policy import Prediction
from .tracker import TrackerEvent


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to: tests replay exact timelines."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t

    def set(self, t: float) -> None:
        self.t = t


class Classifier(Protocol):
    async def classify(self, text: str, locale: str | None = None) -> Prediction:
        """``locale``: the customer's language as their channel said it
        ("zh-CN"), which with the text chooses the answer's language."""
        ...


class Notifier(Protocol):
    """Pushes events to connected agents; best effort, after commit."""

    def to_agent(self, agent_id: str, payload: dict[str, Any]) -> None: ...


class Notices(Protocol):
    """Which deliveries a channel wants through the outbox besides agent
    replies ("agent_message", always): "bot_answer", "handoff" (connecting
    you to a person), "out_of_hours" (the skill is closed: when it opens,
    sent instead of "handoff") and "rating_request". The channel adapters at the edge
    know (tierdesk/channels); the answer must not need I/O."""

    def wanted(self, channel_id: str, kind: str) -> bool: ...


class AgentRepliesOnly:
    """A desk whose channels want agent replies only (as before channels had kinds)."""

    def wanted(self, channel_id: str, kind: str) -> bool:
        return kind == "agent_message"


class DuplicateMessage(Exception):
    """The store already holds this inbound message id (not an error to users)."""


class Store(Protocol):
    """Repository and unit of work in one: reads, and the group commit."""

    async def commit(self, changes: Changes) -> None:
        """Make the changes durable; raise DuplicateMessage or Unavailable."""

    async def load_agents(self, ids: Collection[str] | None = None) -> list[Agent]:
        """All agents, or those of ``ids`` that exist."""

    async def load_open_conversations(self) -> list[Conversation]:
        """Every conversation with an open handoff, with its handoff and answers."""

    async def load_conversation(self, channel_id: str, external_id: str) -> Conversation | None: ...

    async def load_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        """The conversation with its handoff and tally, without the answers
        given in it (a retry is then recognised on commit)."""

    async def load_conversations_by_id(self, ids: Collection[str]) -> list[Conversation]:
        """Those of ``ids`` that exist, as load_conversation_by_id gives them."""

    async def stored_answer(self, channel_id: str, external_id: str) -> dict[str, Any] | None: ...

    async def history(self, conversation_id: str, limit: int) -> list[MessageRecord]: ...

    async def customer_handoffs(self, channel_id: str, customer_id: str, limit: int) -> list[Handoff]: ...

    async def idle_conversations(self, before: float, limit: int) -> list[str]: ...

    async def leads_idle_sweep(self) -> bool:
        """Whether this instance is the one that ends idle conversations
        (another instance's changes to the same ones would be refused)."""

    async def events_between(self, start: float, end: float) -> Sequence[TrackerEvent]: ...


__all__ = [
    "Agent",
    "Changes",
    "Classifier",
    "Clock",
    "DuplicateMessage",
    "FakeClock",
    "Handoff",
    "Notices",
    "Notifier",
    "Store",
    "SystemClock",
]

"""What one use case changed: the unit of work's contents.

A use case mutates the in-memory domain objects and records here copies of
what must be persisted, taken at the moment of the change, so a later
request mutating the same objects cannot leak into this commit. The
storage adapter turns a batch of Changes into a few SQL statements.

The records made per message (ConversationState, MessageRecord, OutboxItem,
router.tracker.TrackerEvent) are not frozen dataclasses: a frozen one's
__init__ sets each field through object.__setattr__, which made building
them twice as dear, and nothing assigns to them once they are made.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .rollups import Deltas
from .model import Agent, Conversation, ConversationStatus, Customer, Handoff, Sender, Tier
from .tracker import TrackerEvent


@dataclass(slots=True)
class ConversationState:
    id: str
    channel_id: str
    external_id: str
    customer: Customer
    status: ConversationStatus
    created_at: float
    updated_at: float
    bot_streak: int
    handoff_count: int
    handoff_id: str | None
    agent_id: str | None
    version: int
    rating: int | None
    message_offer: str | None = None

    @classmethod
    def of(cls, c: Conversation) -> ConversationState:
        return cls(
            id=c.id,
            channel_id=c.channel_id,
            external_id=c.external_id,
            customer=c.customer,
            status=c.status,
            created_at=c.created_at,
            updated_at=c.updated_at,
            bot_streak=c.bot_streak,
            handoff_count=c.handoff_count,
            handoff_id=c.handoff.id if c.handoff else None,
            agent_id=c.agent_id,
            version=c.version,
            rating=c.rating,
            message_offer=c.message_offer,
        )


@dataclass(slots=True)
class CommittedElsewhere:
    """A conversation as another instance's commit left it, carried by the
    commit's notice (storage/notify.py), so this instance need not read it
    back: taken when memory holds the version the commit was decided on, or
    holds nothing of it and the notice carries its handoff too."""

    # Its ``handoff`` is set only when the commit wrote that handoff.
    conversation: Conversation
    base_version: int  # the version the commit was decided on
    handoff_id: str | None  # the conversation's current handoff


# A copy made from the fields' values in order, as dataclasses.replace makes
# it without looking the fields up at every call (replace was ~1 % of a
# handoff's CPU).
_HANDOFF_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(Handoff)))


def _copy_handoff(h: Handoff) -> Handoff:
    return Handoff(*_HANDOFF_FIELDS(h))


@dataclass(slots=True)
class MessageRecord:
    id: str
    channel_id: str
    conversation_id: str
    sender: Sender
    text: str
    at: float
    external_id: str | None = None  # the channel's id, for inbound messages
    agent_id: str | None = None
    tier: Tier | None = None
    intent: str | None = None
    confidence: float | None = None
    in_reply_to: str | None = None
    response: dict[str, Any] | None = None  # the answer returned to the channel
    outcome: str | None = None  # inbound: "answer", "forwarded", "queued" or the handoff reason
    replied_at: float | None = None  # inbound: when its tier first replied (the bot: at once)


@dataclass(slots=True)
class OutboxItem:
    """A delivery to the channel's webhook, sent after commit by the worker."""

    idempotency_key: str
    channel_id: str
    conversation_id: str
    kind: str
    payload: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """An agent's settings (not their load, which moves by deltas)."""

    id: str
    name: str
    skills: frozenset[str]
    capacity: int
    status: str
    idle_since: float
    disabled_at: float | None = None
    presence_lost_at: float | None = None
    missed_reservations: int = 0
    levels: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, a: Agent) -> AgentProfile:
        return cls(a.id, a.name, a.skills, a.capacity, a.status.value, a.idle_since, a.disabled_at,
                   a.presence_lost_at, a.missed_reservations, dict(a.levels))


@dataclass(slots=True)
class Changes:
    # Set for a customer message: the commit is skipped whole if the channel
    # already sent this message id (a retry that raced us, or one after a
    # restart), and the stored answer is returned instead.
    inbound: MessageRecord | None = None
    generation: int = 0
    conversations: dict[str, ConversationState] = field(default_factory=dict)
    handoffs: dict[str, Handoff] = field(default_factory=dict)
    new_agents: list[AgentProfile] = field(default_factory=list)
    agents: dict[str, AgentProfile] = field(default_factory=dict)
    load_deltas: dict[str, int] = field(default_factory=dict)
    messages: list[MessageRecord] = field(default_factory=list)
    events: list[TrackerEvent] = field(default_factory=list)
    outbox: list[OutboxItem] = field(default_factory=list)
    # Inbound message ids and what the customer made of the bot's answer to
    # them: "confirmed", or a miss ("thumbs_down", "asked_for_person").
    verdicts: list[tuple[str, str]] = field(default_factory=list)
    # Metric rollup increments and first replies, from the conversations'
    # tallies (router/rollups.py).
    rollup: Deltas = field(default_factory=Deltas)
    # Per conversation recorded, its metric tally after the change
    # (ConversationTally.snapshot()), set once the change's events are
    # tallied (router/working_set.py) and stored with the conversation. Kept
    # beside its state rather than in it: the state is made when the change
    # is recorded, before the events are tallied, and making it again with
    # the tally cost a frozen copy per conversation per change.
    tallies: dict[str, list[Any]] = field(default_factory=dict)

    def conversation(self, c: Conversation) -> None:
        # One version per unit of work, however many times it records the
        # conversation: the store expects version - 1 in the database.
        if c.id not in self.conversations:
            c.version += 1
        self.conversations[c.id] = ConversationState.of(c)

    def handoff(self, h: Handoff) -> None:
        self.handoffs[h.id] = _copy_handoff(h)

    def agent(self, a: Agent) -> None:
        self.agents[a.id] = AgentProfile.of(a)

    def load(self, agent_id: str, delta: int) -> None:
        self.load_deltas[agent_id] = self.load_deltas.get(agent_id, 0) + delta

    def event(self, e: TrackerEvent) -> None:
        self.events.append(e)

    def message(self, m: MessageRecord) -> None:
        self.messages.append(m)

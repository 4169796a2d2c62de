"""The domain model: customers, conversations, handoffs and agents."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Tier(enum.StrEnum):
    BOT = "bot"
    HUMAN = "human"


class AgentStatus(enum.StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


class ConversationStatus(enum.StrEnum):
    BOT = "bot"  # the bot tier holds it
    QUEUED = "queued"  # handed off, waiting for an agent
    ASSIGNED = "assigned"  # an agent holds it
    RESOLVED = "resolved"  # ended; a new customer message reopens it to the bot


class HandoffReason(enum.StrEnum):
    LOW_CONFIDENCE = "low_confidence"
    NEEDS_HUMAN = "needs_human"
    CUSTOMER_ASKED = "customer_asked"
    REPEATED_MISS = "repeated_miss"
    VIP = "vip"
    # The customer left a message when the skill's queue was full.
    LEFT_MESSAGE = "left_message"
    OTHER = "other"


class Sender(enum.StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    AGENT = "agent"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str | None = None
    vip: bool = False


@dataclass(slots=True)
class Agent:
    id: str
    name: str
    skills: frozenset[str]
    capacity: int
    status: AgentStatus = AgentStatus.OFFLINE
    # Slots in use: the sum of the weights of the conversations held (a
    # conversation weighs 1 unless it is a VIP's or of a heavy intent).
    open_count: int = 0
    # When the agent last took a conversation (or came online): ties in load go
    # to whoever has waited longest, so work spreads evenly over a shift.
    idle_since: float = 0.0
    # A disabled agent is offline for good: never assigned, kept for history.
    disabled_at: float | None = None
    # Set when the agent's last connection has been gone for the grace
    # period: nothing is assigned to them until they are back.
    presence_lost_at: float | None = None
    # Assignments in a row the agent let lapse (router/attendance.py).
    missed_reservations: int = 0
    # Per skill, how well the agent handles it (1-5, 5 best; a skill not
    # listed is at 1): a handoff goes to the agents at the best level among
    # those who can take it, then the least loaded of them.
    levels: Mapping[str, int] = field(default_factory=dict)

    def level(self, skill: str) -> int:
        return self.levels.get(skill, 1)

    @property
    def load(self) -> float:
        return self.open_count / self.capacity if self.capacity > 0 else float("inf")

    def has_free_slot(self) -> bool:
        return (self.status is AgentStatus.ONLINE and self.open_count < self.capacity and self.disabled_at is None
                and self.presence_lost_at is None)

    def fits(self, weight: int) -> bool:
        """Room for a conversation of this weight. One heavier than the
        whole capacity weighs the capacity (Handoff.slots_on): an idle agent
        takes it and is then full, so it never waits for a slot that cannot
        exist."""
        return self.open_count + min(weight, self.capacity) <= self.capacity

    def can_take(self, skill: str, weight: int = 1) -> bool:
        return self.has_free_slot() and skill in self.skills and self.fits(weight)


@dataclass(slots=True)
class Handoff:
    """One passage of a conversation from the bot tier to the human tier."""

    id: str
    conversation_id: str
    channel_id: str
    seq: int  # 1 for the conversation's first handoff, 2 for the next...
    reason: HandoffReason
    skill: str
    requested_at: float
    vip: bool = False
    agent_id: str | None = None
    assigned_at: float | None = None
    first_reply_at: float | None = None
    resolved_at: float | None = None
    # How much of an agent's capacity it takes (VIP, heavy intents: see
    # docs/routing.md), and what it took from the agent holding it: the
    # same is given back when it leaves, whatever the capacity is by then.
    weight: int = 1
    slots: int = 1
    # A message the customer left when the skill's queue was full: it waits
    # behind the customers waiting live and counts against no queue limit.
    left_message: bool = False

    def slots_on(self, agent: Agent) -> int:
        return min(self.weight, max(agent.capacity, 1))

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def waiting(self) -> bool:
        return self.is_open and self.agent_id is None

    def queue_key(self) -> tuple[bool, bool, float, str]:
        # Customers waiting live before messages left, VIP before regular,
        # then oldest first; the id breaks exact-time ties deterministically.
        return (self.left_message, not self.vip, self.requested_at, self.id)


# Conversation.tier's members, looked up once: a member read off its enum
# class goes through EnumType.__getattr__'s slow path (~4x a global's cost),
# and the tier is asked several times per message.
_HUMAN, _BOT = Tier.HUMAN, Tier.BOT
_HUMAN_STATUSES = (ConversationStatus.QUEUED, ConversationStatus.ASSIGNED)

# The answers a conversation keeps in memory for retries (the latest ones).
ANSWERS_KEPT = 4


@dataclass(slots=True)
class Conversation:
    id: str
    channel_id: str
    external_id: str
    customer: Customer
    created_at: float
    status: ConversationStatus = ConversationStatus.BOT
    updated_at: float = 0.0
    # Bot answers since the conversation last started, was resolved or came back
    # from a person: the handoff policy hands off after too many in a row.
    bot_streak: int = 0
    handoff_count: int = 0
    handoff: Handoff | None = None
    # Inbound message ids already answered → the answer given, so a retry gets
    # the first answer back without redoing anything; the latest ANSWERS_KEPT
    # only (remember_answer).
    answers: dict[str, dict] = field(default_factory=dict)
    # The customer message the bot answered last, while it is the latest
    # thing that happened: a thumbs down or an ask for a person now marks
    # that answer as a miss.
    last_bot_answered: str | None = None
    # Metric state (router/rollups.ConversationTally): stored with each
    # change, restored from the row when the conversation is loaded.
    tally: Any = None
    # How many changes of it have been recorded (router/changes.py). A change
    # is stored only over the version it was decided on, so two instances
    # deciding on the same conversation cannot both win.
    version: int = 0
    # The customer's rating of the current episode (or of the one just
    # ended): the same rating again changes nothing, another replaces it.
    rating: int | None = None
    # The skill whose full queue the customer was offered to leave a message
    # for: their next message is that message (router/queue_limits.py).
    message_offer: str | None = None

    @property
    def agent_id(self) -> str | None:
        """The agent holding the conversation now (none once it is resolved)."""
        h = self.handoff
        return h.agent_id if h is not None and h.is_open else None

    def remember_answer(self, message_id: str, response: dict) -> None:
        """Keep the answer for a retry of the message, and only the latest
        few: a channel retries the message it just sent, and a long chat's
        every answer, held while its conversation is in memory, was most of
        the memory a waiting handoff took. A retry of an older one is
        recognised by the database (its unique key), more slowly."""
        answers = self.answers
        answers[message_id] = response
        if len(answers) > ANSWERS_KEPT:
            del answers[next(iter(answers))]

    @property
    def tier(self) -> Tier:
        return _HUMAN if self.status in _HUMAN_STATUSES else _BOT


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    webhook_url: str | None = None
    webhook_secret: str | None = None
    created_at: float = 0.0
    require_signature: bool = False
    disabled_at: float | None = None
    # The secret a rotation replaced, still good until previous_secret_until.
    previous_webhook_secret: str | None = None
    previous_secret_until: float | None = None
    # How the channel reaches customers: "webhook", "widget" or "matrix"
    # (tierdesk/channels); a webhook channel with ``notices`` also gets bot
    # answers, handoff notices and rating requests, not only agent replies.
    kind: str = "webhook"
    notices: bool = False

    def secrets(self, now: float) -> list[str]:
        """The secrets that sign and verify now: the current one, and the
        previous one while a rotation overlaps."""
        current = [self.webhook_secret] if self.webhook_secret else []
        if self.previous_webhook_secret and (self.previous_secret_until or 0.0) > now:
            return current + [self.previous_webhook_secret]
        return current


class Role(enum.StrEnum):
    CHANNEL = "channel"
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    # A widget's customer: a signed session for one conversation, not a
    # stored token (tierdesk/channels/widget.py).
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role and, for channels and agents, which one."""

    role: Role
    subject_id: str | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who signs in to the console with an email and a password.

    The role is one of the API's (agent, supervisor, admin), so everything a
    person does in the console is decided by the same rules as a token of
    that role; an agent's account works as one agent (``agent_id``)."""

    id: str
    email: str
    name: str
    role: Role
    agent_id: str | None = None
    created_at: float = 0.0
    disabled_at: float | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def principal(self) -> Principal:
        return Principal(self.role, self.agent_id if self.role is Role.AGENT else self.id)

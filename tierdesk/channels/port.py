"""The channel port: what every channel adapter speaks.

Outbound calls come from the delivery worker, one per outbox item (so each
is retried until it gets through, in order per conversation), except
``typing``, which is best effort and never stored. Each carries ``key``, the
same on every retry: an adapter whose transport can drop repeats passes it
on (the webhook's ``Idempotency-Key``, Matrix's transaction id).

An adapter raises ``Undeliverable`` for what no retry can fix (the item
becomes a dead letter at once) and any other exception for a failure worth
retrying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from router.estimates import WaitEstimate
from router.model import Channel
from router.services import IncomingMessage


class Undeliverable(Exception):
    """No retry can deliver this (the channel has nowhere to send it)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    channel: Channel
    conversation_id: str  # the channel's id for the conversation (a room, a widget session...)
    customer_id: str
    tierdesk_conversation_id: str


@dataclass(frozen=True, slots=True)
class BotAnswer:
    to: Recipient
    key: str
    message_id: str
    text: str
    faq_id: str | None
    in_reply_to: str | None  # the channel's id of the customer message answered
    sent_at: float
    language: str | None = None  # the language ``text`` is in


@dataclass(frozen=True, slots=True)
class AgentReply:
    to: Recipient
    key: str
    message_id: str
    text: str
    agent_id: str
    agent_name: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class Connecting:
    """The conversation goes to a person: where the customer is in the
    queue and how long they may wait (router/estimates.py), as of delivery."""

    to: Recipient
    key: str
    handoff_id: str
    reason: str
    skill: str
    wait: WaitEstimate
    agent_name: str | None  # set when a person took it already
    sent_at: float


@dataclass(frozen=True, slots=True)
class OutOfHours:
    """The handoff's skill is closed now (business hours): when it opens.
    The handoff stays queued and is taken when someone can."""

    to: Recipient
    key: str
    handoff_id: str
    skill: str
    opens_at: float | None
    sent_at: float
    timezone: str | None = None  # the skill's (an IANA name), to show the time as its people read it


@dataclass(frozen=True, slots=True)
class QueueFullNotice:
    """The skill's queue is full: how long the wait would be (``wait``, at
    the place after the last customer waiting), and the offer to leave a
    message, which the customer's next message is."""

    to: Recipient
    key: str
    skill: str
    queue_length: int
    wait: WaitEstimate
    sent_at: float


@dataclass(frozen=True, slots=True)
class RatingRequest:
    to: Recipient
    key: str
    handoff_id: str
    sent_at: float


@dataclass(frozen=True, slots=True)
class Typing:
    to: Recipient
    typing: bool
    agent_name: str | None


class ChannelAdapter(Protocol):
    """Outbound: how a kind of channel shows each thing to its customer."""

    kind: str

    async def bot_answer(self, out: BotAnswer) -> None: ...

    async def agent_reply(self, out: AgentReply) -> None: ...

    async def connecting(self, out: Connecting) -> None: ...

    async def out_of_hours(self, out: OutOfHours) -> None: ...

    async def rating_request(self, out: RatingRequest) -> None: ...

    async def queue_full(self, out: QueueFullNotice) -> None: ...

    async def typing(self, out: Typing) -> None: ...


class CustomerInbound(Protocol):
    """Inbound: what an adapter calls when its customer does something.
    Implemented over the Desk by ``inbound.Inbound``; every call is
    idempotent the way the Desk's use cases are (a message by its id)."""

    async def message(self, channel: Channel, msg: IncomingMessage) -> dict[str, Any]: ...

    async def rating(self, channel: Channel, conversation_id: str, rating: int | None, *,
                     resolved: bool = False, comment: str | None = None) -> None: ...

    async def left(self, channel: Channel, conversation_id: str) -> None: ...

    async def typing(self, channel: Channel, conversation_id: str) -> None: ...

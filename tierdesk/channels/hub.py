"""The channels of this instance: an adapter per kind, what each channel
wants delivered (the Desk's Notices port), and the dispatch of an outbox
item to its channel's adapter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from router.model import Channel, Conversation
from storage.accounts import Accounts
from storage.outbox import Delivery

from .estimates import WaitEstimator
from .port import (
    AgentReply,
    BotAnswer,
    ChannelAdapter,
    Connecting,
    OutOfHours,
    QueueFullNotice,
    RatingRequest,
    Recipient,
    Typing,
)

if TYPE_CHECKING:
    from router.services import Desk

log = structlog.get_logger(__name__)

KINDS = ("webhook", "widget", "matrix")
# What each kind of channel is sent through the outbox besides agent
# replies. The widget shows bot answers from the reply to its own request;
# a webhook channel asks for the notices with its ``notices`` setting.
WANTED: dict[str, frozenset[str]] = {
    "webhook": frozenset(),
    "widget": frozenset({"out_of_hours", "rating_request"}),
    "matrix": frozenset({"bot_answer", "handoff", "out_of_hours", "rating_request", "queue_full"}),
}
NOTICES = frozenset({"bot_answer", "handoff", "out_of_hours", "rating_request", "queue_full"})
PORT_KINDS = NOTICES | {"agent_message"}


class NoAdapter(Exception):
    """This instance runs no adapter for the channel's kind (retried: another
    instance may, or this one once configured)."""


class ChannelHub:
    def __init__(self, accounts: Accounts | None, estimator: WaitEstimator | None,
                 desk: Callable[[], Desk | None], refresh_seconds: float = 30.0) -> None:
        self.accounts = accounts
        self.estimator = estimator
        self._desk = desk
        self.refresh_seconds = refresh_seconds
        self.adapters: dict[str, ChannelAdapter] = {}
        self._channels: dict[str, Channel] = {}

    def register(self, adapter: ChannelAdapter) -> None:
        self.adapters[adapter.kind] = adapter

    # -------------------------------------------------------- the directory
    def note(self, channel: Channel) -> None:
        """A channel as just read: what it wants is decided on this copy."""
        self._channels[channel.id] = channel

    def forget(self, channel_id: str) -> None:
        self._channels.pop(channel_id, None)

    async def refresh(self) -> None:
        if self.accounts is not None:
            self._channels = {c.id: c for c in await self.accounts.channels()}

    async def keep_fresh(self) -> None:
        """Changes made on other instances are seen within refresh_seconds."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep the last copy; try again next round
                log.warning("channel_directory_refresh_failed", error=repr(exc))

    def wanted(self, channel_id: str, kind: str) -> bool:
        if kind == "agent_message":
            return True
        c = self._channels.get(channel_id)
        if c is None:
            return False
        return kind in WANTED.get(c.kind, frozenset()) or (c.kind == "webhook" and c.notices and kind in NOTICES)

    def wants_notices(self, channel_id: str) -> bool:
        """Any of the NOTICES wanted (``wanted`` of each, with one look-up)."""
        c = self._channels.get(channel_id)
        if c is None:
            return False
        return not NOTICES.isdisjoint(WANTED.get(c.kind, ())) or (c.kind == "webhook" and c.notices)

    # ------------------------------------------------------------- dispatch
    def adapter(self, channel: Channel) -> ChannelAdapter:
        adapter = self.adapters.get(channel.kind)
        if adapter is None:
            raise NoAdapter(f"no {channel.kind} adapter runs on this instance")
        return adapter

    async def deliver(self, channel: Channel, d: Delivery) -> None:
        """One outbox item through its channel's adapter (raises as the
        adapter does: Undeliverable, or anything worth a retry)."""
        adapter = self.adapter(channel)
        p: dict[str, Any] = d.payload
        kind = p.get("type", d.kind)
        if kind not in PORT_KINDS:
            # Not a conversation's (the SLA monitor's alerts): sent as written,
            # by adapters that can (the webhook), dropped by the others.
            raw = getattr(adapter, "raw", None)
            if raw is None:
                log.warning("delivery_kind_unknown", delivery=d.id, kind=kind)
                return
            await raw(channel, d.idempotency_key, p)
            return
        to = Recipient(channel, p["conversation_id"], p.get("customer_id", ""), d.conversation_id)
        if kind == "agent_message":
            await adapter.agent_reply(AgentReply(to, d.idempotency_key, p["message_id"], p["text"], p["agent_id"],
                                                 p.get("agent_name") or "", p["sent_at"]))
        elif kind == "bot_answer":
            await adapter.bot_answer(BotAnswer(to, d.idempotency_key, p["message_id"], p["text"], p.get("faq_id"),
                                               p.get("in_reply_to"), p["sent_at"], p.get("language")))
        elif kind == "handoff":
            await self._handoff(adapter, to, d.idempotency_key, p)
        elif kind == "queue_full":
            # The wait as it stands at delivery, after the last one waiting.
            wait = await self.wait(p["skill"], p["queue_length"] + 1)
            await adapter.queue_full(QueueFullNotice(to, d.idempotency_key, p["skill"], p["queue_length"], wait,
                                                     p["sent_at"]))
        elif kind == "out_of_hours":
            await adapter.out_of_hours(OutOfHours(to, d.idempotency_key, p["handoff_id"], p["skill"], p["opens_at"],
                                                  p["sent_at"], p.get("timezone")))
        else:
            await adapter.rating_request(RatingRequest(to, d.idempotency_key, p["handoff_id"], p["sent_at"]))

    async def _handoff(self, adapter: ChannelAdapter, to: Recipient, key: str, p: dict[str, Any]) -> None:
        position, agent_name = p.get("queue_position"), None
        desk = self._desk()
        if desk is not None:
            # Where the customer stands now, not when the item was written.
            with contextlib.suppress(Exception):
                conv = await desk.customer_conversation(to.channel.id, to.conversation_id)
                h = conv.handoff if conv is not None else None
                if h is not None and h.id == p["handoff_id"]:
                    if not h.is_open:
                        return  # over before it could be told: nothing to connect to
                    position = desk.dispatcher.queue_position(h)
                    if h.agent_id is not None:
                        agent = desk.dispatcher.agents.get(h.agent_id)
                        agent_name = agent.name if agent is not None else None
        if p.get("agent_id") is not None and position is None and agent_name is None and desk is not None:
            agent = desk.dispatcher.agents.get(p["agent_id"])
            agent_name = agent.name if agent is not None else None
        wait = await self.wait(p["skill"], position)
        await adapter.connecting(Connecting(to, key, p["handoff_id"], p["reason"], p["skill"], wait, agent_name,
                                            p["sent_at"]))

    async def wait(self, skill: str, position: int | None) -> Any:
        from router.estimates import expected_wait

        if self.estimator is None:
            return expected_wait(position, [], 0.0, 0.0)
        return await self.estimator.wait(skill, position)

    async def agent_typing(self, conv: Conversation, typing: bool, agent_name: str) -> bool:
        """Tell the customer an agent is (or stopped) typing, where the
        channel can show it; False when this instance cannot (a channel it
        does not know, or whose adapter runs elsewhere)."""
        channel = self._channels.get(conv.channel_id)
        if channel is None or channel.kind not in self.adapters:
            return False
        await self.typing(channel, Recipient(channel, conv.external_id, conv.customer.id, conv.id), typing, agent_name)
        return True

    async def typing(self, channel: Channel, to: Recipient, typing: bool, agent_name: str | None) -> None:
        """Best effort: never stored, never retried."""
        adapter = self.adapters.get(channel.kind)
        if adapter is not None:
            try:
                await adapter.typing(Typing(to, typing, agent_name))
            except Exception as exc:  # noqa: BLE001 - typing is a courtesy
                log.info("typing_not_sent", channel=channel.id, error=repr(exc))

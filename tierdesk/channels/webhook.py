"""The webhook channel: the company's own integration calls the HTTP API
(``POST /v1/messages``, feedback, close) and gets what tierdesk sends as
signed webhooks (``X-Tierdesk-Signature``, ``Idempotency-Key``), through the
outbox. Agent replies always; bot answers, "connecting you to a person" and
rating requests too when the channel has ``notices`` on."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from router.model import Channel, Customer
from router.ports import Clock
from router.services import IncomingMessage
from tierdesk.errors import InvalidInput, RateLimited
from tierdesk.logging import bind
from tierdesk.signing import HEADER, sign
from tierdesk.web import keys
from tierdesk.web import schemas as s
from tierdesk.web.wire import check_text, json, parse_time

from .port import (AgentReply, BotAnswer, Connecting, OutOfHours, QueueFullNotice, RatingRequest, Recipient, Typing,
                   Undeliverable)

log = structlog.get_logger(__name__)


class DeliveryFailed(Exception):
    """The receiver did not take it (an HTTP status): retried."""


class WebhookAdapter:
    kind = "webhook"

    def __init__(self, clock: Clock, timeout: float) -> None:
        self.clock = clock
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def raw(self, channel: Channel, key: str, payload: dict[str, Any]) -> None:
        """A payload sent as written (the SLA monitor's alerts)."""
        await self._send(channel, key, payload)

    async def _post(self, to: Recipient, key: str, payload: dict[str, Any]) -> None:
        await self._send(to.channel, key, payload)

    async def _send(self, channel: Channel, key: str, payload: dict[str, Any]) -> None:
        if not channel.webhook_url:
            raise Undeliverable("channel has no webhook_url")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = orjson.dumps(payload)
        now = self.clock.now()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        secrets = channel.secrets(now)
        if secrets:
            # While a rotation overlaps, one digest per secret: the receiver
            # verifies with whichever it has.
            headers[HEADER] = sign(secrets, int(now), body)
        async with self._session.post(channel.webhook_url, data=body, headers=headers) as resp:
            if not 200 <= resp.status < 300:
                raise DeliveryFailed(f"HTTP {resp.status}")

    async def agent_reply(self, out: AgentReply) -> None:
        await self._post(out.to, out.key, {
            "type": "agent_message", "message_id": out.message_id, "conversation_id": out.to.conversation_id,
            "customer_id": out.to.customer_id, "agent_id": out.agent_id, "agent_name": out.agent_name,
            "text": out.text, "sent_at": out.sent_at})

    async def bot_answer(self, out: BotAnswer) -> None:
        await self._post(out.to, out.key, {
            "type": "bot_answer", "message_id": out.message_id, "conversation_id": out.to.conversation_id,
            "customer_id": out.to.customer_id, "in_reply_to": out.in_reply_to, "faq_id": out.faq_id,
            "text": out.text, "language": out.language, "sent_at": out.sent_at})

    async def connecting(self, out: Connecting) -> None:
        await self._post(out.to, out.key, {
            "type": "handoff", "handoff_id": out.handoff_id, "conversation_id": out.to.conversation_id,
            "customer_id": out.to.customer_id, "reason": out.reason, "skill": out.skill,
            "agent_name": out.agent_name, **out.wait.as_dict(), "sent_at": out.sent_at})

    async def out_of_hours(self, out: OutOfHours) -> None:
        await self._post(out.to, out.key, {
            "type": "out_of_hours", "handoff_id": out.handoff_id, "conversation_id": out.to.conversation_id,
            "customer_id": out.to.customer_id, "skill": out.skill, "opens_at": out.opens_at,
            "timezone": out.timezone, "sent_at": out.sent_at})

    async def rating_request(self, out: RatingRequest) -> None:
        await self._post(out.to, out.key, {
            "type": "rating_request", "handoff_id": out.handoff_id, "conversation_id": out.to.conversation_id,
            "customer_id": out.to.customer_id, "sent_at": out.sent_at})

    async def queue_full(self, out: QueueFullNotice) -> None:
        """The customer's next message (POST /v1/messages) is the message
        left, if they write one."""
        await self._post(out.to, out.key, {
            "type": "queue_full", "conversation_id": out.to.conversation_id, "customer_id": out.to.customer_id,
            "skill": out.skill, "queue_length": out.queue_length,
            "expected_wait_seconds": out.wait.as_dict()["expected_wait_seconds"],
            "basis": out.wait.as_dict()["basis"], "leave_message": True, "sent_at": out.sent_at})

    async def typing(self, out: Typing) -> None:
        """Not sent: a webhook per keystroke would cost more than it tells."""


# ------------------------------------------------------------------ inbound
async def post_message(request: web.Request) -> web.Response:
    app = request.app
    principal, raw, channel = await app[keys.AUTH].channel_request(request, app[keys.CLOCK].now())
    wait = app[keys.CHANNEL_LIMIT].acquire(principal.subject_id or "")
    if wait:
        raise RateLimited("too many messages from this channel; slow down", retry_after=wait)
    msg = s.decode(raw, s.MessageIn)
    check_text(request, msg.text)
    sent_at = parse_time(msg.sent_at, "sent_at")
    bind(channel=channel.id, conversation=msg.conversation_id)
    if app[keys.SETTINGS].log_message_text:
        log.info("customer_message", message_id=msg.message_id, text=msg.text)
    incoming = IncomingMessage(
        message_id=msg.message_id, conversation_id=msg.conversation_id,
        customer=Customer(msg.customer.id, msg.customer.name, msg.customer.is_vip), text=msg.text,
        sent_at=sent_at, locale=msg.locale,
    )
    return json(await app[keys.INBOUND].message(channel, incoming))


async def post_feedback(request: web.Request) -> web.Response:
    _, raw, channel = await request.app[keys.AUTH].channel_request(request, request.app[keys.CLOCK].now())
    fb = s.decode(raw, s.FeedbackIn)
    if fb.rating is None and not fb.resolved:
        raise InvalidInput("give a rating, resolved=true, or both", code="validation_failed")
    await request.app[keys.INBOUND].rating(channel, request.match_info["conversation_id"], fb.rating,
                                           resolved=fb.resolved, comment=fb.comment)
    return json({"ok": True})


async def post_close(request: web.Request) -> web.Response:
    _, _, channel = await request.app[keys.AUTH].channel_request(request, request.app[keys.CLOCK].now())
    await request.app[keys.INBOUND].left(channel, request.match_info["conversation_id"])
    return json({"ok": True})

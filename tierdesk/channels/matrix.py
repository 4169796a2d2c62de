"""The Matrix bridge: customers who write to tierdesk's bot account in a
Matrix room are served like any other channel's (matrix-nio, no
encryption). A room is a conversation (its id is the conversation id),
the sender is the customer, the event id is the message id.

**Inbound** is a sync loop: each batch of room events goes through the
Desk (``Inbound.message``), and only once the whole batch is committed is
the batch's sync token stored (storage/channels.py). A bridge that stops
anywhere, or a homeserver that goes away, is resumed from the last stored
token: events of a batch read twice are the same messages by their event
ids, and the Desk answers repeats without doing anything again. Invites are
accepted; a customer leaving the room closes the conversation; after a
person resolved it, a reply of just 1 to 5 is the customer's rating.

**Outbound** (bot answers, "connecting you to a person", agent replies,
rating requests) comes from the outbox like every channel's deliveries,
sent with the outbox item's key as the Matrix transaction id from a fixed
device (``TIERDESK_MATRIX_DEVICE_ID``): a send retried after a lost answer,
a homeserver restart or a bridge restart is dropped by the homeserver as a
repeat, so the room gets each message once.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from aiohttp import web
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinError,
    LoginResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from router.model import Customer
from router.services import IncomingMessage
from tierdesk.console.messages import MESSAGES
from tierdesk.errors import NotFound
from tierdesk.web import keys

from .port import AgentReply, BotAnswer, Connecting, OutOfHours, QueueFullNotice, RatingRequest, Typing, Undeliverable

log = structlog.get_logger(__name__)


def local_time(t: float | None, timezone: str | None) -> str:
    """An opening time as the skill's people read it: "2026-01-05 09:00
    (Asia/Shanghai)"; in UTC when the skill names no zone."""
    if t is None:
        return "?"
    zone = ZoneInfo(timezone) if timezone else UTC
    return f"{datetime.fromtimestamp(t, zone):%Y-%m-%d %H:%M} ({timezone or 'UTC'})"

CURSOR = "matrix.next_batch"
# Only what the bridge reads: room messages and memberships, no presence or
# account data; a first sync looks at no more than the last 50 events a room.
SYNC_FILTER = {"presence": {"types": []}, "account_data": {"types": []},
               "room": {"timeline": {"limit": 50}, "ephemeral": {"types": []},
                        "account_data": {"types": []}}}


class MatrixBridge:
    kind = "matrix"

    def __init__(self, app: web.Application) -> None:
        s = app[keys.SETTINGS]
        self.app = app
        self.homeserver = s.matrix_homeserver.rstrip("/")
        self.user_id = s.matrix_user_id
        self.password = s.matrix_password
        self.access_token = s.matrix_access_token
        self.device_id = s.matrix_device_id
        self.channel_id = s.matrix_channel_id
        self.sync_timeout = s.matrix_sync_timeout_seconds
        self.text = MESSAGES.get(s.matrix_language, MESSAGES["en"])
        self.client = AsyncClient(self.homeserver, self.user_id, device_id=self.device_id, store_path="",
                                  config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False,
                                                           max_timeouts=0, max_limit_exceeded=3,
                                                           request_timeout=self.sync_timeout + 30))
        self._logged_in = asyncio.Event()
        self._stopping = False
        # The sync token this run started from (None: the first sync ever).
        self.resumed_from: str | None = None
        self.batches = 0

    # ----------------------------------------------------------------- life
    async def run(self) -> None:
        wait = 0.5
        while not self._stopping:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the homeserver or the database is away: try again
                log.warning("matrix_bridge_retry", error=repr(exc), wait=wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)
            else:
                wait = 0.5

    async def close(self) -> None:
        self._stopping = True
        await self.client.close()

    async def _login(self) -> None:
        if self._logged_in.is_set():
            return
        if self.access_token:
            self.client.access_token = self.access_token
            self.client.user_id = self.user_id
        else:
            resp = await self.client.login(self.password, device_name="tierdesk")
            if not isinstance(resp, LoginResponse):
                raise RuntimeError(f"Matrix login failed: {resp}")
        self._logged_in.set()
        log.info("matrix_bridge_logged_in", user=self.user_id, device=self.device_id)

    async def _channel(self) -> Any:
        channel = await self.app[keys.ACCOUNTS].channel(self.channel_id)
        if channel is None or channel.kind != "matrix" or channel.disabled_at is not None:
            raise RuntimeError(f"TIERDESK_MATRIX_CHANNEL_ID {self.channel_id!r} is not an enabled matrix channel")
        return channel

    async def _run(self) -> None:
        await self._login()
        data = self.app[keys.CHANNEL_DATA]
        since = await data.cursor(self.channel_id, CURSOR)
        self.resumed_from = since
        log.info("matrix_bridge_syncing", since=since)
        while not self._stopping:
            channel = await self._channel()
            resp = await self.client.sync(timeout=int(self.sync_timeout * 1000), sync_filter=SYNC_FILTER,
                                          since=since, full_state=since is None)
            if not isinstance(resp, SyncResponse):
                raise RuntimeError(f"sync failed: {resp}")
            await self._take(channel, resp)
            # Stored only now: everything up to here is committed.
            await data.set_cursor(self.channel_id, CURSOR, resp.next_batch, self.app[keys.CLOCK].now())
            since = resp.next_batch
            self.batches += 1

    async def _take(self, channel: Any, resp: SyncResponse) -> None:
        for room_id in resp.rooms.invite:
            joined = await self.client.join(room_id)
            if isinstance(joined, JoinError):
                log.warning("matrix_join_failed", room=room_id, error=str(joined))
        inbound = self.app[keys.INBOUND]
        for room_id, room in resp.rooms.join.items():
            for event in room.timeline.events:
                if event.sender == self.user_id:
                    continue
                if isinstance(event, RoomMessageText):
                    await self._message(channel, room_id, event)
                elif isinstance(event, RoomMemberEvent) and event.membership == "leave":
                    with contextlib.suppress(NotFound):
                        await inbound.left(channel, room_id)

    async def _message(self, channel: Any, room_id: str, event: RoomMessageText) -> None:
        text = event.body.replace("\x00", "")
        if not text.strip():
            return
        limit = self.app[keys.SETTINGS].max_text_bytes
        # Longer than a message may be: what fits is kept (on a character boundary).
        text = text.encode("utf-8", "ignore")[:limit].decode("utf-8", "ignore")
        inbound = self.app[keys.INBOUND]
        if text.strip() in ("1", "2", "3", "4", "5"):
            conv = await self.app[keys.DESK].customer_conversation(channel.id, room_id)
            h = conv.handoff if conv is not None else None
            if (conv is not None and conv.status.value == "resolved" and conv.rating is None and h is not None
                    and h.first_reply_at is not None):
                await inbound.rating(channel, room_id, int(text.strip()))
                return
        await inbound.message(channel, IncomingMessage(
            message_id=event.event_id, conversation_id=room_id, customer=Customer(event.sender),
            text=text, sent_at=event.server_timestamp / 1000 if event.server_timestamp else None))

    # ------------------------------------------------------------- outbound
    def t(self, key: str, **values: Any) -> str:
        text = self.text.get(key) or MESSAGES["en"][key]
        return text.format(**values) if values else text

    async def _send(self, room_id: str, key: str, content: dict[str, Any]) -> None:
        if not self._logged_in.is_set():
            raise RuntimeError("the Matrix bridge is not logged in yet")
        resp = await self.client.room_send(room_id, "m.room.message", content, tx_id=key)
        if isinstance(resp, RoomSendResponse):
            return
        status = getattr(resp, "status_code", None)
        if status in ("M_FORBIDDEN", "M_NOT_FOUND"):
            raise Undeliverable(f"Matrix refused the message for {room_id}: {status}")
        raise RuntimeError(f"Matrix send failed: {status} {getattr(resp, 'message', '')}")

    async def bot_answer(self, out: BotAnswer) -> None:
        await self._send(out.to.conversation_id, out.key, {"msgtype": "m.text", "body": out.text})

    async def agent_reply(self, out: AgentReply) -> None:
        await self._send(out.to.conversation_id, out.key, {
            "msgtype": "m.text", "body": f"{out.agent_name}: {out.text}", "format": "org.matrix.custom.html",
            "formatted_body": f"<b>{html.escape(out.agent_name)}</b>: {html.escape(out.text)}"})

    async def connecting(self, out: Connecting) -> None:
        if out.agent_name is not None:
            body = self.t("widget.with_agent", name=out.agent_name)
        elif out.reason == "left_message":
            body = self.t("widget.message_left")
        else:
            wait = out.wait
            body = " ".join([
                self.t("widget.connecting"),
                *([self.t("widget.position", n=wait.position)] if wait.position else []),
                self.t("widget.wait_unknown") if wait.seconds is None else self.t(
                    "widget.wait", time=self._duration(wait.seconds))])
        await self._send(out.to.conversation_id, out.key, {"msgtype": "m.notice", "body": body})

    async def out_of_hours(self, out: OutOfHours) -> None:
        await self._send(out.to.conversation_id, out.key, {
            "msgtype": "m.notice", "body": self.t("widget.out_of_hours", time=local_time(out.opens_at, out.timezone))})

    async def queue_full(self, out: QueueFullNotice) -> None:
        """The customer's next message in the room is the message left."""
        wait = out.wait
        body = " ".join([self.t("widget.queue_full"), self.t("widget.wait_unknown") if wait.seconds is None else
                         self.t("widget.wait", time=self._duration(wait.seconds)), self.t("widget.leave_message_hint")])
        await self._send(out.to.conversation_id, out.key, {"msgtype": "m.notice", "body": body})

    async def rating_request(self, out: RatingRequest) -> None:
        await self._send(out.to.conversation_id, out.key, {
            "msgtype": "m.notice", "body": f"{self.t('widget.rate')} (1-5)"})

    async def typing(self, out: Typing) -> None:
        await self.client.room_typing(out.to.conversation_id, typing_state=out.typing, timeout=10_000)

    def _duration(self, seconds: float) -> str:
        if seconds < 60:
            return self.t("widget.seconds")
        if seconds < 3600:
            return self.t("widget.minutes", n=int(-(-seconds // 60)))
        return self.t("widget.hours", n=round(seconds / 3600, 1))

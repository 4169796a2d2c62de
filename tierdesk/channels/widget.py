"""The built-in web chat widget: one ``<script>`` tag on a company's pages
(``static/widget.js``, plain JavaScript kept as source), talking to the
endpoints below with a signed customer session.

**Customer session.** ``POST /v1/widget/channels/{id}/sessions`` makes up a
conversation and a customer id and returns a token binding the channel, the
conversation and the customer, signed with HMAC-SHA256 under the channel's
webhook secret (so rotating the secret ends old sessions once its overlap
is over, and every instance verifies without a database read). The widget
keeps it in localStorage; every request and the WebSocket carry it, and
every one of them acts on that conversation only: there is no parameter
naming another.

**Nothing lost, nothing twice.** The widget makes a message id before it
sends and sends again with the same id until it is acknowledged (through
``Desk.receive_message``: a repeat returns the first answer). It shows
messages by their server id and catches up from the last one it saw after
a reload or a dropped connection. The WebSocket tells it when to catch up
(an agent replied, the conversation ended) and where it is in the queue;
the messages themselves are read from the database, so a missed nudge only
delays a message until the next one or the periodic check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import secrets
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import msgspec
import orjson
import structlog
from aiohttp import WSMsgType, web

from router.model import Channel, Customer, Role, Sender
from router.services import IncomingMessage
from tierdesk.console.messages import MESSAGES, pick_language
from tierdesk.errors import InvalidInput, NotFound, Unauthenticated
from tierdesk.web import keys
from tierdesk.web import schemas as s
from tierdesk.web.wire import check_text, iso, json, only_params

from .port import AgentReply, BotAnswer, Connecting, OutOfHours, QueueFullNotice, RatingRequest, Typing

log = structlog.get_logger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
PREFIX = "td_customer_"
# How often an open widget socket re-reads its conversation without being
# told to (a nudge lost while the relay between instances reconnected).
CHECK_SECONDS = 15.0
# How often it looks whether the queue moved (in memory, no database read).
STATUS_SECONDS = 3.0


# ------------------------------------------------------------------ sessions
@dataclass(frozen=True, slots=True)
class CustomerSession:
    channel_id: str
    conversation_id: str  # the channel's id for it (external_id)
    customer_id: str
    name: str | None
    issued_at: float
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), f"tierdesk-widget.{payload}".encode(), hashlib.sha256).digest())


def issue(channel: Channel, now: float, lifetime: float, name: str | None) -> tuple[str, CustomerSession]:
    assert channel.webhook_secret
    session = CustomerSession(channel.id, "w_" + secrets.token_urlsafe(16), "wc_" + secrets.token_urlsafe(12),
                              name, now, now + lifetime)
    payload = _b64(orjson.dumps({"c": session.channel_id, "v": session.conversation_id, "u": session.customer_id,
                                 "n": name, "t": int(now), "e": int(session.expires_at)}))
    return f"{PREFIX}{payload}.{_mac(channel.webhook_secret, payload)}", session


def _claims(token: str) -> tuple[str, str, dict[str, Any]]:
    """The token's payload, its MAC and its claims, unverified."""
    try:
        payload, mac = token.removeprefix(PREFIX).split(".")
        claims = orjson.loads(_unb64(payload))
        assert isinstance(claims, dict) and isinstance(claims.get("c"), str)
        return payload, mac, claims
    except Exception:  # noqa: BLE001 - anything malformed is simply not a session
        raise Unauthenticated("not a valid customer session") from None


async def verify(token: str, channel_of: Callable[[str], Awaitable[Channel | None]], now: float) -> CustomerSession:
    payload, mac, c = _claims(token)
    channel = await channel_of(c["c"])
    if channel is None or channel.kind != "widget" or channel.disabled_at is not None:
        raise Unauthenticated("the session's channel no longer takes widget conversations")
    # Under the current secret, or the previous one while a rotation overlaps.
    if not any(hmac.compare_digest(mac, _mac(secret, payload)) for secret in channel.secrets(now)):
        raise Unauthenticated("not a valid customer session")
    try:
        session = CustomerSession(c["c"], str(c["v"]), str(c["u"]), c.get("n"), float(c["t"]), float(c["e"]))
    except (KeyError, TypeError, ValueError):
        raise Unauthenticated("not a valid customer session") from None
    if session.expires_at <= now:
        raise Unauthenticated("the customer session has expired; start a new one")
    return session


# The customer session of a request, set by the Authenticator.
SESSION: web.RequestKey[CustomerSession] = web.RequestKey("customer_session", CustomerSession)


async def _session(request: web.Request) -> tuple[CustomerSession, Channel]:
    app = request.app
    await app[keys.AUTH].require(request, Role.CUSTOMER)
    session = request[SESSION]
    channel = await app[keys.AUTH].channel(session.channel_id)
    assert channel is not None  # verified a moment ago
    return session, channel


# ------------------------------------------------------------------- sockets
class CustomerSockets:
    """The widget sockets open on this instance, by conversation. A nudge
    makes each re-read its conversation; with several instances the nudge
    goes over the relay too (the customer may be connected to any)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], weakref.WeakSet[_Socket]] = defaultdict(weakref.WeakSet)
        self._sending: set[asyncio.Task[Any]] = set()
        self.relay: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    def add(self, sock: _Socket) -> None:
        self._by_key[sock.key].add(sock)

    def discard(self, sock: _Socket) -> None:
        found = self._by_key.get(sock.key)
        if found is not None:
            found.discard(sock)
            if not found:
                del self._by_key[sock.key]

    def count(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def nudge(self, channel_id: str, conversation_id: str, frame: dict[str, Any] | None = None) -> None:
        if self.relay is not None:
            task = asyncio.ensure_future(self.relay({"kind": "customer_push", "channel_id": channel_id,
                                                     "conversation_id": conversation_id, "frame": frame}))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        self.here(channel_id, conversation_id, frame)

    def here(self, channel_id: str, conversation_id: str, frame: dict[str, Any] | None = None) -> None:
        for sock in list(self._by_key.get((channel_id, conversation_id), ())):
            sock.nudge(frame)

    def from_relay(self, message: dict[str, Any]) -> None:
        frame = message.get("frame")
        self.here(str(message.get("channel_id")), str(message.get("conversation_id")),
                  frame if isinstance(frame, dict) else None)

    async def close_all(self) -> None:
        for socks in list(self._by_key.values()):
            for sock in list(socks):
                await sock.ws.close(code=1001, message=b"server shutdown")


class _Socket:
    def __init__(self, key: tuple[str, str], ws: web.WebSocketResponse) -> None:
        self.key, self.ws = key, ws
        self.woken = asyncio.Event()
        self.frames: list[dict[str, Any]] = []

    def nudge(self, frame: dict[str, Any] | None) -> None:
        if frame is not None:
            self.frames.append(frame)
        self.woken.set()


# ------------------------------------------------------------------ adapter
class WidgetAdapter:
    """Outbound for the widget: the durable copy of every message is the
    conversation's history; delivering is telling the customer's open
    widgets to catch up."""

    kind = "widget"

    def __init__(self, sockets: CustomerSockets) -> None:
        self.sockets = sockets

    def _nudge(self, channel_id: str, conversation_id: str, frame: dict[str, Any] | None = None) -> None:
        self.sockets.nudge(channel_id, conversation_id, frame)

    async def agent_reply(self, out: AgentReply) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id)

    async def bot_answer(self, out: BotAnswer) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id)

    async def connecting(self, out: Connecting) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id)

    async def out_of_hours(self, out: OutOfHours) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id,
                    {"type": "out_of_hours", "opens_at": iso(out.opens_at)})

    async def rating_request(self, out: RatingRequest) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id)

    async def queue_full(self, out: QueueFullNotice) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id)

    async def typing(self, out: Typing) -> None:
        self._nudge(out.to.channel.id, out.to.conversation_id,
                    {"type": "typing", "typing": out.typing, "name": out.agent_name})


# ------------------------------------------------------------------- views
def _agent_names(request: web.Request) -> dict[str, str]:
    return {a.id: a.name for a in request.app[keys.DESK].agents()}


def message_view(m: Any, names: dict[str, str]) -> dict[str, Any]:
    """What a customer may see of a message: no intents, scores or ids of staff."""
    return {"id": m.id, "sender": m.sender.value, "text": m.text, "at": iso(m.at),
            "client_id": m.external_id if m.sender is Sender.CUSTOMER else None,
            "agent_name": names.get(m.agent_id or "", None) if m.sender is Sender.AGENT else None}


async def conversation_state(request: web.Request, channel: Channel, conversation_id: str) -> dict[str, Any]:
    desk = request.app[keys.DESK]
    conv = await desk.customer_conversation(channel.id, conversation_id)
    state: dict[str, Any] = {"status": "new", "queue_position": None, "expected_wait_seconds": None,
                             "basis": None, "agent_name": None, "rating": None, "rating_wanted": False,
                             "queue_full": False, "left_message": False, "opens_at": None}
    if conv is None:
        return state
    h = conv.handoff
    state |= {"status": conv.status.value, "rating": conv.rating}
    if conv.message_offer is not None:
        # Offered to leave a message: how long the wait would have been.
        full = await request.app[keys.CHANNELS].wait(conv.message_offer, desk.dispatcher.live_waiting(
            conv.message_offer) + 1)
        state |= {"queue_full": True, "queue_position": full.position, "expected_wait_seconds": full.as_dict()[
            "expected_wait_seconds"], "basis": full.as_dict()["basis"]}
        return state
    # Until an agent takes it: then the agent is shown as for any handoff.
    state["left_message"] = h is not None and h.is_open and h.left_message and h.agent_id is None
    if h is not None and h.is_open:
        if h.agent_id is not None:
            agent = desk.dispatcher.agents.get(h.agent_id)
            state["agent_name"] = agent.name if agent is not None else None
        else:
            wait = await request.app[keys.CHANNELS].wait(h.skill, desk.dispatcher.queue_position(h))
            state |= {"queue_position": wait.position, "expected_wait_seconds": wait.as_dict()[
                "expected_wait_seconds"], "basis": wait.as_dict()["basis"],
                # The skill is closed now (business hours): when it opens.
                "opens_at": iso(desk.opens_at(h))}
    # A person worked it and it is over: the customer is asked for a rating.
    state["rating_wanted"] = (conv.status.value == "resolved" and conv.rating is None and h is not None
                              and h.first_reply_at is not None)
    return state


async def _messages(request: web.Request, channel: Channel, conversation_id: str,
                    after: str | None) -> list[dict[str, Any]]:
    desk = request.app[keys.DESK]
    conv = await desk.customer_conversation(channel.id, conversation_id)
    if conv is None:
        return []
    _, records = await desk.history(None, conv.id)
    seen = [r for r in records if r.sender is not Sender.SYSTEM]
    if after is not None:
        ids = [r.id for r in seen]
        if after in ids:
            seen = seen[ids.index(after) + 1:]
    names = _agent_names(request)
    return [message_view(m, names) for m in seen]


# ----------------------------------------------------------------- handlers
class SessionIn(msgspec.Struct, forbid_unknown_fields=True):
    name: s.Name | None = None


class WidgetMessageIn(msgspec.Struct, forbid_unknown_fields=True):
    # Made by the widget before it first sends, the same on every retry.
    message_id: s.Id
    text: s.Text
    locale: s.Locale | None = None  # navigator.language


class WidgetFeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[float, msgspec.Meta(ge=1, le=5)]
    comment: s.Comment | None = None

    def __post_init__(self) -> None:
        self.rating = s._whole(self.rating, "rating")  # type: ignore[assignment]


async def _widget_channel(request: web.Request) -> Channel:
    channel = await request.app[keys.AUTH].channel(request.match_info["channel_id"])
    if channel is None or channel.kind != "widget" or channel.disabled_at is not None:
        raise NotFound(f"no web chat channel {request.match_info['channel_id']!r}")
    return channel


def _language(request: web.Request) -> str:
    return pick_language(request.query.get("lang"), request.headers.get("Accept-Language"))


async def get_widget_channel(request: web.Request) -> web.Response:
    """What the widget shows before the customer writes: the team's name, how
    soon it usually replies, and its text in the reader's language."""
    only_params(request, "lang")
    channel = await _widget_channel(request)
    lang = _language(request)
    usual = await request.app[keys.CHANNELS].estimator.usual_reply() if request.app[
        keys.CHANNELS].estimator else None
    return json({"channel_id": channel.id, "name": channel.name, "lang": lang,
                 "usual_reply_seconds": None if usual is None else round(usual, 1),
                 "messages": {k: v for k, v in MESSAGES[lang].items() if k.startswith("widget.")}})


async def create_session(request: web.Request) -> web.Response:
    channel = await _widget_channel(request)
    raw = await request.read()
    body = s.decode(raw, SessionIn) if raw.strip() else SessionIn()
    settings = request.app[keys.SETTINGS]
    token, session = issue(channel, request.app[keys.CLOCK].now(), settings.widget_session_lifetime_seconds,
                           body.name)
    return json({"session": token, "conversation_id": session.conversation_id, "customer_id": session.customer_id,
                 "expires_at": iso(session.expires_at)}, status=201)


def _after(request: web.Request) -> str | None:
    after = request.query.get("after")
    if after is not None and not after:
        raise InvalidInput("after must be a message id", code="validation_failed")
    return after


async def get_conversation(request: web.Request) -> web.Response:
    only_params(request, "after")
    session, channel = await _session(request)
    after = _after(request)
    return json({"conversation": await conversation_state(request, channel, session.conversation_id),
                 "messages": await _messages(request, channel, session.conversation_id, after)})


async def post_message(request: web.Request) -> web.Response:
    session, channel = await _session(request)
    msg = s.decode(await request.read(), WidgetMessageIn)
    check_text(request, msg.text)
    reply = await request.app[keys.INBOUND].message(channel, IncomingMessage(
        message_id=msg.message_id, conversation_id=session.conversation_id,
        customer=Customer(session.customer_id, session.name), text=msg.text, locale=msg.locale))
    messages = await _messages(request, channel, session.conversation_id, None)
    # From the customer's message on: it and what answered it.
    mine = next((i for i, m in enumerate(messages) if m["client_id"] == msg.message_id), None)
    return json({"reply": reply, "conversation": await conversation_state(request, channel, session.conversation_id),
                 "messages": messages[mine:] if mine is not None else []})


async def post_feedback(request: web.Request) -> web.Response:
    session, channel = await _session(request)
    fb = s.decode(await request.read(), WidgetFeedbackIn)
    await request.app[keys.INBOUND].rating(channel, session.conversation_id, fb.rating, comment=fb.comment)
    return json({"ok": True})


async def post_close(request: web.Request) -> web.Response:
    session, channel = await _session(request)
    await request.app[keys.INBOUND].left(channel, session.conversation_id)
    return json({"ok": True})


async def widget_ws(request: web.Request) -> web.WebSocketResponse:
    only_params(request, "token", "after")
    session, channel = await _session(request)
    last = _after(request)
    settings = request.app[keys.SETTINGS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096)
    await ws.prepare(request)
    sock = _Socket((channel.id, session.conversation_id), ws)
    sockets = request.app[keys.CUSTOMER_SOCKETS]
    sockets.add(sock)
    reader = asyncio.create_task(_read(request, ws, sock, channel, session, settings.ws_idle_timeout_seconds))
    try:
        state = await conversation_state(request, channel, session.conversation_id)
        messages = await _messages(request, channel, session.conversation_id, last)
        await ws.send_json({"type": "hello", "conversation": state, "messages": messages})
        if messages:
            last = messages[-1]["id"]
        loop = asyncio.get_running_loop()
        next_check = loop.time() + CHECK_SECONDS
        while not ws.closed and not reader.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sock.woken.wait(), STATUS_SECONDS)
            nudged = sock.woken.is_set()
            sock.woken.clear()
            frames, sock.frames = sock.frames, []
            try:
                for frame in frames:
                    await ws.send_json(frame)
                if nudged or loop.time() >= next_check:
                    next_check = loop.time() + CHECK_SECONDS
                    new = await _messages(request, channel, session.conversation_id, last)
                    if new:
                        await ws.send_json({"type": "messages", "messages": new})
                        last = new[-1]["id"]
                now_state = await conversation_state(request, channel, session.conversation_id)
                if now_state != state:
                    state = now_state
                    await ws.send_json({"type": "status", "conversation": state})
            except (ConnectionError, RuntimeError):
                break
            except Exception as exc:  # noqa: BLE001 - the database is away: the widget keeps its socket
                log.info("widget_refresh_failed", error=repr(exc))
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        sockets.discard(sock)
    return ws


async def _read(request: web.Request, ws: web.WebSocketResponse, sock: _Socket, channel: Channel,
                session: CustomerSession, idle: float) -> None:
    """What the widget sends: ``ping`` (it is alive), and ``typing``."""
    while not ws.closed:
        try:
            msg = await ws.receive(timeout=idle)
        except TimeoutError:
            await ws.close(code=1008, message=b"idle timeout")
            return
        if msg.type is WSMsgType.TEXT:
            if msg.data == "ping":
                await ws.send_str("pong")
            elif msg.data == '{"type":"typing"}':
                with contextlib.suppress(Exception):
                    await request.app[keys.INBOUND].typing(channel, session.conversation_id)
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            sock.woken.set()
            return


# ------------------------------------------------------------- static, demo
@web.middleware
async def cors(request: web.Request,
               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The widget runs on the company's pages, another origin: its API may be
    called from anywhere. It carries its session in a header, never a
    cookie, so no page can act for a customer without their token."""
    if not request.path.startswith("/v1/widget/"):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
    if not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def script(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ("widget.js", "widget.css", "demo.css"):
        raise NotFound("no such file")
    response = web.FileResponse(STATIC / name)
    # Embedded on other sites: short-lived cache, so fixes reach them soon.
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


DEMO = (HERE / "static" / "demo.html").read_text(encoding="utf-8")


async def demo(request: web.Request) -> web.Response:
    """A page of "your site" with the widget embedded, served for the demo."""
    channel = await _widget_channel(request)
    lang = _language(request)
    t = MESSAGES[lang]
    base = f"{request.scheme}://{request.host}"
    snippet = f'<script src="{base}/widget/widget.js" data-channel="{channel.id}" async></script>'
    page = (DEMO.replace("{{lang}}", lang).replace("{{title}}", html.escape(t["widget.demo_title"]))
            .replace("{{intro}}", html.escape(t["widget.demo_intro"]))
            .replace("{{try}}", html.escape(t["widget.demo_try"]))
            .replace("{{embed}}", html.escape(t["widget.demo_embed"]))
            .replace("{{snippet}}", html.escape(snippet))
            .replace("{{channel}}", html.escape(channel.id)))
    return web.Response(text=page, content_type="text/html", headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                                   "img-src 'self' data:; base-uri 'none'",
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/widget/channels/{channel_id}", get_widget_channel)
    r.add_post("/v1/widget/channels/{channel_id}/sessions", create_session)
    r.add_get("/v1/widget/conversation", get_conversation)
    r.add_post("/v1/widget/messages", post_message)
    r.add_post("/v1/widget/feedback", post_feedback)
    r.add_post("/v1/widget/close", post_close)
    r.add_get("/v1/widget/ws", widget_ws)
    r.add_get("/widget/demo/{channel_id}", demo)
    r.add_get("/widget/{name}", script)


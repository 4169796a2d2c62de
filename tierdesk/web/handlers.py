"""HTTP handlers: translate requests to use cases and results to JSON.

Nothing here decides anything about routing or metrics; each handler
authenticates, validates, calls the Desk, and renders.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any

import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from router import metrics as tiered
from router import rollup_report
from router.changes import MessageRecord
from router.ids import new_id
from router.model import AgentStatus, Channel, Principal, Role
from router.staffing import Target
from tierdesk import planning
from tierdesk.errors import Conflict, InvalidInput, NotFound
from tierdesk.logging import bind
from tierdesk.tokens import new_token, token_hash

from . import keys, monitor
from . import schemas as s
from .auth import bearer_token
from .prom import CONTENT_TYPE
from .sessions import SIGNED_IN
from .wire import body, check_text, iso, json, only_params, parse_time

log = structlog.get_logger(__name__)

# GET /v1/queue lists the head of the queue: at a flooded hour it holds tens
# of thousands, and listing all 58,000 of a bench run took 0.3 s of the
# event loop and 13 MB (500: 2-3 ms).
QUEUE_LIMIT_DEFAULT = 500
QUEUE_LIMIT_MAX = 5000


# ----------------------------------------------------------------- channels
# POST /v1/messages, feedback and close: the webhook channel's inbound side,
# in tierdesk/channels/webhook.py.


# ------------------------------------------------------------------- agents
def agent_view(a: Any, held: Mapping[str, int]) -> dict[str, Any]:
    """``held``: conversations per agent (Desk.conversations_held); the load
    is the slots they take, more than their number when some weigh more."""
    return {"id": a.id, "name": a.name, "skills": sorted(a.skills), "capacity": a.capacity,
            "status": a.status.value, "open_conversations": held.get(a.id, 0), "load": a.open_count,
            "disabled": a.disabled_at is not None, "levels": {s: a.level(s) for s in sorted(a.skills)}}


def message_view(m: MessageRecord) -> dict[str, Any]:
    customer = m.sender.value == "customer"
    return {"id": m.id, "sender": m.sender.value, "text": m.text, "at": iso(m.at), "agent_id": m.agent_id,
            "tier": m.tier.value if m.tier else None, "faq_id": m.intent if m.sender.value == "bot" else None,
            "channel_message_id": m.external_id,
            # What the classifier read in a customer message: why it was
            # answered or handed off, for the agent who picks it up.
            "intent": m.intent if customer else None,
            "confidence": None if not customer or m.confidence is None else round(m.confidence, 4)}


def conversation_view(request: web.Request, conv: Any) -> dict[str, Any]:
    view = request.app[keys.DESK].conversation_view(conv)
    for k in ("created_at", "updated_at"):
        view[k] = iso(view[k])
    if view["handoff"]:
        for k in ("requested_at", "assigned_at", "first_reply_at", "resolved_at"):
            view["handoff"][k] = iso(view["handoff"][k])
    return view


async def _agent(request: web.Request) -> Principal:
    principal = await request.app[keys.AUTH].require(request, Role.AGENT)
    bind(agent=principal.subject_id)
    return principal


async def get_me(request: web.Request) -> web.Response:
    p = await _agent(request)
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    return json(agent_view(desk.agent(p.subject_id or ""), desk.conversations_held()))


async def list_team(request: web.Request) -> web.Response:
    """The agents an agent can hand a conversation to: names, skills and
    whether they can take one now (no loads: that is for supervisors)."""
    p = await _agent(request)
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    return json({"agents": [{"id": a.id, "name": a.name, "skills": sorted(a.skills), "status": a.status.value,
                             "available": a.has_free_slot()} for a in desk.agents() if a.id != p.subject_id]})


async def my_metrics(request: web.Request) -> web.Response:
    """The agent's own human-tier figures over a range (default: since
    midnight UTC), from the same computation as GET /v1/metrics."""
    p = await _agent(request)
    only_params(request, "from", "to")
    now = request.app[keys.CLOCK].now()
    # By default up to and including this instant: a reply just made counts.
    end = parse_time(request.query.get("to"), "to") or math.nextafter(now, math.inf)
    start = parse_time(request.query.get("from"), "from") if "from" in request.query else now - now % 86400
    assert start is not None
    # An empty range is fine when it is the default's (at midnight sharp).
    if start > end or (start == end and "from" in request.query) or end - start > 31 * 86400:
        raise InvalidInput("from must be before to, at most 31 days apart", code="validation_failed")
    sla = request.app[keys.DESK].config.sla
    events = await request.app[keys.STORE].events_between(start, end)
    report = tiered.compute(events, start=start, end=end, now=now, sla=sla, group_by="agent", bucket=None)
    mine = [g for g in report["groups"] if g["key"].get("agent") == p.subject_id]
    if not mine:
        mine = tiered.compute([], start=start, end=end, now=now, sla=sla, group_by="agent", bucket=None)["groups"]
    human = mine[0]["human"]
    return json({"agent_id": p.subject_id, "from": report["from"], "to": report["to"],
                 "sla": report["sla"],
                 **{k: human[k] for k in ("messages", "response_rate_within_sla", "response_time",
                                          "first_response_time", "first_response_within_sla",
                                          "resolution_time")}})


async def put_status(request: web.Request) -> web.Response:
    p = await _agent(request)
    st = s.decode(await body(request), s.StatusIn)
    desk = request.app[keys.DESK]
    agent = await desk.update_agent(p.subject_id or "", status=AgentStatus(st.status))
    return json(agent_view(agent, desk.conversations_held()))


async def list_my_conversations(request: web.Request) -> web.Response:
    p = await _agent(request)
    convs = await request.app[keys.DESK].open_conversations(p.subject_id or "")
    return json({"conversations": [conversation_view(request, c) for c in convs]})


async def get_conversation(request: web.Request) -> web.Response:
    principal = await request.app[keys.AUTH].require(request, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    agent_id = principal.subject_id if principal.role is Role.AGENT else None
    conv, messages = await request.app[keys.DESK].history(agent_id, request.match_info["conversation_id"])
    return json({"conversation": conversation_view(request, conv), "messages": [message_view(m) for m in messages]})


async def get_earlier(request: web.Request) -> web.Response:
    principal = await request.app[keys.AUTH].require(request, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    agent_id = principal.subject_id if principal.role is Role.AGENT else None
    desk = request.app[keys.DESK]
    found = await desk.earlier(agent_id, request.match_info["conversation_id"])
    names = {a.id: a.name for a in desk.agents()}
    return json({"handoffs": [
        {"id": h.id, "conversation_id": h.conversation_id, "reason": h.reason.value, "skill": h.skill,
         "vip": h.vip, "agent_id": h.agent_id, "agent_name": names.get(h.agent_id or ""),
         "requested_at": iso(h.requested_at), "assigned_at": iso(h.assigned_at),
         "first_reply_at": iso(h.first_reply_at), "resolved_at": iso(h.resolved_at)}
        for h in found]})


async def post_reply(request: web.Request) -> web.Response:
    p = await _agent(request)
    reply = s.decode(await body(request), s.ReplyIn)
    check_text(request, reply.text)
    desk = request.app[keys.DESK]
    message = await desk.agent_reply(p.subject_id or "", request.match_info["conversation_id"], reply.text)
    request.app[keys.PROM].inc("tierdesk_agent_replies_total")
    request.app[keys.DELIVERY_WAKE]()
    return json(message_view(message), status=201)


async def post_typing(request: web.Request) -> web.Response:
    p = await _agent(request)
    typing = s.decode(await body(request) or b"{}", s.TypingIn).typing
    desk = request.app[keys.DESK]
    conv = await desk.agents_conversation(p.subject_id or "", request.match_info["conversation_id"])
    shown = await request.app[keys.CHANNELS].agent_typing(conv, typing, desk.agent(p.subject_id or "").name)
    return json({"ok": True, "shown": shown})


async def post_transfer(request: web.Request) -> web.Response:
    p = await _agent(request)
    tr = s.decode(await body(request), s.TransferIn)
    conv = await request.app[keys.DESK].transfer(p.subject_id or "", request.match_info["conversation_id"],
                                                  skill=tr.skill, to_agent=tr.agent_id)
    return json(conversation_view(request, conv))


async def post_resolve(request: web.Request) -> web.Response:
    p = await _agent(request)
    await request.app[keys.DESK].resolve(p.subject_id or "", request.match_info["conversation_id"])
    request.app[keys.DELIVERY_WAKE]()  # a rating request, if the channel asks for one
    return json({"ok": True})


async def agent_ws(request: web.Request) -> web.WebSocketResponse:
    p = await _agent(request)
    agent_id = p.subject_id or ""
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    desk.agent(agent_id)
    settings = request.app[keys.SETTINGS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=settings.ws_max_message_bytes)
    await ws.prepare(request)
    sockets = request.app[keys.SOCKETS]
    signed_in = request.get(SIGNED_IN)
    if signed_in is not None:  # the console: signing out or a disabled account ends it
        sockets.add(agent_id, ws, session=signed_in.id_hash)
    else:  # a token: revoking it ends it
        sockets.add(agent_id, ws, token_hash=token_hash(bearer_token(request)))
    presence = request.app[keys.PRESENCE]
    try:
        try:
            await presence.connected(agent_id)
        except Exception as exc:  # noqa: BLE001 - the socket still serves; presence catches up on renewal
            log.warning("presence_not_recorded", agent=agent_id, error=repr(exc))
        convs = await desk.open_conversations(agent_id)
        await ws.send_json({"type": "hello", "agent_id": agent_id,
                            "conversations": [conversation_view(request, c) for c in convs]})
        # The socket is for pushes; agents act through the REST API.
        await answer_pings(ws, settings.ws_idle_timeout_seconds)
    finally:
        sockets.discard(agent_id, ws)
        try:
            await presence.disconnected(agent_id)
        except Exception as exc:  # noqa: BLE001 - presence then runs out on its own, a little later
            log.warning("presence_not_recorded", agent=agent_id, error=repr(exc))
    return ws


# -------------------------------------------------------------------- admin
async def create_agent(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    a = s.decode(await body(request), s.AgentIn)
    desk = request.app[keys.DESK]
    agent = await desk.create_agent(a.name, a.skills, a.capacity, AgentStatus(a.status), levels=a.levels)
    token = new_token(Role.AGENT)
    await request.app[keys.ACCOUNTS].add_credential(token_hash(token), Principal(Role.AGENT, agent.id),
                                                    request.app[keys.CLOCK].now())
    return json(agent_view(agent, {}) | {"token": token}, status=201)


async def list_agents(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    held = desk.conversations_held()
    return json({"agents": [agent_view(a, held) for a in desk.agents()]})


async def patch_agent(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    patch = s.decode(await body(request), s.AgentPatch)
    desk = request.app[keys.DESK]
    agent = await desk.update_agent(
        request.match_info["agent_id"], name=patch.name, skills=patch.skills, capacity=patch.capacity,
        status=AgentStatus(patch.status) if patch.status else None, levels=patch.levels,
    )
    return json(agent_view(agent, desk.conversations_held()))


async def rotate_token(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    kind = request.match_info["kind"]
    subject = request.match_info["subject_id"]
    role = {"agents": Role.AGENT, "channels": Role.CHANNEL}[kind]
    if role is Role.AGENT:
        await request.app[keys.DESK].ensure_ready()
        if request.app[keys.DESK].agent(subject).disabled_at is not None:
            raise Conflict(f"agent {subject!r} is disabled", code="agent_disabled")
    else:
        channel = await request.app[keys.ACCOUNTS].channel(subject)
        if channel is None:
            raise NotFound(f"channel {subject!r} does not exist")
        if channel.disabled_at is not None:
            raise Conflict(f"channel {subject!r} is disabled", code="channel_disabled")
    principal = Principal(role, subject)
    now = request.app[keys.CLOCK].now()
    accounts = request.app[keys.ACCOUNTS]
    await accounts.revoke_credentials(principal, now)
    token = new_token(role)
    await accounts.add_credential(token_hash(token), principal, now)
    await _tokens_revoked(request, principal)
    return json({"token": token}, status=201)


async def disable_agent(request: web.Request) -> web.Response:
    """DELETE an agent: disabled for good (history and metrics keep them),
    their tokens revoked, their sockets closed, their conversations requeued."""
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    agent_id = request.match_info["agent_id"]
    desk = request.app[keys.DESK]
    agent, requeued = await desk.disable_agent(agent_id)
    await _revoke(request, Principal(Role.AGENT, agent_id))
    return json(agent_view(agent, desk.conversations_held()) | {"requeued": requeued})


async def _revoke(request: web.Request, principal: Principal) -> None:
    """Revoke every token of ``principal`` and end what they hold open."""
    app = request.app
    await app[keys.ACCOUNTS].revoke_credentials(principal, app[keys.CLOCK].now())
    await _tokens_revoked(request, principal)


async def _tokens_revoked(request: web.Request, principal: Principal) -> None:
    app = request.app
    app[keys.AUTH].forget(principal)
    if principal.role is Role.AGENT:
        # At once here, and on the other instances through the relay; their
        # own periodic check is the backstop (docs/reliability.md).
        await app[keys.SOCKETS].revalidate(app[keys.ACCOUNTS].live_token_hashes)
        app[keys.SOCKETS].announce_revocation()


def channel_view(c: Channel, now: float) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "kind": c.kind, "webhook_url": c.webhook_url,
            "require_signature": c.require_signature, "notices": c.notices, "disabled": c.disabled_at is not None,
            "previous_secret_until": iso(c.previous_secret_until)
            if c.previous_webhook_secret and (c.previous_secret_until or 0) > now else None}


async def patch_channel(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    patch = s.decode(await body(request), s.ChannelPatch)
    channel_id = request.match_info["channel_id"]
    accounts = request.app[keys.ACCOUNTS]
    channel = await accounts.channel(channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id!r} does not exist")
    if channel.disabled_at is not None:
        raise Conflict(f"channel {channel_id!r} is disabled", code="channel_disabled")
    now = request.app[keys.CLOCK].now()
    values: dict[str, Any] = {}
    if patch.name is not msgspec.UNSET:
        values["name"] = patch.name
    if patch.webhook_url is not msgspec.UNSET:
        values["webhook_url"] = patch.webhook_url
    if patch.require_signature is not msgspec.UNSET:
        values["require_signature"] = patch.require_signature
    if patch.notices is not msgspec.UNSET:
        values["notices"] = patch.notices
    secret = None
    if patch.rotate_webhook_secret:
        secret = _webhook_secret()
        values |= {"webhook_secret": secret, "previous_webhook_secret": channel.webhook_secret,
                   "previous_secret_until": now + patch.secret_overlap_seconds}
    if values:
        updated = await accounts.update_channel(channel_id, **values)
        assert updated is not None
        channel = updated
        request.app[keys.AUTH].forget_channel(channel_id)
        request.app[keys.CHANNELS].note(channel)
        if keys.DELIVERY in request.app:
            request.app[keys.DELIVERY].forget_channel(channel_id)
    view = channel_view(channel, now)
    if secret is not None:
        view["webhook_secret"] = secret  # shown once
    return json(view)


async def disable_channel(request: web.Request) -> web.Response:
    """DELETE a channel: its tokens revoked, its requests refused, its
    undelivered replies dead-lettered; its conversations stay in the metrics."""
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    channel_id = request.match_info["channel_id"]
    accounts = request.app[keys.ACCOUNTS]
    now = request.app[keys.CLOCK].now()
    channel = await accounts.channel(channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id!r} does not exist")
    if channel.disabled_at is None:
        channel = await accounts.update_channel(channel_id, disabled_at=now) or channel
        await _revoke(request, Principal(Role.CHANNEL, channel_id))
        request.app[keys.AUTH].forget_channel(channel_id)
        request.app[keys.CHANNELS].note(channel)
        if keys.DELIVERY in request.app:
            request.app[keys.DELIVERY].forget_channel(channel_id)
    return json(channel_view(channel, now))


TOKEN_ROLES = {"channel": Role.CHANNEL, "agent": Role.AGENT, "supervisor": Role.SUPERVISOR, "admin": Role.ADMIN}


async def list_tokens(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    only_params(request, "role", "subject_id", "include_revoked")
    q = request.query
    role = q.get("role")
    if role is not None and role not in TOKEN_ROLES:
        raise InvalidInput("role must be channel, agent, supervisor or admin", code="validation_failed")
    include_revoked = q.get("include_revoked", "false")
    if include_revoked not in ("true", "false"):
        raise InvalidInput("include_revoked must be true or false", code="validation_failed")
    found = await request.app[keys.ACCOUNTS].credentials(
        TOKEN_ROLES[role] if role else None, q.get("subject_id"), include_revoked == "true")
    return json({"tokens": [
        {"token_id": c.token_id, "role": c.role.value, "subject_id": c.subject_id, "created_at": iso(c.created_at),
         "revoked_at": iso(c.revoked_at)} for c in found
    ]})


async def revoke_token(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    token_id = request.match_info["token_id"]
    if not (8 <= len(token_id) <= 64) or any(c not in "0123456789abcdef" for c in token_id):
        raise InvalidInput("token_id is 8-64 lowercase hex digits, as GET /v1/admin/tokens lists it",
                           code="validation_failed")
    principal = await request.app[keys.ACCOUNTS].revoke_token(token_id, request.app[keys.CLOCK].now())
    if principal is None:
        raise NotFound(f"no live token {token_id!r} (or the id is ambiguous: give more of it)")
    await _tokens_revoked(request, principal)
    return json({"token_id": token_id, "role": principal.role.value, "subject_id": principal.subject_id,
                 "revoked": True})


async def create_admin_token(request: web.Request) -> web.Response:
    """An admin token kept in the database: listable and revocable, unlike
    TIERDESK_ADMIN_TOKEN (docs/api.md, rotating the admin token)."""
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    token = new_token(Role.ADMIN)
    subject = new_id("adm")
    await request.app[keys.ACCOUNTS].add_credential(token_hash(token), Principal(Role.ADMIN, subject),
                                                    request.app[keys.CLOCK].now())
    return json({"token": token, "subject_id": subject}, status=201)


def _webhook_secret() -> str:
    return new_token(Role.CHANNEL).replace("td_channel_", "whsec_")


async def create_channel(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    c = s.decode(await body(request), s.ChannelIn)
    now = request.app[keys.CLOCK].now()
    channel = Channel(id=new_id("chn"), name=c.name, webhook_url=c.webhook_url,
                      webhook_secret=_webhook_secret(), created_at=now,
                      require_signature=c.require_signature, kind=c.kind, notices=c.notices)
    accounts = request.app[keys.ACCOUNTS]
    await accounts.create_channel(channel)
    request.app[keys.CHANNELS].note(channel)
    token = new_token(Role.CHANNEL)
    await accounts.add_credential(token_hash(token), Principal(Role.CHANNEL, channel.id), now)
    return json(channel_view(channel, now) | {"webhook_secret": channel.webhook_secret, "token": token},
                status=201)


async def list_channels(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    channels = await request.app[keys.ACCOUNTS].channels()
    now = request.app[keys.CLOCK].now()
    return json({"channels": [channel_view(c, now) for c in channels]})


async def get_queue(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    only_params(request, "limit")
    try:
        limit = int(request.query.get("limit", str(QUEUE_LIMIT_DEFAULT)))
    except ValueError:
        raise InvalidInput("limit must be a whole number", code="validation_failed") from None
    if not 1 <= limit <= QUEUE_LIMIT_MAX:
        raise InvalidInput(f"limit must be in [1, {QUEUE_LIMIT_MAX}]", code="validation_failed")
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    waiting = desk.queue(limit)
    now = request.app[keys.CLOCK].now()
    return json({"total": desk.queue_length(),
                 "first_response_sla_seconds": desk.config.sla.human_first_response_seconds,
                 "skills": [{"skill": skill, "waiting": n, "oldest_requested_at": iso(oldest),
                             "oldest_wait_seconds": round(max(0.0, now - oldest), 3)}
                            for skill, (n, oldest) in sorted(desk.queue_by_skill().items())],
                 "waiting": [
        {"handoff_id": h.id, "conversation_id": h.conversation_id, "skill": h.skill, "vip": h.vip,
         "reason": h.reason.value, "requested_at": iso(h.requested_at), "position": desk.dispatcher.queue_position(h)}
        for h in waiting
    ]})


async def create_supervisor_token(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    token = new_token(Role.SUPERVISOR)
    await request.app[keys.ACCOUNTS].add_credential(token_hash(token), Principal(Role.SUPERVISOR, new_id("sup")),
                                                    request.app[keys.CLOCK].now())
    return json({"token": token}, status=201)


async def get_live(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN, Role.SUPERVISOR)
    only_params(request)
    desk = request.app[keys.DESK]
    await desk.ensure_ready()
    view = desk.live(request.app[keys.SETTINGS].sla_warning_margin)
    alerts = await request.app[keys.ALERTS].open_alerts()
    return json({"generated_at": iso(request.app[keys.CLOCK].now()),
                 "first_response_sla_seconds": desk.config.sla.human_first_response_seconds,
                 "warning_margin": request.app[keys.SETTINGS].sla_warning_margin, **view,
                 "alerts": [monitor.wire(a) for a in alerts.values()]})


async def answer_pings(ws: web.WebSocketResponse, idle_timeout: float) -> None:
    """Until the socket closes: the client's "ping" proves it is alive, and a
    socket silent for longer than the idle timeout is closed, so dead clients
    don't pile up. Anything else the client sends is ignored."""
    while not ws.closed:
        try:
            msg = await ws.receive(timeout=idle_timeout)
        except TimeoutError:
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"idle timeout")
            return
        if msg.type is WSMsgType.TEXT and msg.data == "ping":
            await ws.send_str("pong")
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


async def live_ws(request: web.Request) -> web.WebSocketResponse:
    """Supervisors' pushes: alerts as they are raised and cleared."""
    await request.app[keys.AUTH].require(request, Role.SUPERVISOR, Role.ADMIN)
    settings = request.app[keys.SETTINGS]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=settings.ws_max_message_bytes)
    await ws.prepare(request)
    sockets = request.app[keys.SUPERVISOR_SOCKETS]
    sockets.add(ws)
    try:
        alerts = await request.app[keys.ALERTS].open_alerts()
        await ws.send_json({"type": "hello", "alerts": [monitor.wire(a) for a in alerts.values()]})
        await answer_pings(ws, settings.ws_idle_timeout_seconds)
    finally:
        sockets.discard(ws)
    return ws


async def list_deliveries(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    only_params(request, "status")
    status = request.query.get("status", "dead")
    if status not in ("pending", "delivered", "dead"):
        raise InvalidInput("status must be pending, delivered or dead", code="validation_failed")
    items = await request.app[keys.OUTBOX].list(status)
    return json({"deliveries": [
        {"id": d.id, "idempotency_key": d.idempotency_key, "channel_id": d.channel_id,
         "conversation_id": d.conversation_id, "kind": d.kind,
         "attempts": d.attempts, "status": d.status, "last_error": d.last_error, "created_at": iso(d.created_at)}
        for d in items
    ]})


async def replay_deliveries(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    n = await request.app[keys.OUTBOX].replay(request.app[keys.CLOCK].now())
    request.app[keys.DELIVERY_WAKE]()
    return json({"replayed": n})


# ------------------------------------------------------------------ metrics
async def get_metrics(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.SUPERVISOR, Role.ADMIN)
    q = request.query
    only_params(request, "from", "to", "group_by", "bucket", "exact")
    clock = request.app[keys.CLOCK]
    now = clock.now()
    end = parse_time(q.get("to"), "to") if "to" in q else now
    start = parse_time(q.get("from"), "from") if "from" in q else end - 86400  # type: ignore[operator]
    assert start is not None and end is not None
    if start >= end:
        raise InvalidInput("from must be before to", code="validation_failed")
    if end - start > 400 * 86400:
        raise InvalidInput("the range may span at most 400 days", code="validation_failed")
    group_by = q.get("group_by", "tier")
    if group_by not in ("tier", "skill", "agent", "channel"):
        raise InvalidInput("group_by must be tier, skill, agent or channel", code="validation_failed")
    bucket = q.get("bucket")
    if bucket not in (None, "hour", "day"):
        raise InvalidInput("bucket must be hour or day", code="validation_failed")
    exact = q.get("exact", "false")
    if exact not in ("true", "false"):
        raise InvalidInput("exact must be true or false", code="validation_failed")
    sla = request.app[keys.DESK].config.sla
    store = request.app[keys.STORE]
    names = await _group_names(request, group_by)
    # Hourly rollups answer whole hours grouped by tier or channel at once;
    # anything finer (a skill, an agent, a range cut mid-hour) replays the
    # event log, which is exact but reads every event of the range.
    if (exact == "false" and group_by in ("tier", "channel")
            and start % 3600 == 0 and end % 3600 == 0):
        rows, histograms = await store.rollup_rows(start, end)
        pending = await store.pending(now, sla, start, end)
        report = rollup_report.report(rows, histograms, pending, start=start, end=end, now=now, sla=sla,
                                      group_by=group_by, bucket=bucket, names=names)  # type: ignore[arg-type]
        report["source"] = "rollups"
    else:
        events = await store.events_between(start, end)
        report = tiered.compute(events, start=start, end=end, now=now, sla=sla, group_by=group_by,  # type: ignore[arg-type]
                                bucket=bucket, names=names)  # type: ignore[arg-type]
        report["source"] = "replay"
    return json(report)


async def _group_names(request: web.Request, group_by: str) -> dict[str, str]:
    """Agents' or channels' names by id, for the report's group labels."""
    if group_by == "agent":
        return {a.id: a.name for a in request.app[keys.DESK].agents()}
    if group_by == "channel":
        return {c.id: c.name for c in await request.app[keys.ACCOUNTS].channels()}
    return {}


# ----------------------------------------------------------------- staffing
def _number(request: web.Request, name: str, default: float | None, low: float, high: float, *,
            low_open: bool = False, whole: bool = False) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a {'whole ' if whole else ''}number", code="validation_failed") from None
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = "(" if low_open else "["
        raise InvalidInput(f"{name} must be in {bound}{low:g}, {high:g}]", code="validation_failed")
    return value


async def get_staffing(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.SUPERVISOR, Role.ADMIN)
    only_params(request, "date", "weeks", "service_level", "within", "first_response", "concurrency", "shrinkage")
    if "date" not in request.query:
        raise InvalidInput("date is required (YYYY-MM-DD)", code="validation_failed")
    start = planning.day_start(request.query["date"])
    settings = request.app[keys.SETTINGS]
    service_level = _number(request, "service_level", 0.8, 0.0, 0.999, low_open=True)
    within = _number(request, "within", 20.0, 0.0, 3600.0, low_open=True)
    first_response = _number(request, "first_response", settings.sla_human_first_response_seconds, 0.0,
                             86400.0, low_open=True)
    concurrency = _number(request, "concurrency", 0, 1, 100, whole=True)
    shrinkage = _number(request, "shrinkage", 0.3, 0.0, 0.9)
    weeks = _number(request, "weeks", 4, 1, 52, whole=True)
    target = Target(service_level, within, first_response, int(concurrency), shrinkage)  # type: ignore[arg-type]
    report = await planning.staffing_report(request.app[keys.HISTORY], start, target, weeks=int(weeks),  # type: ignore[arg-type]
                                            now=request.app[keys.CLOCK].now())
    return json(report)


# ---------------------------------------------------------------------- ops
async def healthz(request: web.Request) -> web.Response:
    return json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[keys.STORE].ping(), 2.0)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    model = request.app[keys.MODEL]
    checks["model"] = f"ok ({model.version})" if model.ready else "not loaded"
    ready = all(v.startswith("ok") for v in checks.values())
    return json({"status": "ready" if ready else "not ready", "checks": checks}, status=200 if ready else 503)


async def prometheus(request: web.Request) -> web.Response:
    worker = request.app.get(keys.WORKER_METRICS)
    others = await worker.others() if worker is not None else []
    return web.Response(body=request.app[keys.PROM].render(others).encode("utf-8"),
                        headers={"Content-Type": f"{CONTENT_TYPE}; charset=utf-8", "X-Content-Type-Options": "nosniff"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[keys.OPENAPI], content_type="application/yaml")

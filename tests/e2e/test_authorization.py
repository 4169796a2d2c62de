"""Who may call what: every endpoint × every role (no token, channel, agent,
supervisor, admin), checked against the roles the OpenAPI document
declares; plus the rules that are about *which* agent or channel asks."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from sqlalchemy import select

from storage import tables
from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.web import keys
from tierdesk.web.app import OPENAPI_PATH

ROOT = Path(__file__).resolve().parents[2]
FAQ = "how do I reset my password"
BILLING = "I was charged twice for my order and want my money back"
ROLES = ("none", "channel", "agent", "supervisor", "admin", "customer")
PUBLIC = frozenset(ROLES)
TABLES = ("messages", "events", "conversations", "handoffs", "agents", "channels", "credentials", "outbox", "people",
          "sessions")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {conv}, {ann}, {bob}, {other_channel} are filled in from the world
    allowed: frozenset[str]
    status: int = 200
    body: Any = None


def new_message(role: str) -> dict[str, Any]:
    return {"message_id": f"m-auth-{role}", "conversation_id": f"auth-{role}", "customer": {"id": "c"}, "text": FAQ}


ENDPOINTS: dict[str, Endpoint] = {
    "post_message": Endpoint("POST", "/v1/messages", frozenset({"channel"}), body=new_message),
    "post_feedback": Endpoint("POST", "/v1/conversations/order-1/feedback", frozenset({"channel"}),
                              body={"rating": 4}),
    "post_close": Endpoint("POST", "/v1/conversations/faq-1/close", frozenset({"channel"})),
    "get_me": Endpoint("GET", "/v1/agents/me", frozenset({"agent"})),
    "put_status": Endpoint("PUT", "/v1/agents/me/status", frozenset({"agent"}), body={"status": "away"}),
    "list_my_conversations": Endpoint("GET", "/v1/agents/me/conversations", frozenset({"agent"})),
    "my_metrics": Endpoint("GET", "/v1/agents/me/metrics", frozenset({"agent"})),
    "list_team": Endpoint("GET", "/v1/agents/team", frozenset({"agent"})),
    "agent_ws": Endpoint("GET", "/v1/agents/ws", frozenset({"agent"}), status=101),
    "get_conversation": Endpoint("GET", "/v1/conversations/{conv}", frozenset({"agent", "supervisor", "admin"})),
    "post_reply": Endpoint("POST", "/v1/conversations/{conv}/replies", frozenset({"agent"}), 201,
                           {"text": "On it."}),
    "get_earlier": Endpoint("GET", "/v1/conversations/{conv}/earlier", frozenset({"agent", "supervisor", "admin"})),
    "post_typing": Endpoint("POST", "/v1/conversations/{conv}/typing", frozenset({"agent"}), body={"typing": True}),
    "post_transfer": Endpoint("POST", "/v1/conversations/{conv}/transfer", frozenset({"agent"}),
                              body={"skill": "tech"}),
    "post_resolve": Endpoint("POST", "/v1/conversations/{conv}/resolve", frozenset({"agent"})),
    "create_agent": Endpoint("POST", "/v1/admin/agents", frozenset({"admin"}), 201,
                             {"name": "dee", "skills": ["billing"], "capacity": 1}),
    "list_agents": Endpoint("GET", "/v1/admin/agents", frozenset({"admin", "supervisor"})),
    "patch_agent": Endpoint("PATCH", "/v1/admin/agents/{ann}", frozenset({"admin"}), body={"capacity": 3}),
    "rotate_agent_token": Endpoint("POST", "/v1/admin/agents/{bob}/token", frozenset({"admin"}), 201),
    "rotate_channel_token": Endpoint("POST", "/v1/admin/channels/{other_channel}/token", frozenset({"admin"}), 201),
    "create_channel": Endpoint("POST", "/v1/admin/channels", frozenset({"admin"}), 201, {"name": "sms"}),
    "list_channels": Endpoint("GET", "/v1/admin/channels", frozenset({"admin"})),
    "create_supervisor_token": Endpoint("POST", "/v1/admin/supervisor-tokens", frozenset({"admin"}), 201),
    "disable_agent": Endpoint("DELETE", "/v1/admin/agents/{bob}", frozenset({"admin"})),
    "patch_channel": Endpoint("PATCH", "/v1/admin/channels/{other_channel}", frozenset({"admin"}),
                              body={"name": "mail"}),
    "disable_channel": Endpoint("DELETE", "/v1/admin/channels/{other_channel}", frozenset({"admin"})),
    "create_admin_token": Endpoint("POST", "/v1/admin/admin-tokens", frozenset({"admin"}), 201),
    "list_tokens": Endpoint("GET", "/v1/admin/tokens", frozenset({"admin"})),
    # No live token has this id: refused for the others, 404 for an admin.
    "revoke_token": Endpoint("DELETE", "/v1/admin/tokens/0123456789abcdef", frozenset({"admin"}), 404),
    "list_people": Endpoint("GET", "/v1/admin/people", frozenset({"admin"})),
    "create_person": Endpoint("POST", "/v1/admin/people", frozenset({"admin"}), 201,
                              {"email": "sue@example.test", "name": "Sue", "role": "supervisor",
                               "password": "long enough pw"}),
    # an unknown person: 404 once past the authorization check
    "patch_person": Endpoint("PATCH", "/v1/admin/people/per_missing", frozenset({"admin"}), 404,
                             {"disabled": True}),
    "list_deliveries": Endpoint("GET", "/v1/admin/deliveries", frozenset({"admin"})),
    "replay_deliveries": Endpoint("POST", "/v1/admin/deliveries/replay", frozenset({"admin"})),
    "get_queue": Endpoint("GET", "/v1/queue", frozenset({"admin", "supervisor"})),
    "get_live": Endpoint("GET", "/v1/live", frozenset({"admin", "supervisor"})),
    "live_ws": Endpoint("GET", "/v1/live/ws", frozenset({"admin", "supervisor"}), status=101),
    "get_metrics": Endpoint("GET", "/v1/metrics", frozenset({"supervisor", "admin"})),
    "get_staffing": Endpoint("GET", "/v1/staffing?date=2026-01-08", frozenset({"supervisor", "admin"})),
    # FAQ tuning. This fixture's model has no versions on disk, so activate,
    # shadow and rollback end in 404 once past the authorization check.
    "list_faq_models": Endpoint("GET", "/v1/faq/models", frozenset({"admin", "supervisor"})),
    "activate_faq_model": Endpoint("POST", "/v1/faq/models/v0099/activate", frozenset({"admin"}), 404),
    "shadow_faq_model": Endpoint("GET", "/v1/faq/models/v0099/shadow", frozenset({"admin", "supervisor"}), 404),
    "rollback_faq_model": Endpoint("POST", "/v1/faq/models/rollback", frozenset({"admin"}), 404),
    # agents too: the console's canned answers come from it
    "list_faq_intents": Endpoint("GET", "/v1/faq/intents", frozenset({"admin", "supervisor", "agent"})),
    "patch_faq_intent": Endpoint("PATCH", "/v1/faq/intents/reset_password", frozenset({"admin"}),
                                 body={"answer": "Use the reset link."}),
    "reset_faq_answer": Endpoint("DELETE", "/v1/faq/intents/reset_password/answer", frozenset({"admin"})),
    "reload_faq": Endpoint("POST", "/v1/faq/reload", frozenset({"admin"})),
    "list_faq_misses": Endpoint("GET", "/v1/faq/misses", frozenset({"admin", "supervisor"})),
    "list_faq_labels": Endpoint("GET", "/v1/faq/labels", frozenset({"admin", "supervisor"})),
    # no such message: 404 once past the authorization check
    "put_faq_label": Endpoint("PUT", "/v1/faq/labels/msg_missing", frozenset({"admin", "supervisor", "agent"}),
                              404, {"intent": None}),
    # the web chat widget: public to start, then the customer's session only
    "widget_channel": Endpoint("GET", "/v1/widget/channels/{widget_channel}", PUBLIC),
    "widget_session": Endpoint("POST", "/v1/widget/channels/{widget_channel}/sessions", PUBLIC, 201, {}),
    "widget_conversation": Endpoint("GET", "/v1/widget/conversation", frozenset({"customer"})),
    "widget_message": Endpoint("POST", "/v1/widget/messages", frozenset({"customer"}),
                               body={"message_id": "wm-auth", "text": FAQ}),
    "widget_feedback": Endpoint("POST", "/v1/widget/feedback", frozenset({"customer"}), body={"rating": 4}),
    "widget_close": Endpoint("POST", "/v1/widget/close", frozenset({"customer"})),
    "widget_ws": Endpoint("GET", "/v1/widget/ws", frozenset({"customer"}), status=101),
    "healthz": Endpoint("GET", "/healthz", PUBLIC),
    "readyz": Endpoint("GET", "/readyz", PUBLIC),
    "prometheus": Endpoint("GET", "/metrics", PUBLIC),
    "openapi": Endpoint("GET", "/v1/openapi.yaml", PUBLIC),
}


@dataclass
class World:
    api: Api
    tokens: dict[str, str | None]
    ids: dict[str, str]

    def path(self, template: str) -> str:
        return template.format(**self.ids)

    async def counts(self) -> dict[str, int]:
        return {t: await self.api.app[keys.STORE].count(t) for t in TABLES}


@pytest.fixture
async def world(app_client: Api) -> World:
    api = app_client
    # the knowledge base the test model was trained on, for the FAQ endpoints that re-read it
    api.app[keys.MODEL].knowledge_base = ROOT / "knowledge_base"
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    bob = await api.add_agent("bob", ["billing", "tech"], capacity=2)
    other = await api.admin("POST", "/v1/admin/channels", json={"name": "email"}, expect=201)
    handoff = await api.send("order-1", BILLING, message_id="m-order-1")
    assert handoff["agent_id"] in (ann["id"], bob["id"]), handoff
    holder = "ann" if handoff["agent_id"] == ann["id"] else "bob"
    if holder == "bob":  # make ann the holder, whoever the router picked
        (conv,) = (await api.as_agent("bob", "GET", "/v1/agents/me/conversations"))["conversations"]
        await api.as_agent("bob", "POST", f"/v1/conversations/{conv['id']}/transfer", json={"agent_id": ann["id"]})
    (conv,) = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert (await api.send("faq-1", FAQ, message_id="m-faq-1"))["action"] == "answer"
    supervisor = await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201)
    web = await api.admin("POST", "/v1/admin/channels", json={"name": "web chat", "kind": "widget"}, expect=201)
    customer = await api.call("POST", f"/v1/widget/channels/{web['id']}/sessions", None, json={}, expect=201)
    await api.call("POST", "/v1/widget/messages", customer["session"], json={"message_id": "wm-1", "text": FAQ})
    tokens = {"none": None, "channel": api.channel_token, "agent": ann["token"], "bob": bob["token"],
              "supervisor": supervisor["token"], "admin": ADMIN_TOKEN, "other_channel": other["token"],
              "customer": customer["session"]}
    ids = {"conv": conv["id"], "ann": ann["id"], "bob": bob["id"], "other_channel": other["id"],
           "widget_channel": web["id"]}
    return World(api, tokens, ids)


async def call(w: World, method: str, path: str, role: str, body: Any = None) -> tuple[int, Any]:
    headers = {} if w.tokens[role] is None else {"Authorization": f"Bearer {w.tokens[role]}"}
    resp = await w.api.client.request(method, w.path(path), headers=headers, json=body)
    data = await resp.json() if resp.content_type == "application/json" else await resp.read()
    return resp.status, data


async def connect_ws(w: World, role: str, path: str = "/v1/agents/ws") -> tuple[int, Any]:
    headers = {} if w.tokens[role] is None else {"Authorization": f"Bearer {w.tokens[role]}"}
    try:
        ws = await w.api.client.ws_connect(path, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        return exc.status, None
    hello = await ws.receive_json(timeout=5)
    await ws.close()
    return 101, hello


def test_the_matrix_is_the_documented_one() -> None:
    """Same operations as the OpenAPI document, same roles as its x-roles."""
    spec = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    documented = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            roles = set(op["x-roles"])
            documented[(method.upper(), path)] = PUBLIC if roles == {"public"} else frozenset(roles)
    templates = {path: re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
                 for path in spec["paths"]}
    mine = {}
    for e in ENDPOINTS.values():
        concrete = e.path.format(conv="conv_1", ann="agt_1", bob="agt_2", other_channel="chn_1",
                                 widget_channel="chn_2").split("?")[0]
        (template,) = [t for t, rx in templates.items() if rx.match(concrete) and (e.method, t) in documented]
        mine[(e.method, template)] = e.allowed
    assert mine == documented


@pytest.mark.parametrize("name", list(ENDPOINTS))
async def test_each_role_is_allowed_or_refused(world: World, name: str) -> None:
    e = ENDPOINTS[name]
    denied = [r for r in ROLES if r not in e.allowed]
    allowed = [r for r in ROLES if r in e.allowed]
    before = await world.counts()
    socket = e.path.endswith("/ws")
    for role in denied:
        body = e.body(role) if callable(e.body) else e.body
        if socket:
            status, data = await connect_ws(world, role, e.path)
        else:
            status, data = await call(world, e.method, e.path, role, body)
        expected = (401, "unauthenticated") if role == "none" else (403, "forbidden")
        if socket:  # the handshake is refused; the client sees only the status
            assert status == expected[0], (role, status)
        else:
            assert (status, data["error"]["code"]) == expected, (role, status, data)
    assert await world.counts() == before, "a refused call wrote something"
    for role in allowed:
        body = e.body(role) if callable(e.body) else e.body
        if name == "agent_ws":
            status, data = await connect_ws(world, role)
            assert data["type"] == "hello" and data["agent_id"] == world.ids["ann"]
        elif name == "widget_ws":
            status, data = await connect_ws(world, role, e.path)
            assert data["type"] == "hello" and [m["client_id"] for m in data["messages"]][0] == "wm-1"
        elif socket:
            status, data = await connect_ws(world, role, e.path)
            assert data == {"type": "hello", "alerts": []}
        else:
            status, data = await call(world, e.method, e.path, role, body)
        assert status == e.status, (role, status, data)


async def test_an_agent_reads_only_the_conversations_they_hold(world: World) -> None:
    api, conv = world.api, world.ids["conv"]
    # bob does not hold order-1: no history, no reply, no transfer, no resolve, not in his list
    for method, path, body in (("GET", "/v1/conversations/{conv}", None),
                               ("GET", "/v1/conversations/{conv}/earlier", None),
                               ("POST", "/v1/conversations/{conv}/typing", None),
                               ("POST", "/v1/conversations/{conv}/replies", {"text": "hi"}),
                               ("POST", "/v1/conversations/{conv}/transfer", {"skill": "tech"}),
                               ("POST", "/v1/conversations/{conv}/resolve", None)):
        status, data = await call(world, method, path, "bob", body)
        assert (status, data["error"]["code"]) == (403, "not_your_conversation"), (method, path, data)
    status, data = await call(world, "GET", "/v1/agents/me/conversations", "bob")
    assert status == 200 and data["conversations"] == []
    # nor a conversation the bot holds (faq-1), which nobody was assigned
    async with api.app[keys.ENGINES].read.connect() as conn:
        faq_id = (await conn.execute(select(tables.conversations.c.id)
                                     .where(tables.conversations.c.external_id == "faq-1"))).scalar_one()
    status, data = await call(world, "GET", f"/v1/conversations/{faq_id}", "agent")
    assert (status, data["error"]["code"]) == (403, "not_your_conversation")
    # ann does, until she resolves it; supervisors and the admin always can
    status, data = await call(world, "GET", "/v1/conversations/{conv}", "agent")
    assert status == 200 and data["conversation"]["id"] == conv
    assert [m["channel_message_id"] for m in data["messages"]] == ["m-order-1"]
    assert (await call(world, "POST", "/v1/conversations/{conv}/resolve", "agent"))[0] == 200
    status, data = await call(world, "GET", "/v1/conversations/{conv}", "agent")
    assert (status, data["error"]["code"]) == (403, "not_your_conversation")
    for role in ("supervisor", "admin"):
        status, data = await call(world, "GET", "/v1/conversations/{conv}", role)
        assert status == 200 and data["conversation"]["status"] == "resolved", (role, data)
        status, data = await call(world, "GET", f"/v1/conversations/{faq_id}", role)
        assert status == 200 and [m["sender"] for m in data["messages"]] == ["customer", "bot"]


async def test_a_channel_sees_only_its_own_conversations(world: World) -> None:
    api = world.api
    before = await world.counts()
    for path, body in (("/v1/conversations/order-1/feedback", {"rating": 1, "resolved": True}),
                       ("/v1/conversations/order-1/close", None)):
        status, data = await call(world, "POST", path, "other_channel", body)
        assert (status, data["error"]["code"]) == (404, "not_found"), data
    assert await world.counts() == before
    status, data = await call(world, "GET", "/v1/conversations/{conv}", "agent")
    assert data["conversation"]["status"] == "assigned"
    # the same message id on another channel is another message, not a retry
    body = {"message_id": "m-order-1", "conversation_id": "order-1", "customer": {"id": "c"}, "text": FAQ}
    status, data = await call(world, "POST", "/v1/messages", "other_channel", body)
    assert status == 200 and data["action"] == "answer", data
    assert await api.app[keys.STORE].count("conversations") == before["conversations"] + 1


async def test_rotated_and_revoked_tokens(world: World) -> None:
    api = world.api
    old_bob = world.tokens["bob"]
    status, data = await call(world, "POST", "/v1/admin/agents/{bob}/token", "admin")
    assert status == 201
    world.tokens["bob"] = data["token"]
    assert (await call(world, "GET", "/v1/agents/me", "bob"))[1]["id"] == world.ids["bob"]
    world.tokens["old_bob"] = old_bob
    status, data = await call(world, "GET", "/v1/agents/me", "old_bob")
    assert (status, data["error"]["code"]) == (401, "unauthenticated")

    status, data = await call(world, "POST", f"/v1/admin/channels/{api.channel_id}/token", "admin")
    assert status == 201
    world.tokens["new_channel"] = data["token"]
    body = {"message_id": "m-r", "conversation_id": "faq-1", "customer": {"id": "c"}, "text": FAQ}
    status, data = await call(world, "POST", "/v1/messages", "channel", body)
    assert (status, data["error"]["code"]) == (401, "unauthenticated")
    status, data = await call(world, "POST", "/v1/messages", "new_channel", body)
    assert status == 200 and data["action"] == "answer"


@pytest.mark.parametrize(("header", "status"), [
    pytest.param("Bearer {agent}", 200, id="bearer"),
    pytest.param("bearer {agent}", 200, id="scheme-case-insensitive"),
    pytest.param("Bearer   {agent}  ", 200, id="extra-spaces"),
    pytest.param("Token {agent}", 401, id="other-scheme"),
    pytest.param("Basic {agent}", 401, id="basic"),
    pytest.param("Bearer ", 401, id="empty-token"),
    pytest.param("{agent}", 401, id="no-scheme"),
    pytest.param("Bearer {agent}x", 401, id="altered-token"),
    pytest.param("Bearer td_admin_test-token", 403, id="admin-on-agent-endpoint"),
])
async def test_authorization_header_forms(world: World, header: str, status: int) -> None:
    resp = await world.api.client.get("/v1/agents/me",
                                      headers={"Authorization": header.format(agent=world.tokens["agent"])})
    data = await resp.json()
    assert resp.status == status, data
    if status == 401:
        assert data["error"]["code"] == "unauthenticated"
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="tierdesk"'


async def test_query_token_only_opens_the_websocket(world: World) -> None:
    token = world.tokens["agent"]
    ws = await world.api.client.ws_connect(f"/v1/agents/ws?token={token}")
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and [c["id"] for c in hello["conversations"]] == [world.ids["conv"]]
    await ws.close()
    for path in ("/v1/agents/me", "/v1/agents/me/conversations", f"/v1/conversations/{world.ids['conv']}"):
        resp = await world.api.client.get(f"{path}?token={token}")
        assert resp.status == 401, path
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await world.api.client.ws_connect(f"/v1/agents/ws?token={world.tokens['supervisor']}")
    assert refused.value.status == 403

"""Bad requests to every write endpoint (and the metrics queries): each gets
the exact status and error code in the documented error body, and leaves
the database and the in-memory state exactly as they were.

The refusals share one world per database for the module (each case still
compares its own before and after), so they also accumulate on one state;
the tests that write get a fresh world each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from router.ports import FakeClock
from storage.tables import metadata
from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.web import keys

FAQ = "how do I reset my password"
BILLING = "I was charged twice for my order and want my money back"
TABLES = ("messages", "events", "conversations", "handoffs", "agents", "channels", "credentials", "outbox")
OVER_BODY_LIMIT = 65536 + 1
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, as the clock fixture


@dataclass
class World:
    """A channel, three agents, a supervisor, and one conversation held by ann."""

    api: Api
    tokens: dict[str, str | None]
    ids: dict[str, str]

    def path(self, template: str) -> str:
        return template.format(**self.ids)


async def build_world(api: Api) -> World:
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    bob = await api.add_agent("bob", ["tech"], capacity=2)
    carl = await api.add_agent("carl", ["billing"], capacity=1, status="offline")
    handoff = await api.send("order-1", BILLING, message_id="m-order-1")
    assert handoff["action"] == "handoff" and handoff["agent_id"] == ann["id"], handoff
    assert (await api.send("faq-1", FAQ, message_id="m-faq-1"))["action"] == "answer"
    (conv,) = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    supervisor = await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201)
    tokens: dict[str, str | None] = {
        "none": None, "unknown": "td_agent_not-a-real-token", "channel": api.channel_token,
        "ann": ann["token"], "bob": bob["token"], "carl": carl["token"],
        "supervisor": supervisor["token"], "admin": ADMIN_TOKEN,
    }
    web = await api.admin("POST", "/v1/admin/channels", json={"name": "web chat", "kind": "widget"}, expect=201)
    customer = await api.call("POST", f"/v1/widget/channels/{web['id']}/sessions", None, json={}, expect=201)
    tokens["customer"] = customer["session"]
    tokens["forged_customer"] = customer["session"][:-4] + ("AAAA" if not customer["session"].endswith("AAAA")
                                                            else "BBBB")
    ids = {"conv": conv["id"], "ann": ann["id"], "bob": bob["id"], "carl": carl["id"], "channel": api.channel_id,
           "widget": web["id"]}
    return World(api, tokens, ids)


@pytest.fixture
async def world(app_client: Api) -> World:
    """A world of the test's own, for the tests that write."""
    return await build_world(app_client)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_world(module_db_url: str, demo_model: Any) -> AsyncIterator[World]:
    """One world per database for every refusal of the module (PostgreSQL's
    in a database of its own: the writing tests here empty the shared one), started
    without aiohttp_client (which lives for one test only). The address and
    channel bursts are raised, the limiter still running: the cases send
    some 2,200 requests a database from one address on the real clock (here
    at most 355 in a second, against a refill of 1,000), and a faster machine
    must not turn them into 429s; those are tested in test_security_limits.py."""
    clients: list[TestClient[Any, Any]] = []

    async def client_of(app: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        clients.append(client)
        await client.start_server()
        return client

    try:
        api = await Api.start(client_of, db_url=module_db_url, clock=FakeClock(START), model=demo_model,
                              rate_limit_ip_burst=1e9, rate_limit_channel_burst=1e9)
        yield await build_world(api)
    finally:
        for client in clients:
            await client.close()


shared = pytest.mark.asyncio(loop_scope="module")


async def snapshot(w: World) -> dict[str, Any]:
    """Every row of every table, the row counts, and what the Desk holds in memory."""
    api = w.api
    state: dict[str, Any] = {}
    async with api.app[keys.ENGINES].read.connect() as conn:
        for table in metadata.sorted_tables:
            rows = (await conn.execute(select(table))).all()
            state[f"rows:{table.name}"] = sorted(repr(tuple(r)) for r in rows)
    for table in TABLES:
        state[f"count:{table}"] = await api.app[keys.STORE].count(table)
    state["agents"] = await api.admin("GET", "/v1/admin/agents")
    state["queue"] = await api.admin("GET", "/v1/queue")
    state["ann"] = await api.as_agent("ann", "GET", "/v1/agents/me/conversations")
    state["intents"] = await api.admin("GET", "/v1/faq/intents")
    return state


def big_message() -> bytes:
    body = {"message_id": "m-big", "conversation_id": "order-1", "customer": {"id": "cust-order-1"},
            "text": "a" * OVER_BODY_LIMIT}
    return json.dumps(body).encode()


def msg(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"message_id": "m-new", "conversation_id": "order-2",
                            "customer": {"id": "cust-2", "name": "Dana", "vip": False}, "text": BILLING}
    for key, value in changes.items():
        if value is DROP:
            body.pop(key)
        else:
            body[key] = value
    return body


DROP = object()
PEOPLE = "/v1/admin/people"


def person(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"email": "sue@example.test", "name": "Sue", "role": "supervisor",
                            "password": "long enough pw"}
    for key, value in changes.items():
        if value is DROP:
            body.pop(key)
        else:
            body[key] = value
    return body
MESSAGES, REPLIES, TRANSFER = "/v1/messages", "/v1/conversations/{conv}/replies", "/v1/conversations/{conv}/transfer"
FEEDBACK = "/v1/conversations/order-1/feedback"
AGENTS, AGENT = "/v1/admin/agents", "/v1/admin/agents/{ann}"
INTENT = "/v1/faq/intents/reset_password"
CHINESE_OVER = "退" * 1366  # 1366 characters, 4098 bytes of UTF-8

# (id, method, path, token, body: JSON value or raw bytes, status, code)
CASES: list[tuple[str, str, str, str, Any, int, str]] = [
    # POST /v1/messages
    ("msg-malformed-json", "POST", MESSAGES, "channel", b'{"message_id": "m-new",', 400, "invalid_json"),
    ("msg-empty-body", "POST", MESSAGES, "channel", b"", 400, "invalid_json"),
    ("msg-not-an-object", "POST", MESSAGES, "channel", [msg()], 422, "validation_failed"),
    ("msg-missing-text", "POST", MESSAGES, "channel", msg(text=DROP), 422, "validation_failed"),
    ("msg-missing-customer", "POST", MESSAGES, "channel", msg(customer=DROP), 422, "validation_failed"),
    ("msg-missing-customer-id", "POST", MESSAGES, "channel", msg(customer={"name": "Dana"}), 422,
     "validation_failed"),
    ("msg-int-message-id", "POST", MESSAGES, "channel", msg(message_id=42), 422, "validation_failed"),
    ("msg-null-text", "POST", MESSAGES, "channel", msg(text=None), 422, "validation_failed"),
    ("msg-list-text", "POST", MESSAGES, "channel", msg(text=[BILLING]), 422, "validation_failed"),
    ("msg-int-vip", "POST", MESSAGES, "channel", msg(customer={"id": "c", "vip": 1}), 422, "validation_failed"),
    ("msg-unknown-field", "POST", MESSAGES, "channel", msg(priority="high"), 422, "validation_failed"),
    ("msg-unknown-customer-field", "POST", MESSAGES, "channel", msg(customer={"id": "c", "email": "a@b.c"}), 422,
     "validation_failed"),
    ("msg-empty-message-id", "POST", MESSAGES, "channel", msg(message_id=""), 422, "validation_failed"),
    ("msg-control-char-id", "POST", MESSAGES, "channel", msg(conversation_id="order\n2"), 422,
     "validation_failed"),
    ("msg-201-char-id", "POST", MESSAGES, "channel", msg(message_id="m" * 201), 422, "validation_failed"),
    ("msg-bad-sent-at", "POST", MESSAGES, "channel", msg(sent_at="yesterday"), 422, "validation_failed"),
    ("msg-empty-text", "POST", MESSAGES, "channel", msg(text=""), 422, "empty_text"),
    ("msg-whitespace-text", "POST", MESSAGES, "channel", msg(text=" \t\n\u3000 "), 422, "empty_text"),
    ("msg-4097-bytes", "POST", MESSAGES, "channel", msg(text="a" * 4097), 422, "text_too_long"),
    ("msg-chinese-4098-bytes", "POST", MESSAGES, "channel", msg(text=CHINESE_OVER), 422, "text_too_long"),
    ("msg-body-too-large", "POST", MESSAGES, "channel", big_message(), 413, "payload_too_large"),
    ("msg-no-token", "POST", MESSAGES, "none", msg(), 401, "unauthenticated"),
    ("msg-unknown-token", "POST", MESSAGES, "unknown", msg(), 401, "unauthenticated"),
    ("msg-agent-token", "POST", MESSAGES, "ann", msg(), 403, "forbidden"),
    ("msg-admin-token", "POST", MESSAGES, "admin", msg(), 403, "forbidden"),
    ("msg-supervisor-token", "POST", MESSAGES, "supervisor", msg(), 403, "forbidden"),
    ("msg-bad-token-and-bad-body", "POST", MESSAGES, "unknown", b"{", 401, "unauthenticated"),
    # POST /v1/conversations/{id}/replies
    ("reply-malformed-json", "POST", REPLIES, "ann", b"{text: hi}", 400, "invalid_json"),
    ("reply-missing-text", "POST", REPLIES, "ann", {}, 422, "validation_failed"),
    ("reply-int-text", "POST", REPLIES, "ann", {"text": 5}, 422, "validation_failed"),
    ("reply-unknown-field", "POST", REPLIES, "ann", {"text": "hi", "internal": True}, 422, "validation_failed"),
    ("reply-empty-text", "POST", REPLIES, "ann", {"text": ""}, 422, "empty_text"),
    ("reply-whitespace-text", "POST", REPLIES, "ann", {"text": "\n\n  "}, 422, "empty_text"),
    ("reply-4097-bytes", "POST", REPLIES, "ann", {"text": "é" * 2048 + "a"}, 422, "text_too_long"),
    ("reply-chinese-4098-bytes", "POST", REPLIES, "ann", {"text": CHINESE_OVER}, 422, "text_too_long"),
    ("reply-body-too-large", "POST", REPLIES, "ann", {"text": "a" * OVER_BODY_LIMIT}, 413, "payload_too_large"),
    ("reply-not-your-conversation", "POST", REPLIES, "bob", {"text": "hi"}, 403, "not_your_conversation"),
    ("reply-offline-agent", "POST", REPLIES, "carl", {"text": "hi"}, 403, "not_your_conversation"),
    ("reply-unknown-conversation", "POST", "/v1/conversations/conv_missing/replies", "ann", {"text": "hi"}, 404,
     "not_found"),
    ("reply-channel-token", "POST", REPLIES, "channel", {"text": "hi"}, 403, "forbidden"),
    ("reply-supervisor-token", "POST", REPLIES, "supervisor", {"text": "hi"}, 403, "forbidden"),
    ("reply-no-token", "POST", REPLIES, "none", {"text": "hi"}, 401, "unauthenticated"),
    # POST /v1/conversations/{id}/transfer
    ("transfer-malformed-json", "POST", TRANSFER, "ann", b"skill=tech", 400, "invalid_json"),
    # A serious API would say 422 validation_failed for these two (see the report).
    ("transfer-neither", "POST", TRANSFER, "ann", {}, 400, "invalid_input"),
    ("transfer-both", "POST", TRANSFER, "ann", {"skill": "tech", "agent_id": "x"}, 400, "invalid_input"),
    ("transfer-bad-skill", "POST", TRANSFER, "ann", {"skill": "bill ing"}, 422, "validation_failed"),
    ("transfer-unknown-field", "POST", TRANSFER, "ann", {"skill": "tech", "why": "x"}, 422, "validation_failed"),
    ("transfer-unknown-agent", "POST", TRANSFER, "ann", {"agent_id": "agt_missing"}, 404, "not_found"),
    ("transfer-to-self", "POST", TRANSFER, "ann", {"agent_id": "{ann}"}, 409, "conflict"),
    ("transfer-to-offline", "POST", TRANSFER, "ann", {"agent_id": "{carl}"}, 409, "agent_unavailable"),
    ("transfer-not-yours", "POST", TRANSFER, "bob", {"skill": "tech"}, 403, "not_your_conversation"),
    ("transfer-unknown-conversation", "POST", "/v1/conversations/conv_missing/transfer", "ann", {"skill": "tech"},
     404, "not_found"),
    ("transfer-admin-token", "POST", TRANSFER, "admin", {"skill": "tech"}, 403, "forbidden"),
    # POST /v1/conversations/{id}/resolve
    ("resolve-not-yours", "POST", "/v1/conversations/{conv}/resolve", "bob", None, 403, "not_your_conversation"),
    ("resolve-unknown", "POST", "/v1/conversations/conv_missing/resolve", "ann", None, 404, "not_found"),
    ("resolve-channel-token", "POST", "/v1/conversations/{conv}/resolve", "channel", None, 403, "forbidden"),
    # POST /v1/conversations/{channel's id}/feedback and /close
    ("feedback-malformed-json", "POST", FEEDBACK, "channel", b"rating=5", 400, "invalid_json"),
    ("feedback-empty", "POST", FEEDBACK, "channel", {}, 422, "validation_failed"),
    ("feedback-not-resolved-no-rating", "POST", FEEDBACK, "channel", {"resolved": False}, 422,
     "validation_failed"),
    ("feedback-rating-6", "POST", FEEDBACK, "channel", {"rating": 6}, 422, "validation_failed"),
    ("feedback-rating-0", "POST", FEEDBACK, "channel", {"rating": 0, "resolved": True}, 422, "validation_failed"),
    ("feedback-rating-string", "POST", FEEDBACK, "channel", {"rating": "5"}, 422, "validation_failed"),
    ("feedback-comment-too-long", "POST", FEEDBACK, "channel", {"rating": 5, "comment": "x" * 2001}, 422,
     "validation_failed"),
    ("feedback-comment-empty", "POST", FEEDBACK, "channel", {"rating": 5, "comment": ""}, 422, "validation_failed"),
    ("feedback-comment-nul", "POST", FEEDBACK, "channel", {"rating": 5, "comment": "a\u0000b"}, 422,
     "validation_failed"),
    ("feedback-unknown-field", "POST", FEEDBACK, "channel", {"rating": 5, "stars": "meh"}, 422,
     "validation_failed"),
    ("feedback-unknown-conversation", "POST", "/v1/conversations/nope/feedback", "channel", {"rating": 5}, 404,
     "not_found"),
    ("feedback-by-internal-id", "POST", "/v1/conversations/{conv}/feedback", "channel", {"rating": 5}, 404,
     "not_found"),
    ("feedback-agent-token", "POST", FEEDBACK, "ann", {"rating": 5}, 403, "forbidden"),
    ("close-unknown-conversation", "POST", "/v1/conversations/nope/close", "channel", None, 404, "not_found"),
    ("close-agent-token", "POST", "/v1/conversations/order-1/close", "ann", None, 403, "forbidden"),
    ("close-no-token", "POST", "/v1/conversations/order-1/close", "none", None, 401, "unauthenticated"),
    ("close-body-too-large", "POST", "/v1/conversations/order-1/close", "channel", b"x" * OVER_BODY_LIMIT, 413,
     "payload_too_large"),
    # PUT /v1/agents/me/status
    ("status-malformed-json", "PUT", "/v1/agents/me/status", "ann", b"online", 400, "invalid_json"),
    ("status-unknown-value", "PUT", "/v1/agents/me/status", "ann", {"status": "busy"}, 422, "validation_failed"),
    ("status-missing", "PUT", "/v1/agents/me/status", "ann", {}, 422, "validation_failed"),
    ("status-channel-token", "PUT", "/v1/agents/me/status", "channel", {"status": "away"}, 403, "forbidden"),
    # POST /v1/admin/agents
    ("agent-malformed-json", "POST", AGENTS, "admin", b'{"name": ', 400, "invalid_json"),
    ("agent-missing-name", "POST", AGENTS, "admin", {"skills": ["x"], "capacity": 1}, 422, "validation_failed"),
    ("agent-capacity-0", "POST", AGENTS, "admin", {"name": "d", "skills": ["x"], "capacity": 0}, 422,
     "validation_failed"),
    ("agent-capacity-1001", "POST", AGENTS, "admin", {"name": "d", "skills": ["x"], "capacity": 1001}, 422,
     "validation_failed"),
    ("agent-capacity-string", "POST", AGENTS, "admin", {"name": "d", "skills": ["x"], "capacity": "2"}, 422,
     "validation_failed"),
    ("agent-skills-string", "POST", AGENTS, "admin", {"name": "d", "skills": "billing", "capacity": 1}, 422,
     "validation_failed"),
    ("agent-bad-skill", "POST", AGENTS, "admin", {"name": "d", "skills": ["bill ing"], "capacity": 1}, 422,
     "validation_failed"),
    ("agent-51-skills", "POST", AGENTS, "admin",
     {"name": "d", "skills": [f"s{i}" for i in range(51)], "capacity": 1}, 422, "validation_failed"),
    ("agent-bad-status", "POST", AGENTS, "admin", {"name": "d", "skills": [], "capacity": 1, "status": "busy"},
     422, "validation_failed"),
    ("agent-level-6", "POST", AGENTS, "admin", {"name": "d", "skills": ["x"], "capacity": 1, "levels": {"x": 6}},
     422, "validation_failed"),
    ("agent-level-of-a-skill-not-held", "POST", AGENTS, "admin",
     {"name": "d", "skills": ["x"], "capacity": 1, "levels": {"y": 2}}, 422, "validation_failed"),
    ("agent-unknown-field", "POST", AGENTS, "admin", {"name": "d", "skills": [], "capacity": 1, "id": "agt_x"},
     422, "validation_failed"),
    ("agent-body-too-large", "POST", AGENTS, "admin", {"name": "d" * OVER_BODY_LIMIT, "skills": [], "capacity": 1},
     413, "payload_too_large"),
    ("agent-supervisor-token", "POST", AGENTS, "supervisor", {"name": "d", "skills": [], "capacity": 1}, 403,
     "forbidden"),
    # PATCH /v1/admin/agents/{id}
    ("patch-unknown-agent", "PATCH", "/v1/admin/agents/agt_missing", "admin", {"capacity": 3}, 404, "not_found"),
    ("patch-capacity-0", "PATCH", AGENT, "admin", {"capacity": 0}, 422, "validation_failed"),
    ("patch-unknown-field", "PATCH", AGENT, "admin", {"capacity": 3, "open_conversations": 0}, 422,
     "validation_failed"),
    ("patch-malformed-json", "PATCH", AGENT, "admin", b"{capacity: 3}", 400, "invalid_json"),
    ("patch-agent-token", "PATCH", AGENT, "ann", {"capacity": 3}, 403, "forbidden"),
    # POST /v1/admin/channels and the token endpoints
    ("channel-ftp-webhook", "POST", "/v1/admin/channels", "admin", {"name": "c", "webhook_url": "ftp://x"}, 422,
     "validation_failed"),
    ("channel-empty-name", "POST", "/v1/admin/channels", "admin", {"name": ""}, 422, "validation_failed"),
    ("channel-unknown-kind", "POST", "/v1/admin/channels", "admin", {"name": "c", "kind": "sms"}, 422,
     "validation_failed"),
    ("channel-string-notices", "POST", "/v1/admin/channels", "admin", {"name": "c", "notices": "yes"}, 422,
     "validation_failed"),
    ("channel-patch-kind", "PATCH", "/v1/admin/channels/{channel}", "admin", {"kind": "widget"}, 422,
     "validation_failed"),
    ("channel-unknown-field", "POST", "/v1/admin/channels", "admin", {"name": "c", "secret": "s"}, 422,
     "validation_failed"),
    ("channel-supervisor-token", "POST", "/v1/admin/channels", "supervisor", {"name": "c"}, 403, "forbidden"),
    ("token-unknown-agent", "POST", "/v1/admin/agents/agt_missing/token", "admin", None, 404, "not_found"),
    ("token-unknown-channel", "POST", "/v1/admin/channels/chn_missing/token", "admin", None, 404, "not_found"),
    ("token-supervisor", "POST", "/v1/admin/agents/{ann}/token", "supervisor", None, 403, "forbidden"),
    ("token-agent-own", "POST", "/v1/admin/agents/{ann}/token", "ann", None, 403, "forbidden"),
    ("supervisor-token-by-supervisor", "POST", "/v1/admin/supervisor-tokens", "supervisor", None, 403,
     "forbidden"),
    ("replay-by-supervisor", "POST", "/v1/admin/deliveries/replay", "supervisor", None, 403, "forbidden"),
    # PATCH /v1/faq/intents/{id}
    ("faq-malformed-json", "PATCH", INTENT, "admin", b'{"answer": "x"', 400, "invalid_json"),
    ("faq-empty-answer", "PATCH", INTENT, "admin", {"answer": ""}, 422, "validation_failed"),
    ("faq-8001-char-answer", "PATCH", INTENT, "admin", {"answer": "a" * 8001}, 422, "validation_failed"),
    ("faq-unknown-field", "PATCH", INTENT, "admin", {"answer": "x", "skill": "billing"}, 422, "validation_failed"),
    ("faq-blank-answer", "PATCH", INTENT, "admin", {"answer": "   "}, 400, "invalid_input"),
    ("faq-not-an-faq-intent", "PATCH", "/v1/faq/intents/talk_to_human", "admin", {"answer": "x"}, 400,
     "invalid_input"),
    ("faq-unknown-intent", "PATCH", "/v1/faq/intents/nope", "admin", {"answer": "x"}, 404, "not_found"),
    ("faq-supervisor-token", "PATCH", INTENT, "supervisor", {"answer": "x"}, 403, "forbidden"),
    # POST /v1/admin/people and PATCH /v1/admin/people/{id}
    ("person-malformed-json", "POST", PEOPLE, "admin", b'{"email": ', 400, "invalid_json"),
    ("person-missing-password", "POST", PEOPLE, "admin", person(password=DROP), 422, "validation_failed"),
    ("person-short-password", "POST", PEOPLE, "admin", person(password="short"), 422, "validation_failed"),
    ("person-bad-email", "POST", PEOPLE, "admin", person(email="sue at example"), 422, "validation_failed"),
    ("person-control-char-email", "POST", PEOPLE, "admin", person(email="sue@exa\nmple.test"), 422,
     "validation_failed"),
    ("person-bad-role", "POST", PEOPLE, "admin", person(role="channel"), 422, "validation_failed"),
    ("person-unknown-field", "POST", PEOPLE, "admin", person(disabled=True), 422, "validation_failed"),
    ("person-agent-without-agent", "POST", PEOPLE, "admin", person(role="agent"), 422, "validation_failed"),
    ("person-supervisor-with-agent", "POST", PEOPLE, "admin", person(agent_id="{ann}"), 422, "validation_failed"),
    ("person-unknown-agent", "POST", PEOPLE, "admin", person(role="agent", agent_id="agt_missing"), 404,
     "not_found"),
    ("person-body-too-large", "POST", PEOPLE, "admin", person(name="n" * OVER_BODY_LIMIT), 413,
     "payload_too_large"),
    ("person-supervisor-token", "POST", PEOPLE, "supervisor", person(), 403, "forbidden"),
    ("person-agent-token", "POST", PEOPLE, "ann", person(), 403, "forbidden"),
    ("person-patch-unknown", "PATCH", "/v1/admin/people/per_missing", "admin", {"disabled": True}, 404,
     "not_found"),
    ("person-patch-unknown-field", "PATCH", "/v1/admin/people/per_missing", "admin", {"role": "admin"}, 422,
     "validation_failed"),
    ("person-patch-short-password", "PATCH", "/v1/admin/people/per_missing", "admin", {"password": "x"}, 422,
     "validation_failed"),
    ("person-patch-supervisor", "PATCH", "/v1/admin/people/per_missing", "supervisor", {"disabled": True}, 403,
     "forbidden"),
    ("faq-reset-unknown-intent", "DELETE", "/v1/faq/intents/nope/answer", "admin", None, 422, "validation_failed"),
    # PATCH and DELETE of channels and agents, tokens
    ("channel-patch-hostless-url", "PATCH", "/v1/admin/channels/{channel}", "admin", {"webhook_url": "http://"},
     422, "validation_failed"),
    ("channel-patch-overlap-too-long", "PATCH", "/v1/admin/channels/{channel}", "admin",
     {"rotate_webhook_secret": True, "secret_overlap_seconds": 31 * 86400}, 422, "validation_failed"),
    ("channel-patch-unknown-field", "PATCH", "/v1/admin/channels/{channel}", "admin", {"secret": "x"}, 422,
     "validation_failed"),
    ("channel-patch-malformed-json", "PATCH", "/v1/admin/channels/{channel}", "admin", b"{", 400, "invalid_json"),
    ("channel-patch-unknown", "PATCH", "/v1/admin/channels/chn_missing", "admin", {"name": "x"}, 404, "not_found"),
    ("channel-patch-supervisor", "PATCH", "/v1/admin/channels/{channel}", "supervisor", {"name": "x"}, 403,
     "forbidden"),
    ("channel-delete-unknown", "DELETE", "/v1/admin/channels/chn_missing", "admin", None, 404, "not_found"),
    ("agent-delete-unknown", "DELETE", "/v1/admin/agents/agt_missing", "admin", None, 404, "not_found"),
    ("agent-delete-by-agent", "DELETE", "/v1/admin/agents/{ann}", "ann", None, 403, "forbidden"),
    ("token-revoke-not-hex", "DELETE", "/v1/admin/tokens/zzzzzzzzzzzz", "admin", None, 422, "validation_failed"),
    ("token-revoke-too-short", "DELETE", "/v1/admin/tokens/abc", "admin", None, 422, "validation_failed"),
    ("token-revoke-unknown", "DELETE", "/v1/admin/tokens/0123456789abcdef", "admin", None, 404, "not_found"),
    ("token-revoke-by-supervisor", "DELETE", "/v1/admin/tokens/0123456789abcdef", "supervisor", None, 403,
     "forbidden"),
    ("admin-token-by-supervisor", "POST", "/v1/admin/admin-tokens", "supervisor", None, 403, "forbidden"),
    ("channel-hostless-webhook", "POST", "/v1/admin/channels", "admin", {"name": "c", "webhook_url": "https://"},
     422, "validation_failed"),
    # NUL (U+0000): one rule for every text field and parameter on both
    # databases (PostgreSQL cannot store it): refused, naming the field.
    ("msg-nul-text", "POST", MESSAGES, "channel", msg(text="a\u0000b"), 422, "validation_failed"),
    ("msg-nul-customer-name", "POST", MESSAGES, "channel", msg(customer={"id": "c", "name": "D\u0000"}), 422,
     "validation_failed"),
    ("reply-nul-text", "POST", REPLIES, "ann", {"text": "sorry\u0000"}, 422, "validation_failed"),
    ("agent-nul-name", "POST", AGENTS, "admin", {"name": "d\u0000", "skills": [], "capacity": 1}, 422,
     "validation_failed"),
    ("patch-nul-name", "PATCH", AGENT, "admin", {"name": "\u0000"}, 422, "validation_failed"),
    ("channel-nul-name", "POST", "/v1/admin/channels", "admin", {"name": "c\u0000"}, 422, "validation_failed"),
    ("faq-nul-answer", "PATCH", INTENT, "admin", {"answer": "a\u0000"}, 422, "validation_failed"),
    ("close-nul-id", "POST", "/v1/conversations/a%00b/close", "channel", None, 422, "validation_failed"),
    ("feedback-nul-id", "POST", "/v1/conversations/a%00b/feedback", "channel", {"rating": 5}, 422,
     "validation_failed"),
    ("reply-nul-id", "POST", "/v1/conversations/a%00b/replies", "ann", {"text": "hi"}, 422, "validation_failed"),
    ("patch-nul-agent-id", "PATCH", "/v1/admin/agents/a%00b", "admin", {"capacity": 3}, 422, "validation_failed"),
    ("faq-nul-intent-id", "PATCH", "/v1/faq/intents/a%00b", "admin", {"answer": "x"}, 422, "validation_failed"),
    # the web chat widget
    ("widget-session-unknown-channel", "POST", "/v1/widget/channels/chn_missing/sessions", "none", {}, 404,
     "not_found"),
    ("widget-session-webhook-channel", "POST", "/v1/widget/channels/{channel}/sessions", "none", {}, 404,
     "not_found"),
    ("widget-session-unknown-field", "POST", "/v1/widget/channels/{widget}/sessions", "none", {"vip": True}, 422,
     "validation_failed"),
    ("widget-session-long-name", "POST", "/v1/widget/channels/{widget}/sessions", "none", {"name": "n" * 201}, 422,
     "validation_failed"),
    ("widget-session-malformed-json", "POST", "/v1/widget/channels/{widget}/sessions", "none", b"{", 400,
     "invalid_json"),
    ("widget-msg-malformed-json", "POST", "/v1/widget/messages", "customer", b"{", 400, "invalid_json"),
    ("widget-msg-empty-body", "POST", "/v1/widget/messages", "customer", b"", 400, "invalid_json"),
    ("widget-msg-missing-id", "POST", "/v1/widget/messages", "customer", {"text": FAQ}, 422, "validation_failed"),
    ("widget-msg-missing-text", "POST", "/v1/widget/messages", "customer", {"message_id": "w1"}, 422,
     "validation_failed"),
    ("widget-msg-control-char-id", "POST", "/v1/widget/messages", "customer", {"message_id": "w\n1", "text": FAQ},
     422, "validation_failed"),
    ("widget-msg-unknown-field", "POST", "/v1/widget/messages", "customer",
     {"message_id": "w1", "text": FAQ, "conversation_id": "w_other"}, 422, "validation_failed"),
    ("widget-msg-empty-text", "POST", "/v1/widget/messages", "customer", {"message_id": "w1", "text": " "}, 422,
     "empty_text"),
    ("widget-msg-4097-bytes", "POST", "/v1/widget/messages", "customer", {"message_id": "w1", "text": "a" * 4097},
     422, "text_too_long"),
    ("widget-msg-nul-text", "POST", "/v1/widget/messages", "customer", {"message_id": "w1", "text": "a\u0000"},
     422, "validation_failed"),
    ("widget-msg-no-session", "POST", "/v1/widget/messages", "none", {"message_id": "w1", "text": FAQ}, 401,
     "unauthenticated"),
    ("widget-msg-forged-session", "POST", "/v1/widget/messages", "forged_customer",
     {"message_id": "w1", "text": FAQ}, 401, "unauthenticated"),
    ("widget-msg-channel-token", "POST", "/v1/widget/messages", "channel", {"message_id": "w1", "text": FAQ}, 403,
     "forbidden"),
    ("widget-feedback-rating-6", "POST", "/v1/widget/feedback", "customer", {"rating": 6}, 422, "validation_failed"),
    ("widget-feedback-rating-string", "POST", "/v1/widget/feedback", "customer", {"rating": "5"}, 422,
     "validation_failed"),
    ("widget-feedback-no-rating", "POST", "/v1/widget/feedback", "customer", {"comment": "ok"}, 422,
     "validation_failed"),
    ("widget-feedback-long-comment", "POST", "/v1/widget/feedback", "customer", {"rating": 4, "comment": "c" * 2001},
     422, "validation_failed"),
    ("widget-feedback-before-any-message", "POST", "/v1/widget/feedback", "customer", {"rating": 4}, 404,
     "not_found"),
    ("widget-close-before-any-message", "POST", "/v1/widget/close", "customer", None, 404, "not_found"),
    ("widget-message-as-customer-on-api", "POST", MESSAGES, "customer", msg(), 403, "forbidden"),
]


def body_bytes(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def fill(body: Any, w: World) -> Any:
    if isinstance(body, dict):
        return {k: fill(v, w) for k, v in body.items()}
    if isinstance(body, str) and body.startswith("{") and body.endswith("}"):
        return w.path(body)
    return body


async def request(w: World, method: str, path: str, token: str, body: bytes | None = None,
                  params: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    headers = {"Content-Type": "application/json"}
    secret = w.tokens[token]
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    resp = await w.api.client.request(method, w.path(path), data=body, headers=headers, params=params)
    return resp.status, await resp.json(), resp.headers


def assert_error(status: int, data: Any, headers: Any, expected_status: int, code: str) -> None:
    assert status == expected_status, data
    assert isinstance(data, dict) and set(data) == {"error"}, data
    assert set(data["error"]) == {"code", "message"}, data
    assert data["error"]["code"] == code, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"].strip(), data
    assert headers.get("X-Request-Id")
    if status == 401:
        assert headers["WWW-Authenticate"] == 'Bearer realm="tierdesk"'


@shared
@pytest.mark.parametrize(("method", "path", "token", "body", "status", "code"),
                         [pytest.param(*case[1:], id=case[0]) for case in CASES])
async def test_bad_write_is_refused_and_writes_nothing(shared_world: World, method: str, path: str, token: str,
                                                       body: Any, status: int, code: str) -> None:
    before = await snapshot(shared_world)
    got, data, headers = await request(shared_world, method, path, token, body_bytes(fill(body, shared_world)))
    assert_error(got, data, headers, status, code)
    assert await snapshot(shared_world) == before


METRICS_CASES = [
    ("garbage-from", {"from": "last tuesday"}),
    ("from-equals-to", {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
    ("from-after-to", {"from": "2026-01-02", "to": "2026-01-01"}),
    ("over-400-days", {"from": "2024-01-01", "to": "2026-01-01"}),
    ("from-after-now", {"from": "2026-06-01"}),
    ("bad-group-by", {"group_by": "weekday"}),
    ("bad-bucket", {"bucket": "week"}),
    ("unknown-param", {"group": "skill"}),
    ("case-sensitive-group-by", {"group_by": "Skill"}),
    ("from-and-to-past-9999", {"from": "99999999999999", "to": "99999999999999.5"}),
    ("nan", {"from": "nan", "to": "nan"}),
    ("infinite", {"from": "-inf", "to": "inf"}),
    ("huge-negative", {"from": "-1e300", "to": "-1e299"}),
    ("iso-year-0001-east", {"from": "0001-01-01T00:00:00+14:00"}),
    ("nul-in-a-value", {"group_by": "skill\u0000"}),
    ("nul-in-a-name", {"group_by\u0000": "skill"}),
]


@shared
@pytest.mark.parametrize("params", [pytest.param(p, id=i) for i, p in METRICS_CASES])
async def test_bad_metrics_query_is_refused(shared_world: World, params: dict[str, str]) -> None:
    before = await snapshot(shared_world)
    got, data, headers = await request(shared_world, "GET", "/v1/metrics", "supervisor", params=params)
    assert_error(got, data, headers, 422, "validation_failed")
    assert await snapshot(shared_world) == before


@shared
@pytest.mark.parametrize(("path", "token", "params", "status", "code"), [
    pytest.param("/v1/metrics", "none", {}, 401, "unauthenticated", id="metrics-no-token"),
    pytest.param("/v1/metrics", "channel", {}, 403, "forbidden", id="metrics-channel"),
    pytest.param("/v1/metrics", "ann", {"group_by": "agent"}, 403, "forbidden", id="metrics-agent"),
    pytest.param("/v1/admin/deliveries", "admin", {"status": "lost"}, 422, "validation_failed",
                 id="deliveries-bad-status"),
    pytest.param("/v1/admin/deliveries", "supervisor", {}, 403, "forbidden", id="deliveries-supervisor"),
    pytest.param("/v1/admin/tokens", "admin", {"role": "root"}, 422, "validation_failed", id="tokens-bad-role"),
    pytest.param("/v1/admin/tokens", "admin", {"include_revoked": "yes"}, 422, "validation_failed",
                 id="tokens-bad-flag"),
    pytest.param("/v1/admin/tokens", "admin", {"owner": "x"}, 422, "validation_failed", id="tokens-unknown-param"),
    pytest.param("/v1/admin/tokens", "supervisor", {}, 403, "forbidden", id="tokens-supervisor"),
    pytest.param("/v1/agents/me/metrics", "ann", {"from": "yesterday"}, 422, "validation_failed",
                 id="my-metrics-bad-from"),
    pytest.param("/v1/agents/me/metrics", "ann", {"from": "2025-01-01"}, 422, "validation_failed",
                 id="my-metrics-over-31-days"),
    pytest.param("/v1/agents/me/metrics", "ann", {"bucket": "hour"}, 422, "validation_failed",
                 id="my-metrics-unknown-param"),
    pytest.param("/v1/agents/me/metrics", "supervisor", {}, 403, "forbidden", id="my-metrics-supervisor"),
    pytest.param("/v1/agents/team", "supervisor", {}, 403, "forbidden", id="team-supervisor"),
    pytest.param("/v1/admin/people", "supervisor", {}, 403, "forbidden", id="people-supervisor"),
    pytest.param("/v1/widget/conversation", "customer", {"conversation": "w_other"}, 422, "validation_failed",
                 id="widget-conversation-unknown-param"),
    pytest.param("/v1/widget/conversation", "customer", {"after": ""}, 422, "validation_failed",
                 id="widget-conversation-empty-after"),
    pytest.param("/v1/widget/conversation", "forged_customer", {}, 401, "unauthenticated",
                 id="widget-conversation-forged"),
    pytest.param("/v1/widget/conversation", "ann", {}, 403, "forbidden", id="widget-conversation-agent"),
    pytest.param("/v1/widget/channels/{widget}", "none", {"lang": "fr", "x": "1"}, 422, "validation_failed",
                 id="widget-channel-unknown-param"),
    pytest.param("/v1/live", "supervisor", {"skill": "billing"}, 422, "validation_failed", id="live-unknown-param"),
    pytest.param("/v1/live", "ann", {}, 403, "forbidden", id="live-agent"),
])
async def test_other_bad_reads(shared_world: World, path: str, token: str, params: dict[str, str], status: int,
                               code: str) -> None:
    got, data, headers = await request(shared_world, "GET", path, token, params=params)
    assert_error(got, data, headers, status, code)


async def test_the_snapshot_sees_writes_and_texts_at_the_limit_are_accepted(world: World) -> None:
    """The other side of the limits: exactly 4096 bytes passes (and is
    written, which the snapshot notices), whatever the characters."""
    before = await snapshot(world)
    for i, text in enumerate(["a" * 4096, "退" * 1365 + "a", "é" * 2048, "  padded  " + "b" * 4086]):
        assert len(text.encode()) == 4096
        got, data, _ = await request(world, "POST", MESSAGES, "channel",
                                     body_bytes(msg(message_id=f"m-limit-{i}", conversation_id=f"limit-{i}",
                                                    text=text)))
        assert got == 200, data
    after = await snapshot(world)
    assert after != before
    assert after["count:conversations"] == before["count:conversations"] + 4
    assert after["count:messages"] >= before["count:messages"] + 4
    got, data, _ = await request(world, "POST", REPLIES, "ann", body_bytes({"text": "退" * 1365 + "a"}))
    assert got == 201 and data["text"] == "退" * 1365 + "a"


async def test_a_refused_message_can_be_sent_again_correctly(world: World) -> None:
    """A refusal records nothing, not even the message id: the corrected retry is processed."""
    got, data, headers = await request(world, "POST", MESSAGES, "channel", body_bytes(msg(text="   ")))
    assert_error(got, data, headers, 422, "empty_text")
    got, data, _ = await request(world, "POST", MESSAGES, "channel", body_bytes(msg()))
    assert got == 200 and data["action"] == "handoff" and data["skill"] == "billing", data


async def test_a_message_id_reused_for_another_conversation_changes_nothing(world: World) -> None:
    """Idempotency is per channel and message_id. A channel that reuses an id
    in another conversation gets the first answer back, and nothing else
    happens: no conversation, no handoff, no agent slot taken in memory."""
    retry = msg(message_id="m-faq-1", conversation_id="faq-1", customer={"id": "cust-faq-1"}, text=FAQ)
    got, first, _ = await request(world, "POST", MESSAGES, "channel", body_bytes(retry))
    assert got == 200 and first["action"] == "answer"
    before = await snapshot(world)
    reuse = msg(message_id="m-faq-1", conversation_id="order-9", text=BILLING)
    got, data, _ = await request(world, "POST", MESSAGES, "channel", body_bytes(reuse))
    assert (got, data) == (200, first)
    assert await snapshot(world) == before
    # and the next real billing handoff still finds ann's free slot
    got, data, _ = await request(world, "POST", MESSAGES, "channel", body_bytes(msg(message_id="m-real")))
    assert got == 200 and data["agent_id"] == world.ids["ann"], data


NESTED = b'{"a":' * 10_000 + b"1" + b"}" * 10_000  # ~60 KB, under the body limit
JSON_WRITES = [
    ("POST", MESSAGES, "channel"), ("POST", FEEDBACK, "channel"), ("PUT", "/v1/agents/me/status", "ann"),
    ("POST", REPLIES, "ann"), ("POST", TRANSFER, "ann"), ("POST", AGENTS, "admin"), ("PATCH", AGENT, "admin"),
    ("POST", "/v1/admin/channels", "admin"), ("PATCH", INTENT, "admin"), ("POST", "/v1/widget/messages", "customer"),
    ("POST", "/v1/widget/feedback", "customer"),
]


@shared
@pytest.mark.parametrize(("method", "path", "token"), [pytest.param(*w, id=f"{w[0]} {w[1]}") for w in JSON_WRITES])
@pytest.mark.parametrize("body", [NESTED, b"[" * 30_000 + b"]" * 30_000], ids=["objects", "arrays"])
async def test_deeply_nested_json_is_a_bad_request_on_every_json_write(shared_world: World, method: str, path: str,
                                                                        token: str, body: bytes) -> None:
    before = await snapshot(shared_world)
    got, data, headers = await request(shared_world, method, path, token, body)
    assert_error(got, data, headers, 400, "invalid_json")
    assert await snapshot(shared_world) == before


CHANNEL_WRITES = [MESSAGES, FEEDBACK, "/v1/conversations/order-1/close"]


@shared
@pytest.mark.parametrize("path", CHANNEL_WRITES)
@pytest.mark.parametrize("signature", [
    "t={now},v1=\u00e9",  # a non-ASCII digest
    "t=1" + "0" * 400 + ",v1=ab",  # a timestamp no float can hold
    "t={now},v1=" + "ab" * 32 + "x",
    "v1=" + "ab" * 32 + ",t={now}",
    "t=-5,v1=" + "ab" * 32,
    "",
    "t={now}",
], ids=["non-ascii-digest", "huge-timestamp", "not-hex", "reordered", "negative-time", "empty", "no-digest"])
async def test_a_malformed_signature_is_401_bad_signature(shared_world: World, path: str, signature: str) -> None:
    before = await snapshot(shared_world)
    header = signature.replace("{now}", str(int(shared_world.api.clock.now())))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {shared_world.tokens['channel']}",
               "X-Tierdesk-Signature": header.encode("utf-8").decode("latin-1")}
    body = body_bytes(msg() if path == MESSAGES else {"rating": 5} if path == FEEDBACK else None)
    resp = await shared_world.api.client.request("POST", path, data=body, headers=headers)
    data = await resp.json()
    expected = "signature_required" if not header else "bad_signature"
    assert_error(resp.status, data, resp.headers, 401, expected)
    assert await snapshot(shared_world) == before


@shared
@pytest.mark.parametrize("length", [10_000, 70_000])
async def test_a_request_line_the_parser_refuses_gets_the_json_error_body(shared_world: World, length: int) -> None:
    server = shared_world.api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /v1/" + b"a" * length + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", head
    assert b"Content-Type: application/json" in head, head
    assert json.loads(payload)["error"]["code"] == "bad_request"

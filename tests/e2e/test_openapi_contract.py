"""The OpenAPI document is the contract: it is a valid OpenAPI 3.1 document,
it names exactly the routes the app serves, and every response of a
realistic session (successes and errors) validates against it.

Requests we mean to be valid are also validated against the document (so it
is not stricter than the server), and requests we mean to be invalid must be
refused by the document too wherever it can tell (so it is not laxer).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import WSMsgType
from aiohttp.test_utils import make_mocked_request
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.exceptions import RequestValidationError
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.api import ADMIN_TOKEN, Api
from tests.support.models import copy_store
from tierdesk.settings import Settings
from tierdesk.signing import HEADER, sign
from tierdesk.web import keys
from tierdesk.web.app import OPENAPI_PATH, create_app

ROOT = Path(__file__).resolve().parents[2]
SPEC: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
OPENAPI = OpenAPI.from_file_path(str(OPENAPI_PATH))
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
HOST = "http://127.0.0.1"

FAQ = "how do I reset my password"
BILLING = "I was charged twice for my order and want my money back"
HUMAN = "I want to talk to a human"


def spec_operations() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in SPEC["paths"].items() for m in item if m in METHODS}


def template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def sample(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample-id", template)


# ------------------------------------------------------------------ the document
def test_document_is_valid_openapi_3_1() -> None:
    validate_spec(SPEC)  # raises on any violation of the OpenAPI 3.1 schema
    assert SPEC["openapi"].startswith("3.1.")
    bearer = SPEC["components"]["securitySchemes"]["bearerAuth"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert SPEC["security"] == [{"bearerAuth": []}]


def test_docs_copy_is_a_symlink_to_the_served_file() -> None:
    link = ROOT / "docs" / "openapi.yaml"
    assert link.is_symlink()
    assert Path(link.parent, link.readlink()).resolve() == OPENAPI_PATH


def test_every_operation_declares_roles_and_errors_use_the_error_schema() -> None:
    roles = {"channel", "agent", "supervisor", "admin", "customer", "public"}
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            assert set(op["x-roles"]) <= roles and op["x-roles"], (method, path)
            public = op["x-roles"] == ["public"]
            assert (op.get("security") == []) is public, (method, path)
            if not public:
                assert {"401", "403", "500"} <= set(op["responses"]), (method, path)
            if path not in ("/healthz", "/readyz", "/metrics"):  # the per-address rate limit
                assert "429" in op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(op["responses"]), (method, path)
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                name = schema["$ref"].rsplit("/", 1)[1]
                assert SPEC["components"]["schemas"][name]["additionalProperties"] is False, name


async def test_every_route_is_documented_and_every_documented_operation_is_served() -> None:
    app = create_app(Settings.from_env({}, database_url="sqlite:///:memory:", admin_token=ADMIN_TOKEN))
    documented = spec_operations()
    templates = {path: template_regex(path) for path in SPEC["paths"]}

    # app → document: every route (and each alternative of a regex segment
    # such as {kind:agents|channels}) has exactly one documented operation.
    served: set[tuple[str, str]] = set()
    # The console's pages (/console/...) and the widget's script and demo page
    # (/widget/...) are not the API: docs/console.md, docs/channels.md.
    routes = [r for r in app.router.routes() if not r.resource.canonical.startswith(("/console", "/widget/"))]
    gets = {r.resource.canonical for r in routes if r.method == "GET"}
    for route in routes:
        canonical = route.resource.canonical
        if route.method == "HEAD":
            assert canonical in gets, f"HEAD {canonical} without its GET"  # aiohttp's automatic twin
            continue
        info = route.resource.get_info()
        pattern = info["pattern"].pattern if "pattern" in info else re.escape(info["path"])
        paths = [""]
        for literal, group in re.findall(r"([^(]*)(\(\?P<\w+>[^)]*\))?", pattern):
            literal = literal.replace("\\", "")
            alternatives = ["sample-id"]
            inner = re.fullmatch(r"\(\?P<\w+>([\w|]+)\)", group or "")
            if inner:
                alternatives = inner.group(1).split("|")
            paths = [p + literal + (alt if group else "") for p in paths for alt in alternatives]
        for concrete in paths:
            matches = [t for t, rx in templates.items() if rx.match(concrete) and (route.method, t) in documented]
            assert len(matches) == 1, f"{route.method} {concrete} (route {canonical}) documented as {matches}"
            served.add((route.method, matches[0]))
    assert served == documented, f"documented but not served: {sorted(documented - served)}"

    # document → app: a sample path of every operation resolves to a handler
    # for that method (not a 404 or 405).
    for method, template in sorted(documented):
        match = await app.router.resolve(make_mocked_request(method, sample(template), app=app))
        assert match.http_exception is None, f"{method} {template}: {match.http_exception!r}"
        assert match.route.method == method


# ------------------------------------------------------------------ the session
def push_validator() -> OAS31Validator:
    resource = Resource.from_contents(SPEC, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:tierdesk-openapi", resource)
    return OAS31Validator({"$ref": "urn:tierdesk-openapi#/components/schemas/AgentPush"}, registry=registry)


PUSH = push_validator()


@dataclass
class Contract:
    """Calls the running app and checks each exchange against the document."""

    api: Api
    exercised: set[tuple[str, str, int]] = field(default_factory=set)

    async def call(self, method: str, path: str, token: str | None, *, expect: int, json_body: Any = None,
                   data: bytes | None = None, params: dict[str, str] | None = None,
                   request_valid: bool | None = True, code: str | None = None,
                   headers: dict[str, str] | None = None) -> Any:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(json_body).encode() if json_body is not None else data
        if body is not None:
            headers["Content-Type"] = "application/json"
        resp = await self.api.client.request(method, path, headers=headers, data=body, params=params)
        raw = await resp.read()
        assert resp.status == expect, f"{method} {path}: {resp.status} {raw[:500]!r}"
        request = MockRequest(HOST, method, path, args=params, headers=headers, data=body or b"")
        response = MockResponse(raw, status_code=resp.status, headers=dict(resp.headers),
                                content_type=resp.content_type)
        try:
            OPENAPI.validate_response(request, response)
        except Exception as exc:  # noqa: BLE001 - re-raised with a readable explanation
            raise AssertionError(f"{method} {path} -> {resp.status} breaks the document: {explain(exc)}") from None
        if request_valid is True:
            try:
                OPENAPI.validate_request(request)
            except Exception as exc:  # noqa: BLE001
                raise AssertionError(f"the document refuses the valid {method} {path}: {explain(exc)}") from None
        elif request_valid is False:
            with pytest.raises(RequestValidationError):  # the body, a parameter or the security
                OPENAPI.validate_request(request)
        template = next(t for t in SPEC["paths"] if template_regex(t).match(path.split("?")[0]))
        self.exercised.add((method, template, resp.status))
        if resp.content_type != "application/json":
            return raw
        parsed = json.loads(raw)
        if code is not None:
            assert parsed["error"]["code"] == code, parsed
        elif resp.status >= 400 and "error" in parsed:
            raise AssertionError(f"say which error code {method} {path} should give: {parsed}")
        return parsed


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def explain(exc: BaseException) -> str:
    """The schema errors behind an openapi-core error, without the whole value."""
    cause = exc.__cause__ or exc.__context__
    errors = getattr(cause, "schema_errors", None) or getattr(exc, "schema_errors", None)
    if errors:
        return "; ".join(f"at {list(e.absolute_path)}: {e.message[:300]}" for e in errors)
    return f"{type(exc).__name__}: {str(exc)[:500]} ({cause!r:.300})"


async def next_push(ws: Any) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    payload = json.loads(msg.data)
    errors = sorted(PUSH.iter_errors(payload), key=str)
    assert not errors, f"push does not match AgentPush: {payload}: {errors[0]}"
    return payload


async def test_a_realistic_session_matches_the_document(app_client: Api) -> None:  # noqa: PLR0915
    api, clock = app_client, app_client.clock
    c = Contract(api)
    admin = ADMIN_TOKEN

    # ops, no token
    assert (await c.call("GET", "/healthz", None, expect=200)) == {"status": "ok"}
    ready = await c.call("GET", "/readyz", None, expect=200)
    assert ready["status"] == "ready" and ready["checks"]["database"] == "ok"
    assert (await c.call("GET", "/v1/openapi.yaml", None, expect=200)) == OPENAPI_PATH.read_bytes()
    assert b"# TYPE tierdesk_messages_total counter" in await c.call("GET", "/metrics", None, expect=200)

    # the admin sets up channels, agents and a supervisor
    partner = await c.call("POST", "/v1/admin/channels", admin, expect=201,
                           json_body={"name": "partner", "webhook_url": "https://partner.example/hooks/td"})
    assert partner["webhook_url"] == "https://partner.example/hooks/td"
    shop = await c.call("POST", "/v1/admin/channels", admin, expect=201, json_body={"name": "shop"})
    rotated = await c.call("POST", f"/v1/admin/channels/{shop['id']}/token", admin, expect=201)
    await c.call("POST", "/v1/messages", shop["token"], expect=401, code="unauthenticated",
                 json_body={"message_id": "x", "conversation_id": "x", "customer": {"id": "x"}, "text": FAQ})
    channel = rotated["token"]
    listed = await c.call("GET", "/v1/admin/channels", admin, expect=200)
    assert {ch["name"] for ch in listed["channels"]} == {"web chat", "partner", "shop"}

    ann = await c.call("POST", "/v1/admin/agents", admin, expect=201,
                       json_body={"name": "Ann", "skills": ["billing"], "capacity": 2, "status": "online"})
    bob = await c.call("POST", "/v1/admin/agents", admin, expect=201,
                       json_body={"name": "Bob", "skills": ["billing"], "capacity": 1, "status": "online"})
    carl = await c.call("POST", "/v1/admin/agents", admin, expect=201,
                        json_body={"name": "Carl", "skills": ["tech"], "capacity": 1})
    assert carl["status"] == "offline" and carl["open_conversations"] == 0
    carl = await c.call("PATCH", f"/v1/admin/agents/{carl['id']}", admin, expect=200,
                        json_body={"skills": ["tech", "general"], "capacity": 1})
    assert carl["skills"] == ["general", "tech"]
    carl_token = (await c.call("POST", f"/v1/admin/agents/{carl['id']}/token", admin, expect=201))["token"]
    supervisor = (await c.call("POST", "/v1/admin/supervisor-tokens", admin, expect=201))["token"]
    for token in (admin, supervisor):
        agents = await c.call("GET", "/v1/admin/agents", token, expect=200)
        assert sorted(a["name"] for a in agents["agents"]) == ["Ann", "Bob", "Carl"]
    tokens = {ann["id"]: ann["token"], bob["id"]: bob["token"], carl["id"]: carl_token}

    async def send(conversation: str, text: str, message_id: str, **kw: Any) -> Any:
        body = {"message_id": message_id, "conversation_id": conversation,
                "customer": {"id": f"cust-{conversation}", "name": "Dana", "vip": False}, "text": text}
        return await c.call("POST", "/v1/messages", channel, json_body=body, **kw)

    # a FAQ answer, and its retry gets the same answer without a new row
    answer = await send("faq-1", FAQ, "m1", expect=200)
    assert answer["action"] == "answer" and answer["faq_id"] == "reset_password"
    rows = await api.app[keys.STORE].count("messages")
    assert await send("faq-1", FAQ, "m1", expect=200) == answer
    assert await api.app[keys.STORE].count("messages") == rows

    # Carl (offline) watches his WebSocket
    ws = await api.client.ws_connect(f"/v1/agents/ws?token={carl_token}")
    hello = await next_push(ws)
    assert hello == {"type": "hello", "agent_id": carl["id"], "conversations": []}

    # a billing handoff goes to a billing agent at once
    clock.advance(5)
    handoff = await send("order-1", BILLING, "m2", expect=200)
    assert handoff["action"] == "handoff" and handoff["skill"] == "billing"
    assert handoff["agent_id"] in (ann["id"], bob["id"]) and handoff["queue_position"] is None
    holder = handoff["agent_id"]
    other = bob["id"] if holder == ann["id"] else ann["id"]

    # asking for a human: general skill, only Carl has it and he is offline
    human = await send("chat-2", HUMAN, "m3", expect=200)
    assert human == {"action": "handoff", "reason": "customer_asked", "skill": "general", "agent_id": None,
                     "queue_position": 1}
    queue = await c.call("GET", "/v1/queue", supervisor, expect=200)
    assert [(w["skill"], w["position"], w["reason"]) for w in queue["waiting"]] == [("general", 1,
                                                                                      "customer_asked")]
    again = await send("chat-2", "hello? anyone?", "m4", expect=200)
    assert again["action"] == "handoff" and again["queue_position"] == 1

    # a follow-up in the assigned conversation is forwarded
    clock.advance(3)
    assert await send("order-1", "it was order 1234", "m5", expect=200) == {"action": "forwarded",
                                                                             "agent_id": holder}

    # Carl goes online and gets the waiting conversation pushed
    me = await c.call("GET", "/v1/agents/me", carl_token, expect=200)
    assert me["status"] == "offline"
    me = await c.call("PUT", "/v1/agents/me/status", carl_token, expect=200, json_body={"status": "online"})
    assert me == {**me, "status": "online", "open_conversations": 1}
    assignment = await next_push(ws)
    assert assignment["type"] == "assignment" and assignment["conversation"]["external_id"] == "chat-2"
    chat2 = assignment["conversation"]["id"]

    # the holder works order-1
    mine = await c.call("GET", "/v1/agents/me/conversations", tokens[holder], expect=200)
    assert [conv["external_id"] for conv in mine["conversations"]] == ["order-1"]
    order1 = mine["conversations"][0]["id"]
    history = await c.call("GET", f"/v1/conversations/{order1}", tokens[holder], expect=200)
    assert [(m["sender"], m["channel_message_id"]) for m in history["messages"]] == [("customer", "m2"),
                                                                                      ("customer", "m5")]
    clock.advance(20)
    earlier = await c.call("GET", f"/v1/conversations/{order1}/earlier", tokens[holder], expect=200)
    assert earlier["handoffs"] == []  # the customer's first passage to a person
    typing = await c.call("POST", f"/v1/conversations/{order1}/typing", tokens[holder], expect=200,
                          json_body={"typing": True})
    assert typing["shown"] is True  # a webhook channel: its adapter runs here and sends nothing
    reply = await c.call("POST", f"/v1/conversations/{order1}/replies", tokens[holder], expect=201,
                         json_body={"text": "Sorry about that, refunding now."})
    assert reply["sender"] == "agent" and reply["agent_id"] == holder and reply["tier"] == "human"
    await c.call("GET", f"/v1/conversations/{order1}", tokens[other], expect=403, code="not_your_conversation")
    for token in (supervisor, admin):
        seen = await c.call("GET", f"/v1/conversations/{order1}", token, expect=200)
        assert [m["sender"] for m in seen["messages"]] == ["customer", "customer", "agent"]

    # transfers: to a named agent, to oneself, to a full agent, to a skill
    await c.call("POST", f"/v1/conversations/{order1}/transfer", tokens[holder], expect=409, code="conflict",
                 json_body={"agent_id": holder})
    await c.call("POST", f"/v1/conversations/{order1}/transfer", tokens[holder], expect=409,
                 code="agent_unavailable", json_body={"agent_id": carl["id"]})
    await c.call("POST", f"/v1/conversations/{order1}/transfer", tokens[holder], expect=400, code="invalid_input",
                 json_body={"skill": "tech", "agent_id": carl["id"]}, request_valid=False)
    moved = await c.call("POST", f"/v1/conversations/{order1}/transfer", tokens[holder], expect=200,
                         json_body={"agent_id": other})
    assert moved["status"] == "assigned" and moved["handoff"]["agent_id"] == other
    queued = await c.call("POST", f"/v1/conversations/{order1}/transfer", tokens[other], expect=200,
                          json_body={"skill": "tech"})
    assert queued["status"] == "queued" and queued["handoff"]["queue_position"] == 1
    await c.call("POST", f"/v1/conversations/{order1}/resolve", tokens[other], expect=403,
                 code="not_your_conversation")

    # Carl answers chat-2; the customer's feedback ends it, and his slot goes
    # to order-1 (tech) at once
    clock.advance(30)
    await c.call("POST", f"/v1/conversations/{chat2}/replies", carl_token, expect=201,
                 json_body={"text": "Hi, Carl here. How can I help?"})
    await c.call("POST", "/v1/conversations/chat-2/feedback", channel, expect=200,
                 json_body={"rating": 2, "resolved": True})
    pushes = [await next_push(ws), await next_push(ws)]
    assert pushes[0] == {"type": "conversation_ended", "conversation_id": chat2, "by": "feedback"}
    assert pushes[1]["type"] == "assignment" and pushes[1]["conversation"]["id"] == order1
    await send("order-1", "any news?", "m6", expect=200)
    pushed = await next_push(ws)
    assert pushed["type"] == "customer_message" and pushed["message"]["text"] == "any news?"
    await ws.send_str("ping")
    assert (await ws.receive(timeout=5)).data == "pong"
    back = await c.call("POST", f"/v1/conversations/{order1}/transfer", carl_token, expect=200,
                        json_body={"agent_id": holder})
    assert back["handoff"]["agent_id"] == holder and back["handoff"]["skill"] == "tech"
    assert (await next_push(ws)) == {"type": "conversation_transferred", "conversation_id": order1}
    await ws.close()

    # the holder finishes order-1; the channel reports feedback and the end of conversations
    clock.advance(10)
    await c.call("POST", f"/v1/conversations/{order1}/replies", tokens[holder], expect=201,
                 json_body={"text": "Refund issued."})
    await c.call("POST", f"/v1/conversations/{order1}/resolve", tokens[holder], expect=200)
    await c.call("POST", "/v1/conversations/order-1/feedback", channel, expect=200, json_body={"rating": 5})
    await c.call("POST", "/v1/conversations/faq-1/close", channel, expect=200)
    await c.call("POST", "/v1/conversations/faq-1/close", channel, expect=200)  # already resolved: still ok
    await c.call("POST", "/v1/conversations/nope/close", channel, expect=404, code="not_found")
    for token in (carl_token, tokens[holder], tokens[other]):
        assert (await c.call("GET", "/v1/agents/me/conversations", token, expect=200))["conversations"] == []

    # replies to a channel without a webhook become dead letters, the first
    # of a conversation holding back its later ones; replay them
    deliveries: list[Any] = []
    for _ in range(100):
        deliveries = (await c.call("GET", "/v1/admin/deliveries", admin, expect=200))["deliveries"]
        if len({d["conversation_id"] for d in deliveries}) == 2:
            break
        await asyncio.sleep(0.02)
    assert [(d["status"], d["kind"], d["last_error"]) for d in deliveries] == [
        ("dead", "agent_message", "channel has no webhook_url")] * 2
    pending = await c.call("GET", "/v1/admin/deliveries", admin, expect=200, params={"status": "pending"})
    assert len(pending["deliveries"]) == 1
    assert pending["deliveries"][0]["conversation_id"] in {d["conversation_id"] for d in deliveries}
    assert await c.call("POST", "/v1/admin/deliveries/replay", admin, expect=200) == {"replayed": 2}

    # metrics, every grouping, with and without buckets
    clock.advance(120)
    report = await c.call("GET", "/v1/metrics", supervisor, expect=200)
    (group,) = report["groups"]
    assert group["bot"]["messages"] == 1 and group["human"]["messages"] == 5
    assert group["human"]["handoffs"] == 2 and group["human"]["handoff_reasons"] == {"customer_asked": 1,
                                                                                      "needs_human": 1}
    assert group["human"]["satisfaction"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    assert group["bot"]["containment"] == {"value": 0.333333, "numerator": 1, "denominator": 3}
    for params in ({"group_by": "skill", "bucket": "hour"}, {"group_by": "agent", "bucket": "day"},
                   {"group_by": "channel", "from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z"},
                   {"group_by": "tier", "from": "2025-12-31", "bucket": "hour"}):
        report = await c.call("GET", "/v1/metrics", admin, expect=200, params=params)
        assert report["group_by"] == params["group_by"] and report["bucket"] == params.get("bucket")
    hour = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T01:00:00Z"}
    fast = await c.call("GET", "/v1/metrics", supervisor, expect=200, params=hour)
    exact = await c.call("GET", "/v1/metrics", supervisor, expect=200, params={**hour, "exact": "true"})
    assert (fast["source"], exact["source"]) == ("rollups", "replay")
    # the rollups agree with the replay: counts, sums and ratios exactly,
    # percentiles within the 1% their histogram bins promise
    (rolled,), (replayed,) = fast["groups"], exact["groups"]
    rolled, replayed = flatten(rolled), flatten(replayed)
    assert rolled.keys() == replayed.keys()
    for name, value in replayed.items():
        if name.endswith((".p50", ".p90")) and value is not None:
            assert rolled[name] == pytest.approx(value, rel=0.01), name
        else:
            assert rolled[name] == value, name
    by_skill = await c.call("GET", "/v1/metrics", supervisor, expect=200, params={"group_by": "skill"})
    assert by_skill["source"] == "replay"
    assert {g["key"]["skill"] for g in by_skill["groups"]} == {None, "general", "tech"}  # order-1 ended as tech

    # what the console adds: an agent's own figures and team, people
    mine = await c.call("GET", "/v1/agents/me/metrics", tokens[ann["id"]], expect=200)
    assert mine["agent_id"] == ann["id"]
    await c.call("GET", "/v1/agents/me/metrics", tokens[ann["id"]], expect=422, code="validation_failed",
                 params={"from": "2026-01-02", "to": "2026-01-01"})
    team = await c.call("GET", "/v1/agents/team", tokens[ann["id"]], expect=200)
    assert {a["name"] for a in team["agents"]} == {"Bob", "Carl"}
    person = await c.call("POST", "/v1/admin/people", admin, expect=201, json_body={
        "email": "Sue@Example.test", "name": "Sue", "role": "supervisor", "password": "long enough pw"})
    assert person["email"] == "sue@example.test" and person["disabled"] is False
    await c.call("POST", "/v1/admin/people", admin, expect=409, code="email_taken", json_body={
        "email": "sue@example.test", "name": "Sue", "role": "supervisor", "password": "long enough pw"})
    await c.call("POST", "/v1/admin/people", admin, expect=422, code="validation_failed", json_body={
        "email": "dee@example.test", "name": "Dee", "role": "agent", "password": "long enough pw"})
    assert (await c.call("PATCH", f"/v1/admin/people/{person['id']}", admin, expect=200,
                         json_body={"disabled": True}))["disabled"] is True
    assert len((await c.call("GET", "/v1/admin/people", admin, expect=200))["people"]) == 1
    await c.call("GET", "/v1/admin/people", supervisor, expect=403, code="forbidden")
    # staffing: today (what it had so far) and a week on (no complete day to learn from yet)
    today = await c.call("GET", "/v1/staffing", supervisor, expect=200, params={"date": "2026-01-01"})
    assert today["history"]["days"] == [] and today["slots"][0]["actual"]["offered"] == 2
    later = await c.call("GET", "/v1/staffing", admin, expect=200,
                         params={"date": "2026-01-08", "concurrency": "2", "shrinkage": "0.25"})
    assert later["slots"][0]["actual"] is None and later["target"]["concurrency"] == 2
    await c.call("GET", "/v1/staffing", supervisor, expect=422, code="validation_failed", request_valid=False)
    await c.call("GET", "/v1/staffing", supervisor, expect=422, code="validation_failed",
                 params={"date": "2026-02-30"})

    # a sample of errors, each in the documented shape
    await c.call("GET", "/v1/metrics", None, expect=401, code="unauthenticated", request_valid=False)
    await c.call("GET", "/v1/metrics", channel, expect=403, code="forbidden")
    await c.call("GET", "/v1/metrics", supervisor, expect=422, code="validation_failed",
                 params={"group_by": "weekday"}, request_valid=False)
    await c.call("GET", "/v1/metrics", supervisor, expect=422, code="validation_failed",
                 params={"from": "2026-01-02", "to": "2026-01-01"})
    await c.call("GET", "/v1/admin/deliveries", admin, expect=422, code="validation_failed",
                 params={"status": "lost"}, request_valid=False)
    await c.call("GET", "/v1/conversations/conv_missing", admin, expect=404, code="not_found")
    await c.call("PATCH", "/v1/admin/agents/agt_missing", admin, expect=404, code="not_found", json_body={})
    await c.call("POST", "/v1/admin/agents/agt_missing/token", admin, expect=404, code="not_found")
    await c.call("POST", "/v1/admin/channels/chn_missing/token", admin, expect=404, code="not_found")
    await c.call("POST", "/v1/messages", channel, expect=400, code="invalid_json", data=b"{nope",
                 request_valid=False)
    await c.call("POST", "/v1/messages", channel, expect=413, code="payload_too_large",
                 data=b'{"text": "' + b"a" * 70_000 + b'"}', request_valid=False)
    await send("faq-9", "   ", "m9", expect=422, code="empty_text", request_valid=False)
    await send("faq-9", "a" * 4097, "m9", expect=422, code="text_too_long", request_valid=False)
    await c.call("POST", "/v1/admin/agents", admin, expect=422, code="validation_failed",
                 json_body={"name": "Dee", "skills": ["billing"], "capacity": 0}, request_valid=False)
    await c.call("PUT", "/v1/agents/me/status", carl_token, expect=422, code="validation_failed",
                 json_body={"status": "busy"}, request_valid=False)
    await c.call("POST", "/v1/conversations/chat-2/feedback", channel, expect=422, code="validation_failed",
                 json_body={"rating": 9}, request_valid=False)
    await c.call("GET", "/v1/agents/ws", carl_token, expect=400, code="bad_request")
    await c.call("GET", "/v1/agents/ws", supervisor, expect=403, code="forbidden")

    live = await c.call("GET", "/v1/live", supervisor, expect=200)
    assert {a["name"] for a in live["agents"]} >= {"Ann", "Bob"}

    # identity: channels changed, secrets rotated, tokens listed and revoked, agents and channels disabled
    rotated = await c.call("PATCH", f"/v1/admin/channels/{partner['id']}", admin, expect=200,
                           json_body={"webhook_url": "https://partner.example/v2", "rotate_webhook_secret": True,
                                      "secret_overlap_seconds": 3600})
    assert rotated["webhook_url"] == "https://partner.example/v2" and rotated["webhook_secret"].startswith("whsec_")
    assert rotated["previous_secret_until"] is not None
    await c.call("PATCH", f"/v1/admin/channels/{partner['id']}", admin, expect=422, code="validation_failed",
                 json_body={"webhook_url": "http://"}, request_valid=False)
    second_admin = await c.call("POST", "/v1/admin/admin-tokens", admin, expect=201)
    listed_tokens = (await c.call("GET", "/v1/admin/tokens", second_admin["token"], expect=200,
                                  params={"role": "admin"}))["tokens"]
    assert [t["subject_id"] for t in listed_tokens] == [second_admin["subject_id"]]
    await c.call("DELETE", f"/v1/admin/tokens/{listed_tokens[0]['token_id']}", admin, expect=200)
    await c.call("GET", "/v1/admin/tokens", second_admin["token"], expect=401, code="unauthenticated")
    disabled = await c.call("DELETE", f"/v1/admin/agents/{carl['id']}", admin, expect=200)
    assert disabled["disabled"] is True and disabled["status"] == "offline"
    await c.call("GET", "/v1/agents/me", carl_token, expect=401, code="unauthenticated")
    await c.call("PATCH", f"/v1/admin/agents/{carl['id']}", admin, expect=409, code="agent_disabled",
                 json_body={"status": "online"})
    gone = await c.call("DELETE", f"/v1/admin/channels/{partner['id']}", admin, expect=200)
    assert gone["disabled"] is True

    # every documented operation was exercised with a success status
    succeeded = {(m, t) for m, t, status in c.exercised if status < 300}
    missing = {op for op in spec_operations() - succeeded
               if not op[1].startswith(("/v1/faq/", "/v1/widget/"))}  # FAQ and the widget: below
    missing -= {("GET", "/v1/agents/ws"), ("GET", "/v1/live/ws")}  # upgrades: checked above and in test_sla_monitor
    assert not missing, f"operations never exercised successfully: {sorted(missing)}"


async def test_an_instance_without_a_model_is_not_ready_and_says_so(aiohttp_client: Any, db_url: str,
                                                                     clock: Any, tmp_path: Path) -> None:
    settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=3600.0,
                                 log_format="console", models_dir=tmp_path / "no-models")
    app = create_app(settings, clock=clock)  # the real LiveModel: it finds no trained model and serves anyway
    api = Api(client=await aiohttp_client(app), clock=clock)
    c = Contract(api)
    channel = await c.call("POST", "/v1/admin/channels", ADMIN_TOKEN, expect=201, json_body={"name": "web"})
    ready = await c.call("GET", "/readyz", None, expect=503)
    assert ready == {"status": "not ready", "checks": {"database": "ok", "model": "not loaded"}}
    await c.call("POST", "/v1/messages", channel["token"], expect=503, code="model_not_loaded",
                 json_body={"message_id": "m1", "conversation_id": "c1", "customer": {"id": "x"}, "text": FAQ})
    for table in ("messages", "events", "conversations"):
        assert await api.app[keys.STORE].count(table) == 0, table
    # agents and metrics keep working
    await c.call("POST", "/v1/admin/agents", ADMIN_TOKEN, expect=201,
                 json_body={"name": "Ann", "skills": ["billing"], "capacity": 1})
    await c.call("GET", "/v1/metrics", ADMIN_TOKEN, expect=200)


async def test_signed_channels_and_rate_limits_match_the_document(aiohttp_client: Any, db_url: str, clock: Any,
                                                                  demo_model: Any) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          rate_limit_channel_per_second=1.0, rate_limit_channel_burst=2.0)
    c = Contract(api)
    kiosk = await c.call("POST", "/v1/admin/channels", ADMIN_TOKEN, expect=201,
                         json_body={"name": "kiosk", "require_signature": True})
    assert kiosk["require_signature"] is True
    listed = (await c.call("GET", "/v1/admin/channels", ADMIN_TOKEN, expect=200))["channels"]
    assert {ch["name"]: ch["require_signature"] for ch in listed} == {"web chat": False, "kiosk": True}
    raw = json.dumps({"message_id": "k1", "conversation_id": "kiosk-1", "customer": {"id": "x"},
                      "text": FAQ}).encode()
    now = int(clock.now())

    async def post(signature: str | None, expect: int, code: str | None = None, body: bytes = raw,
                   request_valid: bool | None = True) -> Any:
        headers = {} if signature is None else {HEADER: signature}
        return await c.call("POST", "/v1/messages", kiosk["token"], expect=expect, code=code, data=body,
                            headers=headers, request_valid=request_valid)

    secret = kiosk["webhook_secret"]
    await post(None, 401, "signature_required")
    await post("nonsense", 401, "bad_signature", request_valid=False)
    await post(sign(secret, now - 3600, raw), 401, "stale_signature")
    await post(sign(secret, now, raw + b" "), 401, "bad_signature")
    await post(sign("whsec_someone-else", now, raw), 401, "bad_signature")
    for table in ("messages", "events", "conversations"):
        assert await api.app[keys.STORE].count(table) == 0, table
    assert (await post(sign(secret, now, raw), 200))["action"] == "answer"
    await c.call("POST", "/v1/conversations/kiosk-1/close", kiosk["token"], expect=401, code="signature_required")
    await c.call("POST", "/v1/conversations/kiosk-1/close", kiosk["token"], expect=200, data=b"",
                 headers={HEADER: sign(secret, now, b"")})

    # the per-channel limit: a burst of 2, then 429 with Retry-After
    for i in range(2):
        await c.call("POST", "/v1/messages", api.channel_token, expect=200,
                     json_body={"message_id": f"r{i}", "conversation_id": "r", "customer": {"id": "x"}, "text": FAQ})
    before = await api.app[keys.STORE].count("messages")
    resp = await api.client.post("/v1/messages", headers={"Authorization": f"Bearer {api.channel_token}"},
                                 json={"message_id": "r2", "conversation_id": "r", "customer": {"id": "x"},
                                       "text": FAQ})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    await c.call("POST", "/v1/messages", api.channel_token, expect=429, code="rate_limited",
                 json_body={"message_id": "r3", "conversation_id": "r", "customer": {"id": "x"}, "text": FAQ})
    assert await api.app[keys.STORE].count("messages") == before
    # another channel has its own bucket
    await post(sign(secret, now, raw), 200)


async def test_faq_tuning_matches_the_document(aiohttp_client: Any, db_url: str, clock: Any, tmp_path: Path,
                                               demo_store: Path) -> None:
    models = copy_store(demo_store, tmp_path / "models", versions=2)
    settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN, models_dir=models,
                                 knowledge_base=ROOT / "knowledge_base", sweep_interval_seconds=3600.0,
                                 model_watch_seconds=3600.0, log_format="console")
    api = Api(client=await aiohttp_client(create_app(settings, clock=clock)), clock=clock)
    c = Contract(api)
    admin = ADMIN_TOKEN
    channel = (await c.call("POST", "/v1/admin/channels", admin, expect=201, json_body={"name": "web"}))["token"]
    supervisor = (await c.call("POST", "/v1/admin/supervisor-tokens", admin, expect=201))["token"]

    listed = await c.call("GET", "/v1/faq/models", supervisor, expect=200)
    assert listed["live"] == "v0001"
    assert [(v["version"], v["active"], v["live"]) for v in listed["versions"]] == [("v0001", True, True),
                                                                                    ("v0002", False, False)]
    shadow = await c.call("GET", "/v1/faq/models/v0002/shadow", supervisor, expect=200, params={"days": "1"})
    assert (shadow["live"]["version"], shadow["candidate"]["version"]) == ("v0001", "v0002")
    assert shadow["messages"] == 0 and shadow["changed"] == 0
    await c.call("GET", "/v1/faq/models/v0099/shadow", admin, expect=404, code="model_not_found")
    await c.call("GET", "/v1/faq/models/v0002/shadow", admin, expect=422, code="validation_failed",
                 params={"days": "400"}, request_valid=False)
    assert (await c.call("POST", "/v1/faq/models/v0002/activate", admin, expect=200)) == {"live": "v0002"}
    assert (await c.call("POST", "/v1/faq/models/rollback", admin, expect=200)) == {"live": "v0001"}
    await c.call("POST", "/v1/faq/models/rollback", admin, expect=404, code="model_not_found")
    await c.call("POST", "/v1/faq/models/v0099/activate", admin, expect=404, code="model_not_found")
    await c.call("POST", "/v1/faq/models/v%20bad/activate", admin, expect=400, code="invalid_input",
                 request_valid=False)

    intents = await c.call("GET", "/v1/faq/intents", admin, expect=200)
    assert intents["model"] == "v0001"
    kinds = {i["id"]: i["kind"] for i in intents["intents"]}
    assert kinds["reset_password"] == "faq" and kinds["talk_to_human"] == "needs_human"
    original = next(i["answer"] for i in intents["intents"] if i["id"] == "reset_password")

    async def ask(message_id: str) -> Any:
        return await c.call("POST", "/v1/messages", channel, expect=200, json_body={
            "message_id": message_id, "conversation_id": message_id, "customer": {"id": "x"}, "text": FAQ})

    edited = await c.call("PATCH", "/v1/faq/intents/reset_password", admin, expect=200,
                          json_body={"answer": "Use the 'Forgot password?' link."})
    assert edited["answer"] == "Use the 'Forgot password?' link."
    assert (await ask("q1"))["text"] == "Use the 'Forgot password?' link."
    await c.call("PATCH", "/v1/faq/intents/no_such_intent", admin, expect=404, code="not_found",
                 json_body={"answer": "x"})
    await c.call("PATCH", "/v1/faq/intents/talk_to_human", admin, expect=400, code="invalid_input",
                 json_body={"answer": "x"})
    await c.call("PATCH", "/v1/faq/intents/reset_password", admin, expect=422, code="validation_failed",
                 json_body={"answer": ""}, request_valid=False)
    reset = await c.call("DELETE", "/v1/faq/intents/reset_password/answer", admin, expect=200)
    assert reset["answer"] == original
    assert (await ask("q2"))["text"] == original
    await c.call("DELETE", "/v1/faq/intents/no_such_intent/answer", admin, expect=422, code="validation_failed")
    reloaded = await c.call("POST", "/v1/faq/reload", admin, expect=200)
    assert reloaded == {"live": "v0001", "intents": len(intents["intents"])}

    await ask("q3")
    await c.call("POST", "/v1/messages", channel, expect=200, json_body={
        "message_id": "q4", "conversation_id": "q4", "customer": {"id": "x"}, "text": "zxq vlorp 42 grumble"})
    shadow = await c.call("GET", "/v1/faq/models/v0002/shadow", admin, expect=200)
    assert shadow["messages"] >= 4 and shadow["changed"] == (shadow["handoff_to_answer"] + shadow["answer_to_handoff"]
                                                             + shadow["different_answer"])
    misses = await c.call("GET", "/v1/faq/misses", supervisor, expect=200, params={"days": "1", "limit": "100"})
    assert misses["misses"] == sum(cl["size"] for cl in misses["clusters"])
    await c.call("GET", "/v1/faq/misses", admin, expect=422, code="validation_failed", params={"days": "0"},
                 request_valid=False)
    await c.call("GET", "/v1/faq/misses", admin, expect=422, code="validation_failed", params={"limit": "lots"},
                 request_valid=False)
    await c.call("GET", "/v1/faq/intents", channel, expect=403, code="forbidden")
    await c.call("POST", "/v1/faq/reload", supervisor, expect=403, code="forbidden")

    # The handed-off question q4, labelled "not an FAQ" by the supervisor.
    queue = await c.call("GET", "/v1/queue", supervisor, expect=200)
    [conversation] = [w["conversation_id"] for w in queue["waiting"]]
    detail = await c.call("GET", f"/v1/conversations/{conversation}", supervisor, expect=200)
    [q4] = [m["id"] for m in detail["messages"] if m["sender"] == "customer"]
    label = await c.call("PUT", f"/v1/faq/labels/{q4}", supervisor, expect=200, json_body={"intent": None})
    assert label["intent"] is None and label["outcome"] == "low_confidence"
    await c.call("PUT", f"/v1/faq/labels/{q4}", supervisor, expect=422, code="validation_failed",
                 json_body={"intent": "talk_to_human"})
    await c.call("PUT", "/v1/faq/labels/msg_none", supervisor, expect=404, code="not_found",
                 json_body={"intent": "reset_password"})
    labels = await c.call("GET", "/v1/faq/labels", supervisor, expect=200, params={"days": "1"})
    assert [x["message_id"] for x in labels["labels"]] == [q4]
    await c.call("GET", "/v1/faq/labels", admin, expect=422, code="validation_failed", params={"days": "0"},
                 request_valid=False)

    faq_ops = {op for op in spec_operations() if op[1].startswith("/v1/faq/")}
    succeeded = {(m, t) for m, t, status in c.exercised if status < 300}
    assert faq_ops <= succeeded, f"never exercised successfully: {sorted(faq_ops - succeeded)}"


async def test_the_web_widget_matches_the_document(app_client: Api) -> None:
    api = app_client
    c = Contract(api)
    web = await c.call("POST", "/v1/admin/channels", ADMIN_TOKEN, expect=201,
                       json_body={"name": "Acme support", "kind": "widget"})
    await c.call("POST", "/v1/admin/agents", ADMIN_TOKEN, expect=201,
                 json_body={"name": "Ann", "skills": ["general"], "capacity": 1, "status": "online"})
    ann = (await api.admin("GET", "/v1/admin/agents"))["agents"][0]
    ann_token = (await c.call("POST", f"/v1/admin/agents/{ann['id']}/token", ADMIN_TOKEN, expect=201))["token"]
    cfg = await c.call("GET", f"/v1/widget/channels/{web['id']}", None, expect=200, params={"lang": "zh"})
    assert cfg["lang"] == "zh"
    await c.call("GET", f"/v1/widget/channels/{api.channel_id}", None, expect=404, code="not_found")
    made = await c.call("POST", f"/v1/widget/channels/{web['id']}/sessions", None, expect=201,
                        json_body={"name": "Dana"})
    session = made["session"]
    answered = await c.call("POST", "/v1/widget/messages", session, expect=200,
                            json_body={"message_id": "wm-1", "text": FAQ})
    assert answered["reply"]["action"] == "answer"
    handed = await c.call("POST", "/v1/widget/messages", session, expect=200,
                          json_body={"message_id": "wm-2", "text": HUMAN})
    assert handed["reply"]["action"] == "handoff" and handed["conversation"]["status"] == "assigned"
    forwarded = await c.call("POST", "/v1/widget/messages", session, expect=200,
                             json_body={"message_id": "wm-3", "text": "hello?"})
    assert forwarded["reply"]["action"] == "forwarded"
    [conv] = (await api.call("GET", "/v1/agents/me/conversations", ann_token))["conversations"]
    await api.call("POST", f"/v1/conversations/{conv['id']}/replies", ann_token, json={"text": "Hi"}, expect=201)
    await api.call("POST", f"/v1/conversations/{conv['id']}/resolve", ann_token)
    seen = await c.call("GET", "/v1/widget/conversation", session, expect=200)
    assert seen["conversation"]["rating_wanted"] is True and seen["messages"][-1]["agent_name"] == "Ann"
    await c.call("GET", "/v1/widget/conversation", session, expect=200, params={"after": seen["messages"][0]["id"]})
    await c.call("POST", "/v1/widget/feedback", session, expect=200, json_body={"rating": 4, "comment": "ok"})
    await c.call("POST", "/v1/widget/close", session, expect=200)
    await c.call("GET", "/v1/widget/ws", session, expect=400, code="bad_request")
    await c.call("POST", "/v1/widget/messages", session, expect=422, code="empty_text",
                 json_body={"message_id": "wm-4", "text": " "}, request_valid=False)
    await c.call("POST", "/v1/widget/feedback", session, expect=422, code="validation_failed",
                 json_body={"rating": 9}, request_valid=False)
    await c.call("GET", "/v1/widget/conversation", session + "x", expect=401, code="unauthenticated")
    await c.call("GET", "/v1/widget/conversation", ann_token, expect=403, code="forbidden")
    ws = await api.client.ws_connect(f"/v1/widget/ws?token={session}")
    hello = json.loads((await ws.receive(timeout=10)).data)
    assert hello["type"] == "hello" and len(hello["messages"]) == 5  # three asked, the answer, the reply
    await ws.close()
    widget_ops = {op for op in spec_operations() if op[1].startswith("/v1/widget/")} - {("GET", "/v1/widget/ws")}
    succeeded = {(m, t) for m, t, status in c.exercised if status < 300}
    assert widget_ops <= succeeded, f"never exercised successfully: {sorted(widget_ops - succeeded)}"

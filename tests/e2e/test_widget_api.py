"""The web chat widget's API: customer sessions that reach one conversation
only, messages acknowledged once and never twice, catch-up by the last
message seen, live nudges over the WebSocket, and the rating landing in the
satisfaction metric. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from tests.support.api import Api
from tierdesk.web import keys

FAQ = "how do I reset my password"
HUMAN = "I want to talk to a human"


class Customer:
    def __init__(self, api: Api, channel_id: str, made: dict[str, Any]) -> None:
        self.api, self.channel_id = api, channel_id
        self.session, self.conversation_id = made["session"], made["conversation_id"]

    async def call(self, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
        return await self.api.call(method, path, self.session, expect=expect, **kw)

    async def say(self, text: str, message_id: str, expect: int = 200) -> Any:
        return await self.call("POST", "/v1/widget/messages", json={"message_id": message_id, "text": text},
                               expect=expect)


async def widget_channel(api: Api, name: str = "Acme support") -> dict[str, Any]:
    return await api.admin("POST", "/v1/admin/channels", json={"name": name, "kind": "widget"}, expect=201)


async def new_customer(api: Api, channel_id: str, name: str | None = None) -> Customer:
    body = {} if name is None else {"name": name}
    made = await api.call("POST", f"/v1/widget/channels/{channel_id}/sessions", None, json=body, expect=201)
    assert made["session"].startswith("td_customer_") and made["conversation_id"].startswith("w_")
    return Customer(api, channel_id, made)


async def test_the_channel_tells_the_widget_its_name_and_language(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    assert ch["kind"] == "widget"
    cfg = await api.call("GET", f"/v1/widget/channels/{ch['id']}", None)
    assert cfg["name"] == "Acme support" and cfg["lang"] == "en" and cfg["usual_reply_seconds"] is None
    assert cfg["messages"]["widget.send"] == "Send"
    zh = await api.call("GET", f"/v1/widget/channels/{ch['id']}", None, headers={"Accept-Language": "zh-CN"})
    assert zh["lang"] == "zh" and zh["messages"]["widget.send"] == "发送"
    # a webhook channel has no widget
    await api.call("GET", f"/v1/widget/channels/{api.channel_id}", None, expect=404)
    await api.call("POST", f"/v1/widget/channels/{api.channel_id}/sessions", None, json={}, expect=404)


async def test_a_message_is_answered_at_once_and_a_repeat_changes_nothing(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    dana = await new_customer(api, ch["id"], "Dana")
    first = await dana.say(FAQ, "wm-1")
    assert first["reply"]["action"] == "answer"
    assert [(m["sender"], m["client_id"]) for m in first["messages"]] == [("customer", "wm-1"), ("bot", None)]
    assert first["messages"][1]["text"] == first["reply"]["text"]
    assert first["conversation"]["status"] == "bot"
    rows = await api.app[keys.STORE].count("messages")
    again = await dana.say(FAQ, "wm-1")  # the widget retrying after a lost acknowledgement
    assert again["reply"] == first["reply"] and again["messages"] == first["messages"]
    assert await api.app[keys.STORE].count("messages") == rows
    # catching up from the last message seen returns only what is newer
    whole = await dana.call("GET", "/v1/widget/conversation")
    assert [m["id"] for m in whole["messages"]] == [m["id"] for m in first["messages"]]
    after = await dana.call("GET", "/v1/widget/conversation", params={"after": first["messages"][0]["id"]})
    assert [m["sender"] for m in after["messages"]] == ["bot"]
    assert (await dana.call("GET", "/v1/widget/conversation", params={"after": first["messages"][1]["id"]}))[
        "messages"] == []


async def test_a_customer_reaches_their_own_conversation_only(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    other_ch = await widget_channel(api, "Other shop")
    dana = await new_customer(api, ch["id"])
    eve = await new_customer(api, ch["id"])
    await dana.say("my order number is 1234 and my address is secret", "d-1")
    # Eve sees her own (empty) conversation, never Dana's
    seen = await eve.call("GET", "/v1/widget/conversation")
    assert seen["messages"] == [] and seen["conversation"]["status"] == "new"
    await eve.say(FAQ, "e-1")
    assert "1234" not in json.dumps(await eve.call("GET", "/v1/widget/conversation"))
    # a token changed to name Dana's conversation fails its signature
    payload, mac = eve.session.removeprefix("td_customer_").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["v"] = dana.conversation_id
    forged = "td_customer_" + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + mac
    before = await api.app[keys.STORE].count("messages")
    for method, path, body in (("GET", "/v1/widget/conversation", None),
                               ("POST", "/v1/widget/messages", {"message_id": "x-1", "text": "hi"}),
                               ("POST", "/v1/widget/feedback", {"rating": 1}),
                               ("POST", "/v1/widget/close", None)):
        data = await api.call(method, path, forged, json=body, expect=401)
        assert data["error"]["code"] == "unauthenticated"
    assert await api.app[keys.STORE].count("messages") == before
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect(f"/v1/widget/ws?token={forged}")
    assert refused.value.status == 401
    # a session of one widget channel is nothing on another's: signed with another secret
    other = await new_customer(api, other_ch["id"])
    payload, mac = other.session.removeprefix("td_customer_").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["c"] = ch["id"]
    moved = "td_customer_" + base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + mac
    await api.call("GET", "/v1/widget/conversation", moved, expect=401)
    # nor is a customer session anything to the rest of the API, or an API token to the widget's
    await api.call("GET", "/v1/agents/me", dana.session, expect=403)
    await api.call("POST", "/v1/messages", dana.session, json={}, expect=403)
    await api.call("GET", "/v1/widget/conversation", api.channel_token, expect=403)
    await api.call("GET", "/v1/widget/conversation", None, expect=401)


async def test_rotating_the_secret_or_disabling_the_channel_ends_sessions(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    dana = await new_customer(api, ch["id"])
    await dana.say(FAQ, "d-1")
    await api.admin("PATCH", f"/v1/admin/channels/{ch['id']}",
                    json={"rotate_webhook_secret": True, "secret_overlap_seconds": 60})
    await dana.call("GET", "/v1/widget/conversation")  # the overlap: still good
    api.clock.advance(61)
    await dana.call("GET", "/v1/widget/conversation", expect=401)
    eve = await new_customer(api, ch["id"])
    await eve.call("GET", "/v1/widget/conversation")
    await api.admin("DELETE", f"/v1/admin/channels/{ch['id']}")
    await eve.call("GET", "/v1/widget/conversation", expect=401)
    await api.call("POST", f"/v1/widget/channels/{ch['id']}/sessions", None, json={}, expect=404)


async def test_a_session_expires(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    dana = await new_customer(api, ch["id"])
    await dana.call("GET", "/v1/widget/conversation")
    api.clock.advance(api.app[keys.SETTINGS].widget_session_lifetime_seconds + 1)
    data = await dana.call("GET", "/v1/widget/conversation", expect=401)
    assert "expired" in data["error"]["message"]


async def next_frame(ws: Any, kind: str) -> dict[str, Any]:
    for _ in range(40):
        msg = await ws.receive(timeout=30)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        if msg.data == "pong":
            continue
        frame = json.loads(msg.data)
        if frame["type"] == kind:
            return frame  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} frame")


async def test_queue_state_agent_replies_live_and_the_rating_is_counted(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    ann = await api.add_agent("ann", ["general"], capacity=1)
    # ann is busy with someone else: Dana waits
    eve = await new_customer(api, ch["id"])
    assert (await eve.say(HUMAN, "e-1"))["reply"]["agent_id"] == ann["id"]
    dana = await new_customer(api, ch["id"], "Dana")
    ws = await api.client.ws_connect(f"/v1/widget/ws?token={dana.session}")
    hello = await next_frame(ws, "hello")
    assert hello["conversation"]["status"] == "new" and hello["messages"] == []
    said = await dana.say(HUMAN, "d-1")
    assert said["reply"]["action"] == "handoff" and said["reply"]["queue_position"] == 1
    queued = said["conversation"]
    assert (queued["status"], queued["queue_position"], queued["expected_wait_seconds"]) == ("queued", 1, None)
    assert queued["basis"] == {"taken_from_queue": 0, "window_seconds": 1800.0}

    # ann resolves Eve's and takes Dana's; she replies and Dana's widget is told at once
    [eves] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    await api.as_agent("ann", "POST", f"/v1/conversations/{eves['id']}/resolve")
    status = await next_frame(ws, "status")
    assert status["conversation"]["status"] == "assigned" and status["conversation"]["agent_name"] == "ann"
    [danas] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    await api.as_agent("ann", "POST", f"/v1/conversations/{danas['id']}/replies", json={"text": "Hi Dana, Ann here."},
                       expect=201)
    # the socket sends what it has not sent yet (from its first frame on): each message once
    pushed: list[dict[str, Any]] = []
    while not any(m["sender"] == "agent" for m in pushed):
        pushed += (await next_frame(ws, "messages"))["messages"]
    assert [(m["sender"], m["text"], m["agent_name"]) for m in pushed] == [
        ("customer", HUMAN, None), ("agent", "Hi Dana, Ann here.", "ann")]

    # resolved: the widget asks for a rating, which lands in the satisfaction metric
    await api.as_agent("ann", "POST", f"/v1/conversations/{danas['id']}/resolve")
    for _ in range(10):
        state = (await next_frame(ws, "status"))["conversation"]
        if state["status"] == "resolved":
            break
    assert state["rating_wanted"] is True
    await dana.call("POST", "/v1/widget/feedback", json={"rating": 5, "comment": "quick and kind"})
    assert (await dana.call("GET", "/v1/widget/conversation"))["conversation"]["rating_wanted"] is False
    await ws.close()
    api.clock.advance(60)
    report = await api.admin("GET", "/v1/metrics", params={"from": "2025-12-31T00:00:00Z", "exact": "true"})
    human = report["groups"][0]["human"]["satisfaction"]
    assert (human["numerator"], human["denominator"]) == (1, 1)


async def test_reconnecting_catches_up_from_the_last_message_seen(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    await api.add_agent("ann", ["general"], capacity=1)
    dana = await new_customer(api, ch["id"])
    first = await dana.say(HUMAN, "d-1")
    last = first["messages"][-1]["id"]
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    # replies while the widget is away
    for text in ("one", "two"):
        await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": text}, expect=201)
    ws = await api.client.ws_connect(f"/v1/widget/ws?token={dana.session}&after={last}")
    hello = await next_frame(ws, "hello")
    assert [m["text"] for m in hello["messages"]] == ["one", "two"]
    await ws.send_str("ping")
    assert (await ws.receive(timeout=10)).data == "pong"
    await ws.close()


async def test_the_widget_api_allows_other_origins(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    resp = await api.client.options(f"/v1/widget/channels/{ch['id']}/sessions", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert resp.status == 204 and resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await api.client.get(f"/v1/widget/channels/{ch['id']}", headers={"Origin": "https://shop.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # not the rest of the API
    resp = await api.client.get("/v1/queue", headers={"Origin": "https://shop.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    js = await api.client.get("/widget/widget.js")
    assert js.status == 200 and "attachShadow" in await js.text()
    page = await api.client.get(f"/widget/demo/{ch['id']}")
    assert page.status == 200 and f'data-channel="{ch["id"]}"' in await page.text()
    assert (await api.client.get("/widget/nope.js")).status == 404
    await asyncio.sleep(0)


async def test_typing_goes_both_ways_and_only_for_the_agent_holding_the_conversation(app_client: Api) -> None:
    api = app_client
    ch = await widget_channel(api)
    ann = await api.add_agent("ann", ["general"], capacity=1)
    await api.add_agent("bob", ["general"], capacity=1)
    dana = await new_customer(api, ch["id"])
    assert (await dana.say(HUMAN, "d-1"))["reply"]["agent_id"] == ann["id"]
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    widget = await api.client.ws_connect(f"/v1/widget/ws?token={dana.session}")
    await next_frame(widget, "hello")
    agent = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    await next_frame(agent, "hello")

    # the customer types: ann's socket is told which conversation
    await widget.send_str('{"type":"typing"}')
    assert (await next_frame(agent, "customer_typing"))["conversation_id"] == conv["id"]

    # ann types: the widget shows her name; an empty body means typing
    said = await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/typing", json={"typing": True})
    assert said == {"ok": True, "shown": True}
    frame = await next_frame(widget, "typing")
    assert (frame["typing"], frame["name"]) == (True, "ann")
    await api.call("POST", f"/v1/conversations/{conv['id']}/typing", ann["token"], data=b"")
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/typing", json={"typing": False})
    assert (await next_frame(widget, "typing"))["typing"] is True
    assert (await next_frame(widget, "typing"))["typing"] is False

    # bob does not hold it; a bad body writes nothing and says why
    refused = await api.as_agent("bob", "POST", f"/v1/conversations/{conv['id']}/typing", json={}, expect=403)
    assert refused["error"]["code"] == "not_your_conversation"
    bad = await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/typing", json={"typing": "yes"},
                             expect=422)
    assert bad["error"]["code"] == "validation_failed"
    await widget.close()
    await agent.close()


async def test_a_webhook_channel_is_not_sent_typing(app_client: Api) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["general"], capacity=1)
    await api.send("c-typing", HUMAN)
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    said = await api.call("POST", f"/v1/conversations/{conv['id']}/typing", ann["token"], json={})
    assert said["ok"] is True
    deliveries = await api.admin("GET", "/v1/admin/deliveries")
    assert all(d.get("kind") != "typing" for d in deliveries.get("deliveries", []))

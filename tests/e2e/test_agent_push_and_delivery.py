"""Agents get pushes over their WebSocket; replies reach the channel's webhook,
a real HTTP server that fails, then recovers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from aiohttp import web
from sqlalchemy import select

from storage import tables as t
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


async def _handed_off_to_ann(api, aiohttp_server, hook, capacity: int = 2) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    """A channel whose webhook is ``hook`` on a real local server, and one of
    its conversations handed off to agent ann: returns (channel, conversation)."""
    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    channel = await api.admin("POST", "/v1/admin/channels",
                              json={"name": "app", "webhook_url": str(server.make_url("/hook"))}, expect=201)
    api.channel_token = channel["token"]
    await api.add_agent("ann", ["billing"], capacity=capacity)
    await api.send("c1", BILLING, message_id="1")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    return channel, conv


async def test_websocket_pushes_assignment_and_customer_messages(app_client) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    ws = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    hello = await ws.receive_json(timeout=5)
    assert hello == {"type": "hello", "agent_id": ann["id"], "conversations": []}
    await api.send("c1", BILLING, message_id="1")
    pushed = await ws.receive_json(timeout=5)
    assert pushed["type"] == "assignment"
    assert pushed["conversation"]["external_id"] == "c1" and pushed["conversation"]["handoff"]["skill"] == "billing"
    await api.send("c1", "any news?", message_id="2")
    msg = await ws.receive_json(timeout=5)
    assert msg["type"] == "customer_message" and msg["message"]["text"] == "any news?"
    await ws.send_str("ping")
    assert (await ws.receive(timeout=5)).data == "pong"
    await ws.close()


async def test_websocket_refuses_a_bad_token(app_client) -> None:
    resp = await app_client.client.get("/v1/agents/ws", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


async def test_agent_reply_is_delivered_signed_in_order_with_retries(app_client, aiohttp_server) -> None:
    api = app_client
    received: list[dict] = []
    failures = {"left": 2}

    async def hook(request: web.Request) -> web.Response:
        if failures["left"] > 0:
            failures["left"] -= 1
            return web.Response(status=503)
        body = await request.read()
        received.append({"key": request.headers["Idempotency-Key"],
                         "signature": request.headers.get("X-Tierdesk-Signature"),
                         "body": body, "json": await request.json()})
        return web.Response(status=204)

    channel, conv = await _handed_off_to_ann(api, aiohttp_server, hook)
    for text in ("first", "second", "third"):
        await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": text},
                           expect=201)

    async def wait_for(n: int) -> None:
        for _ in range(200):
            if len(received) >= n:
                return
            # Retries are scheduled on the (fake) clock: move it past any backoff.
            api.clock.advance(600)
            api.app[keys.DELIVERY_WAKE]()
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {len(received)} deliveries arrived")

    await wait_for(3)
    assert [r["json"]["text"] for r in received] == ["first", "second", "third"]
    assert all(r["json"]["conversation_id"] == "c1" for r in received)
    # The signature verifies with the channel's secret over "timestamp.body".
    for r in received:
        parts = dict(p.split("=", 1) for p in r["signature"].split(","))
        expected = hmac.new(channel["webhook_secret"].encode(), f"{parts['t']}.".encode() + r["body"],
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest(parts["v1"], expected)
    # The receiver has the third delivery; the worker records it just after.
    for _ in range(100):
        async with api.app[keys.ENGINES].read.connect() as conn:
            rows = (await conn.execute(select(t.outbox.c.status, t.outbox.c.attempts)
                                       .order_by(t.outbox.c.id))).all()
        if all(s == "delivered" for s, _ in rows):
            break
        await asyncio.sleep(0.02)
    assert [s for s, _ in rows] == ["delivered"] * 3
    assert rows[0][1] == 3  # two failures, then success


async def test_dead_letters_can_be_replayed(app_client, aiohttp_server) -> None:
    api = app_client
    received: list[str] = []
    up = {"ok": False}

    async def hook(request: web.Request) -> web.Response:
        if not up["ok"]:
            return web.Response(status=500)
        received.append(request.headers["Idempotency-Key"])
        return web.Response(status=200)

    channel, conv = await _handed_off_to_ann(api, aiohttp_server, hook)
    reply = await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "hi"},
                               expect=201)
    max_attempts = api.app[keys.SETTINGS].outbox_max_attempts
    for _ in range(400):
        dead = (await api.admin("GET", "/v1/admin/deliveries", params={"status": "dead"}))["deliveries"]
        if dead:
            break
        api.clock.advance(600)
        api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.02)
    assert len(dead) == 1 and dead[0]["attempts"] == max_attempts and dead[0]["last_error"] == "HTTP 500"
    up["ok"] = True
    assert (await api.admin("POST", "/v1/admin/deliveries/replay"))["replayed"] == 1
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.02)
    assert received == [reply["id"]]


async def test_a_receiver_that_times_out_gets_the_delivery_again(aiohttp_client, aiohttp_server, db_url, clock,
                                                                  demo_model) -> None:
    from tests.support.api import Api

    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          webhook_timeout_seconds=0.2)
    calls: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(request.headers["Idempotency-Key"])
        if len(calls) == 1:
            await asyncio.sleep(1.0)  # longer than the webhook timeout
        return web.Response(status=200)

    _, conv = await _handed_off_to_ann(api, aiohttp_server, hook, capacity=1)
    reply = await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "hi"},
                               expect=201)
    for _ in range(200):
        async with api.app[keys.ENGINES].read.connect() as conn:
            status = (await conn.execute(select(t.outbox.c.status, t.outbox.c.last_error))).first()
        if status and status[0] == "delivered":
            break
        api.clock.advance(600)
        api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.05)
    assert status[0] == "delivered"
    # The receiver saw the same delivery again, under the same key: it can
    # drop the repeat. (More than twice when a loaded machine makes a quick
    # answer miss the 0.2 s timeout too.)
    assert len(calls) >= 2 and set(calls) == {reply["id"]}

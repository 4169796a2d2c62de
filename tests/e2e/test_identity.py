"""Identity an admin can manage: tokens of every kind listed and revoked,
revocation reaching open WebSockets, webhook secrets rotated with an
overlap, agents and channels disabled (docs/api.md, docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.signing import sign, verify
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


async def _closed(ws: Any, within: float = 30.0) -> Any:
    """The close frame of a socket the server closes (the wait is only a bound)."""
    while True:
        msg = await ws.receive(timeout=within)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return msg


async def _socket(api: Api, token: str) -> Any:
    ws = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {token}"})
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    return ws


async def test_rotating_an_agents_token_closes_their_open_socket(app_client: Api) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    ws = await _socket(api, ann["token"])
    new = await api.admin("POST", f"/v1/admin/agents/{ann['id']}/token", expect=201)
    msg = await _closed(ws)
    assert msg.data == 1008 and msg.extra == "token revoked"
    # the customer's next words do not reach the old socket; the new token works
    await api.send("c1", BILLING, message_id="m1")
    ws2 = await _socket(api, new["token"])
    await ws2.close()
    assert api.app[keys.SOCKETS].count() == 0


async def test_revoking_one_token_by_its_id(app_client: Api) -> None:
    api = app_client
    sup = [await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201) for _ in range(2)]
    listed = (await api.admin("GET", "/v1/admin/tokens", params={"role": "supervisor"}))["tokens"]
    assert len(listed) == 2 and all(t["revoked_at"] is None for t in listed)
    await api.call("GET", "/v1/queue", sup[0]["token"])
    # which listed token is sup[0]'s: the one whose revocation stops it
    revoked = await api.admin("DELETE", f"/v1/admin/tokens/{listed[0]['token_id']}")
    assert revoked["role"] == "supervisor" and revoked["revoked"] is True
    statuses = [(await api.client.get("/v1/queue", headers={"Authorization": f"Bearer {s['token']}"})).status
                for s in sup]
    assert sorted(statuses) == [200, 401]
    everything = (await api.admin("GET", "/v1/admin/tokens", params={"include_revoked": "true"}))["tokens"]
    assert sum(1 for t in everything if t["revoked_at"] is not None) == 1
    # the same id again: no live token has it
    await api.admin("DELETE", f"/v1/admin/tokens/{listed[0]['token_id']}", expect=404)
    await api.admin("DELETE", "/v1/admin/tokens/not-hex!", expect=422)


async def test_a_database_admin_token_works_and_can_be_revoked(app_client: Api) -> None:
    api = app_client
    made = await api.admin("POST", "/v1/admin/admin-tokens", expect=201)
    await api.call("GET", "/v1/admin/channels", made["token"])
    [listed] = (await api.call("GET", "/v1/admin/tokens", made["token"], params={"role": "admin"}))["tokens"]
    await api.call("DELETE", f"/v1/admin/tokens/{listed['token_id']}", made["token"])
    await api.call("GET", "/v1/admin/channels", made["token"], expect=401)


async def test_disabling_an_agent_requeues_their_conversations_and_ends_their_access(app_client: Api) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["billing"], capacity=3)
    ws = await _socket(api, ann["token"])
    for i in range(3):
        assert (await api.send(f"c{i}", BILLING, message_id=f"m{i}"))["agent_id"] == ann["id"]
    # nobody else is online yet: all three go back to the queue, oldest first
    disabled = await api.admin("DELETE", f"/v1/admin/agents/{ann['id']}")
    assert disabled["disabled"] is True and disabled["requeued"] == 3 and disabled["open_conversations"] == 0
    assert (await _closed(ws)).extra == "token revoked"
    await api.as_agent("ann", "GET", "/v1/agents/me", expect=401)
    queue = await api.admin("GET", "/v1/queue")
    assert queue["total"] == 3
    bob = await api.add_agent("bob", ["billing"], capacity=3)
    assert (await api.admin("GET", "/v1/queue"))["total"] == 0
    assert len((await api.as_agent("bob", "GET", "/v1/agents/me/conversations"))["conversations"]) == 3
    assert (await api.send("c0", "any news?", message_id="m9")) == {"action": "forwarded", "agent_id": bob["id"]}
    # the disabled agent stays listed (history), cannot be brought back online or given a token
    agents = {a["id"]: a for a in (await api.admin("GET", "/v1/admin/agents"))["agents"]}
    assert agents[ann["id"]]["disabled"] is True
    await api.admin("PATCH", f"/v1/admin/agents/{ann['id']}", json={"status": "online"}, expect=409)
    await api.admin("POST", f"/v1/admin/agents/{ann['id']}/token", expect=409)
    # the requeue is tracked, and metrics keep the first assignment's queue wait
    api.clock.advance(60)
    exact = await api.admin("GET", "/v1/metrics", params={"exact": "true"})
    assert exact["groups"][0]["human"]["handoffs"] == 3
    assert exact["groups"][0]["human"]["queue_wait"]["count"] == 3


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []

    async def hook(self, request: web.Request) -> web.Response:
        self.got.append((request.headers.get("X-Tierdesk-Signature", ""), await request.read()))
        return web.Response(status=204)


async def test_a_rotated_webhook_secret_overlaps_then_ends(app_client: Api, aiohttp_server: Any) -> None:
    api = app_client
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    server = await aiohttp_server(app)
    channel = await api.admin("POST", "/v1/admin/channels", expect=201,
                              json={"name": "app", "webhook_url": str(server.make_url("/hook")),
                                    "require_signature": True})
    old = channel["webhook_secret"]
    rotated = await api.admin("PATCH", f"/v1/admin/channels/{channel['id']}",
                              json={"rotate_webhook_secret": True, "secret_overlap_seconds": 600})
    new = rotated["webhook_secret"]
    assert new != old and rotated["previous_secret_until"] is not None

    async def post_signed(secret: str, mid: str) -> int:
        body = json.dumps({"message_id": mid, "conversation_id": "c1", "customer": {"id": "u"},
                           "text": BILLING}).encode()
        resp = await api.client.post("/v1/messages", data=body, headers={
            "Authorization": f"Bearer {channel['token']}", "Content-Type": "application/json",
            "X-Tierdesk-Signature": sign(secret, int(api.clock.now()), body)})
        return resp.status

    # inbound: both secrets verify during the overlap
    assert await post_signed(old, "m1") == 200
    assert await post_signed(new, "m2") == 200
    ann = await api.add_agent("ann", ["billing"], capacity=1)
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]

    async def delivered(n: int) -> tuple[str, bytes]:
        for _ in range(300):
            if len(receiver.got) >= n:
                return receiver.got[n - 1]
            api.app[keys.DELIVERY_WAKE]()
            await asyncio.sleep(0.02)
        raise AssertionError("no delivery")

    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "one"}, expect=201)
    header, body = await delivered(1)
    assert header.count("v1=") == 2  # signed with both: the receiver verifies with the one it has
    for secret in (old, new):
        verify(secret, header, body, api.clock.now(), 300)
    # after the overlap only the new secret is good, both ways
    api.clock.advance(601)
    api.app[keys.AUTH].forget_channel(channel["id"])
    api.app[keys.DELIVERY].forget_channel(channel["id"])
    assert await post_signed(old, "m3") == 401
    assert await post_signed(new, "m4") == 200
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "two"}, expect=201)
    header, body = await delivered(2)
    assert header.count("v1=") == 1
    verify(new, header, body, api.clock.now(), 300)
    assert ann["id"]


async def test_a_disabled_channel_is_refused_and_its_replies_dead_lettered(app_client: Api,
                                                                          aiohttp_server: Any) -> None:
    api = app_client
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    server = await aiohttp_server(app)
    channel = await api.admin("POST", "/v1/admin/channels", expect=201,
                              json={"name": "app", "webhook_url": str(server.make_url("/hook"))})
    api.channel_token = channel["token"]
    await api.add_agent("ann", ["billing"], capacity=1)
    await api.send("c1", BILLING, message_id="m1")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    gone = await api.admin("DELETE", f"/v1/admin/channels/{channel['id']}")
    assert gone["disabled"] is True
    await api.send("c1", "hello?", message_id="m2", expect=401)
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "hi"}, expect=201)
    for _ in range(300):
        dead = (await api.admin("GET", "/v1/admin/deliveries"))["deliveries"]
        if dead:
            break
        api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.02)
    assert [d["last_error"] for d in dead] == ["channel is disabled"]
    assert receiver.got == []
    await api.admin("PATCH", f"/v1/admin/channels/{channel['id']}", json={"name": "x"}, expect=409)
    await api.admin("POST", f"/v1/admin/channels/{channel['id']}/token", expect=409)


@pytest.mark.parametrize("url", ["http://", "https://", "http:///path", "https://exa mple.com/x", "http://?x"])
async def test_a_webhook_url_must_have_a_host(app_client: Api, url: str) -> None:
    api = app_client
    data = await api.admin("POST", "/v1/admin/channels", json={"name": "c", "webhook_url": url}, expect=422)
    assert data["error"]["code"] == "validation_failed"
    data = await api.admin("PATCH", f"/v1/admin/channels/{api.channel_id}", json={"webhook_url": url}, expect=422)
    assert data["error"]["code"] == "validation_failed"


async def test_revocation_reaches_a_socket_on_the_other_instance(aiohttp_client: Any, clock: Any,
                                                                 demo_model: Any, request: Any) -> None:
    """Two instances on one PostgreSQL: the socket is on one, the token is
    rotated through the other; the socket is closed (through the relay, and
    by the periodic check at the latest)."""
    from tests.conftest import _truncate_postgres
    from tierdesk.models import LiveModel
    from tierdesk.settings import Settings
    from tierdesk.web.app import create_app

    url = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)

    async def instance() -> Api:
        settings = Settings.from_env({}, database_url=url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=3600.0,
                                     ws_revalidate_seconds=2.0)
        return Api(client=await aiohttp_client(create_app(settings, clock=clock, model=LiveModel.of(demo_model))),
                   clock=clock)

    one = await instance()
    ann = await one.add_agent("ann", ["billing"], capacity=2)
    two = await instance()
    ws = await _socket(two, ann["token"])
    await asyncio.sleep(0.3)  # both relays listening
    await one.admin("POST", f"/v1/admin/agents/{ann['id']}/token", expect=201)
    msg = await _closed(ws)
    assert msg.extra == "token revoked"

"""Signed inbound requests, rate limits, WebSocket idle timeout, log hygiene."""

from __future__ import annotations

import asyncio
import json

import structlog
from aiohttp import WSMsgType

from tests.support.api import Api
from tierdesk.signing import sign
from tierdesk.web import keys


async def _signed_channel(api: Api) -> dict:
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "signed", "require_signature": True},
                              expect=201)
    assert channel["require_signature"] is True
    return channel


def _body(mid: str) -> bytes:
    return json.dumps({"message_id": mid, "conversation_id": "c1", "customer": {"id": "u"},
                       "text": "how do I reset my password"}).encode()


async def test_a_signed_channel_refuses_unsigned_stale_and_forged_requests(app_client) -> None:
    api = app_client
    channel = await _signed_channel(api)
    auth = {"Authorization": f"Bearer {channel['token']}", "Content-Type": "application/json"}
    now = int(api.clock.now())
    cases = {
        "signature_required": {},
        "bad_signature": {"X-Tierdesk-Signature": sign("wrong-secret", now, _body("m1"))},
        "stale_signature": {"X-Tierdesk-Signature": sign(channel["webhook_secret"], now - 3600, _body("m1"))},
    }
    for code, extra in cases.items():
        resp = await api.client.post("/v1/messages", data=_body("m1"), headers={**auth, **extra})
        assert resp.status == 401, code
        assert (await resp.json())["error"]["code"] == code
    assert await api.app[keys.STORE].count("messages") == 0
    # A signature over another body does not carry over.
    other = {"X-Tierdesk-Signature": sign(channel["webhook_secret"], now, _body("m2"))}
    resp = await api.client.post("/v1/messages", data=_body("m1"), headers={**auth, **other})
    assert resp.status == 401
    good = {"X-Tierdesk-Signature": sign(channel["webhook_secret"], now, _body("m1"))}
    resp = await api.client.post("/v1/messages", data=_body("m1"), headers={**auth, **good})
    assert resp.status == 200 and (await resp.json())["action"] == "answer"


async def test_channel_rate_limit_answers_429_with_retry_after(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          rate_limit_channel_per_second=0.01, rate_limit_channel_burst=3.0)
    statuses = []
    for i in range(5):
        body = {"message_id": f"m{i}", "conversation_id": f"c{i}", "customer": {"id": "u"},
                "text": "how do I reset my password"}
        resp = await api.client.post("/v1/messages", json=body,
                                     headers={"Authorization": f"Bearer {api.channel_token}"})
        statuses.append(resp.status)
        if resp.status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"]["code"] == "rate_limited"
    assert statuses == [200, 200, 200, 429, 429]
    # Refused messages were not stored: only the 3 questions and 3 answers.
    assert await api.app[keys.STORE].count("messages") == 6


async def test_ip_rate_limit(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          rate_limit_ip_per_second=0.01, rate_limit_ip_burst=4.0)
    # Start-up used one request (channel creation); health checks are exempt.
    codes = [(await api.client.get("/v1/queue", headers={"Authorization": "Bearer x"})).status for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert (await api.client.get("/healthz")).status == 200


async def test_silent_websocket_is_closed_after_the_idle_timeout(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          ws_idle_timeout_seconds=0.6)
    agent = await api.add_agent("ann", ["general"], capacity=1)
    ws = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {agent['token']}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    # A client that pings stays connected past the timeout...
    for _ in range(4):
        await asyncio.sleep(0.25)
        await ws.send_str("ping")
        assert (await ws.receive(timeout=5)).data == "pong"
    # ...one that goes quiet is closed.
    msg = await ws.receive(timeout=5)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert ws.close_code == 1008
    for _ in range(50):  # the server forgets the socket as its handler unwinds
        if api.app[keys.SOCKETS].count() == 0:
            break
        await asyncio.sleep(0.02)
    assert api.app[keys.SOCKETS].count() == 0


async def test_customer_text_and_tokens_stay_out_of_info_logs(app_client) -> None:
    api = app_client
    secret_text = "my card number is 4111 1111 1111 1111 please reset my password"
    with structlog.testing.capture_logs() as logs:
        await api.send("c1", secret_text, message_id="s1")
        await api.send("c1", "I want to talk to a human", message_id="s2")
        await api.call("GET", "/v1/queue", "td_admin_wrong-token", expect=401)
    dumped = json.dumps(logs, default=str)
    assert logs, "the requests logged nothing at all"
    assert "4111" not in dumped and api.channel_token not in dumped and "wrong-token" not in dumped
    assert any(e.get("event") == "request" and e.get("route") == "/v1/messages" for e in logs)


async def test_message_text_logging_is_opt_in(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, log_message_text=True)
    with structlog.testing.capture_logs() as logs:
        await api.send("c1", "how do I reset my password", message_id="t1")
    assert any(e.get("text") == "how do I reset my password" for e in logs)


async def test_a_body_sent_at_a_trickle_is_cut_off_with_408(aiohttp_client, db_url, clock, demo_model) -> None:
    """A token holder sending a body slowly does not keep the connection: past
    TIERDESK_BODY_TIMEOUT_SECONDS it gets 408 request_timeout and is closed,
    and nothing of the request is stored."""
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, body_timeout_seconds=0.5)
    server = api.client.server
    body = _body("m-slow")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.channel_token}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    await writer.drain()
    # The rest never comes; the server answers on its own (the bound here
    # is only how long the test waits for it, far above the setting).
    raw = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"408", head
    assert json.loads(payload)["error"]["code"] == "request_timeout"
    assert await api.app[keys.STORE].count("messages") == 0
    # a whole body is unaffected
    assert (await api.send("c2", "how do I reset my password"))["action"] == "answer"


async def test_behind_a_trusted_proxy_each_client_has_its_own_address_bucket(aiohttp_client, db_url, clock,
                                                                             demo_model) -> None:
    """X-Forwarded-For is believed from TIERDESK_TRUSTED_PROXIES only: then
    each client behind the load balancer has its own bucket; from anywhere
    else the header changes nothing."""
    async def codes(api: Api, forwarded: str, n: int) -> list[int]:
        return [(await api.client.get("/v1/queue", headers={"Authorization": "Bearer x",
                                                            "X-Forwarded-For": forwarded})).status
                for _ in range(n)]

    behind = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                             rate_limit_ip_per_second=0.01, rate_limit_ip_burst=2.0,
                             trusted_proxies="127.0.0.0/8, ::1")
    assert await codes(behind, "203.0.113.5", 3) == [401, 401, 429]
    # another client, through the same proxy (and a spoofed hop on the left, which is not believed)
    assert await codes(behind, "198.51.100.1, 203.0.113.6", 2) == [401, 401]
    assert await codes(behind, "203.0.113.6", 1) == [429]


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(aiohttp_client, db_url, clock,
                                                                 demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          rate_limit_ip_per_second=0.01, rate_limit_ip_burst=3.0)
    codes = [(await api.client.get("/v1/queue", headers={"Authorization": "Bearer x",
                                                         "X-Forwarded-For": f"203.0.113.{i}"})).status
             for i in range(3)]
    assert codes == [401, 401, 429]  # one bucket: start-up used one request


def test_a_bad_trusted_proxies_setting_is_refused() -> None:
    import pytest

    from tierdesk.errors import InvalidInput
    from tierdesk.settings import Settings

    with pytest.raises(InvalidInput, match="TRUSTED_PROXIES"):
        Settings.from_env({"TIERDESK_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})

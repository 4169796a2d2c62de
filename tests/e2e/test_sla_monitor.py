"""The SLA monitor through the HTTP API on both databases: the alert webhook
(a real local receiver) gets a breach warning before the breach, once, and
a clear once; supervisors' sockets and /v1/live see the same; an alert
survives a restart without being raised again."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.signing import verify
from tierdesk.web import attendance, keys

BILLING = "I was charged twice for my order and want my money back"
SECRET = "whsec_alerts-test"


class Receiver:
    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        verify(SECRET, request.headers.get("X-Tierdesk-Signature"), body, 1.0e12, 1.0e13)
        self.got.append(await request.json())
        return web.Response(status=204)


async def _delivered(api: Api, receiver: Receiver, n: int) -> None:
    for _ in range(300):
        if len(receiver.got) >= n:
            return
        api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(receiver.got)} of {n} alert deliveries arrived")


async def test_a_breach_is_warned_about_once_before_and_cleared_once(aiohttp_client, aiohttp_server, db_url,
                                                                      clock, demo_model) -> None:
    receiver = Receiver()
    hook = web.Application()
    hook.router.add_post("/alerts", receiver.hook)
    server = await aiohttp_server(hook)
    settings = dict(timekeeper_interval_seconds=3600.0, reservation_timeout_seconds=0.0,
                    sla_human_first_response_seconds=60.0, alert_webhook_url=str(server.make_url("/alerts")),
                    alert_webhook_secret=SECRET)
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, **settings)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    ws = await api.client.ws_connect("/v1/live/ws", headers={"Authorization": f"Bearer {supervisor}"})
    assert (await ws.receive_json(timeout=10)) == {"type": "hello", "alerts": []}
    ann = await api.add_agent("ann", ["billing"], capacity=1)
    await api.send("c1", BILLING, message_id="m1")  # to ann, who takes her time
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]

    api.clock.advance(47)
    await attendance.tick(api.app)
    assert (await api.call("GET", "/v1/live", supervisor))["alerts"] == []
    api.clock.advance(1)  # 48 s of 60: under 20 % left
    await attendance.tick(api.app)
    pushed = await ws.receive_json(timeout=10)
    assert pushed["type"] == "alert_raised" and pushed["alert"]["kind"] == "first_response"
    assert pushed["alert"]["conversation_id"] == conv["id"]
    await _delivered(api, receiver, 1)
    assert receiver.got[0]["type"] == "alert_raised"
    assert receiver.got[0]["alert"]["due_at"] > receiver.got[0]["alert"]["raised_at"]  # before the breach
    # rounds later, breached or not, the same alert is not raised again
    for _ in range(3):
        api.clock.advance(10)
        await attendance.tick(api.app)
    [open_alert] = (await api.call("GET", "/v1/live", supervisor))["alerts"]
    assert open_alert["key"] == pushed["alert"]["key"]

    # a restart on the same database: the alert is still open, and not raised again
    await ws.close()
    await api.client.close()
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, **settings)
    ws = await api.client.ws_connect("/v1/live/ws", headers={"Authorization": f"Bearer {supervisor}"})
    hello = await ws.receive_json(timeout=10)
    assert [a["key"] for a in hello["alerts"]] == [open_alert["key"]]
    await attendance.tick(api.app)
    assert [a["key"] for a in (await api.call("GET", "/v1/live", supervisor))["alerts"]] == [open_alert["key"]]

    await api.call("POST", f"/v1/conversations/{conv['id']}/replies", ann["token"], json={"text": "Sorry!"},
                   expect=201)
    await attendance.tick(api.app)
    cleared = await ws.receive_json(timeout=10)
    assert cleared == {"type": "alert_cleared", "key": open_alert["key"], "cleared_at": cleared["cleared_at"]}
    await attendance.tick(api.app)
    await _delivered(api, receiver, 2)
    await asyncio.sleep(0.2)
    assert [(g["type"], g["alert"]["key"]) for g in receiver.got] == [("alert_raised", open_alert["key"]),
                                                                     ("alert_cleared", open_alert["key"])]
    assert (await api.call("GET", "/v1/live", supervisor))["alerts"] == []
    await ws.close()


async def test_a_skill_queue_past_its_threshold_raises_once(aiohttp_client, db_url, clock, demo_model,
                                                            tmp_path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("skills:\n  billing:\n    alerts: {queue_length: 3}\n")
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, routing_rules=rules,
                          timekeeper_interval_seconds=3600.0)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    for i in range(3):
        await api.send(f"c{i}", BILLING, message_id=f"m{i}")  # nobody holds billing: they wait
    await attendance.tick(api.app)
    await attendance.tick(api.app)
    alerts = (await api.call("GET", "/v1/live", supervisor))["alerts"]
    assert [(a["kind"], a["skill"], a["waiting"]) for a in alerts] == [("queue_length", "billing", 3)]
    await api.add_agent("ann", ["billing"], capacity=5)
    await attendance.tick(api.app)
    assert (await api.call("GET", "/v1/live", supervisor))["alerts"] == []
    assert ADMIN_TOKEN


async def test_prometheus_shows_the_oldest_wait_and_the_handoffs_at_risk_per_skill(app_client) -> None:
    api = app_client
    await api.send("c1", BILLING, message_id="m1")  # nobody holds billing: it waits
    api.clock.advance(50)  # of a 60 s first-response SLA: less than 20 % left
    await __import__("asyncio").sleep(1.1)  # the per-skill figures are read once a second
    text = await (await api.client.get("/metrics")).text()
    assert 'tierdesk_queue_oldest_wait_seconds{skill="billing"} 50' in text
    assert 'tierdesk_handoffs_at_risk{skill="billing"} 1' in text
    assert 'tierdesk_handoffs_breached{skill="billing"} 0' in text


async def test_past_the_cap_a_skill_gets_one_backlog_alert(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model,
                          timekeeper_interval_seconds=3600.0, sla_human_first_response_seconds=60.0,
                          alert_first_response_per_skill=2)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    for i in range(5):
        await api.send(f"c{i}", BILLING, message_id=f"m{i}")  # nobody holds billing: they wait
        api.clock.advance(1)
    api.clock.advance(50)
    await attendance.tick(api.app)
    alerts = (await api.call("GET", "/v1/live", supervisor))["alerts"]
    backlog = [a for a in alerts if a["kind"] == "first_response_backlog"]
    assert [(a["key"], a["skill"], a["late"], a["alerts_per_skill"]) for a in backlog] == [
        ("first_response_backlog:billing", "billing", 5, 2)]
    own = sorted(a["handoff_id"] for a in alerts if a["kind"] == "first_response")
    queue = (await api.call("GET", "/v1/queue", supervisor))["waiting"]
    assert own == sorted(h["handoff_id"] for h in queue[:2])  # the oldest two
    await attendance.tick(api.app)
    assert len((await api.call("GET", "/v1/live", supervisor))["alerts"]) == 3  # raised once
    # Someone takes them: every alert clears.
    await api.add_agent("ann", ["billing"], capacity=5)
    ann = await api.as_agent("ann", "GET", "/v1/agents/me/conversations")
    for conv in ann["conversations"]:
        await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "Hi"},
                           expect=201)
    await attendance.tick(api.app)
    assert (await api.call("GET", "/v1/live", supervisor))["alerts"] == []

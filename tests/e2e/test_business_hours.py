"""Business hours through the HTTP API, on SQLite and PostgreSQL: an
out-of-hours handoff answers with the opening time, the customer's channel
is told it (webhook, widget), nothing warns while the skill is closed, and
its SLA clock starts at opening, in the replay and in the rollups alike."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.support.api import Api
from tierdesk.web import attendance

BILLING = "I was charged twice for my order and want my money back"
# The shared clock starts at 2026-01-01T00:00:00Z: 08:00 on New Year's Day in
# Shanghai, a holiday. Billing opens next on Friday 09:00 there.
RULES = """\
skills:
  billing:
    hours:
      timezone: Asia/Shanghai
      weekly: {mon-fri: "09:00-18:00"}
      holidays: [2026-01-01]
"""
OPENS_AT = 1_767_315_600.0  # 2026-01-02T01:00:00Z
DAY = "from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z"


async def until(condition: Any, what: str) -> Any:
    for _ in range(600):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_an_out_of_hours_handoff_answers_with_the_opening_and_its_sla_clock_starts_then(
        aiohttp_client, aiohttp_server, db_url, clock, demo_model, tmp_path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    rules = tmp_path / "routing.yaml"
    rules.write_text(RULES)
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, routing_rules=rules,
                          timekeeper_interval_seconds=3600.0, reservation_timeout_seconds=0.0,
                          sla_human_first_response_seconds=60.0)
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "app", "webhook_url": str(
        server.make_url("/hook")), "notices": True}, expect=201)
    api.channel_token = channel["token"]
    ann = await api.add_agent("ann", ["billing"], capacity=2, status="offline")

    answer = await api.send("c1", BILLING, message_id="m1")
    assert answer == {"action": "handoff", "reason": answer["reason"], "skill": "billing", "agent_id": None,
                      "queue_position": 1, "opens_at": "2026-01-02T01:00:00Z"}
    [notice] = await until(lambda: [r for r in received if r["type"] == "out_of_hours"], "the out-of-hours notice")
    assert (notice["conversation_id"], notice["skill"], notice["opens_at"], notice["timezone"]) == (
        "c1", "billing", OPENS_AT, "Asia/Shanghai")
    assert not [r for r in received if r["type"] == "handoff"]  # told the opening instead of "connecting"

    # The widget shows the same, in its state as after a reload.
    widget = await api.admin("POST", "/v1/admin/channels", json={"name": "site", "kind": "widget"}, expect=201)
    made = await api.call("POST", f"/v1/widget/channels/{widget['id']}/sessions", None, json={}, expect=201)
    said = await api.call("POST", "/v1/widget/messages", made["session"],
                          json={"message_id": "wm-1", "text": BILLING})
    assert said["reply"]["opens_at"] == "2026-01-02T01:00:00Z"
    assert said["conversation"]["status"] == "queued"
    assert said["conversation"]["opens_at"] == "2026-01-02T01:00:00Z"

    # Closed all night: no warning, and the handoff is still inside its SLA.
    api.clock.t = OPENS_AT - 1
    await attendance.tick(api.app)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    live = await api.call("GET", "/v1/live", supervisor)
    assert live["alerts"] == []
    assert [(s["skill"], s["at_risk"], s["breached"]) for s in live["skills"]] == [("billing", 0, 0)]
    for exact in ("true", "false"):
        report = await api.admin("GET", f"/v1/metrics?{DAY}&exact={exact}")
        assert report["groups"][0]["human"]["first_response_pending"] == 2, exact
        assert report["groups"][0]["human"]["pending"] == 2, exact

    # It opens; ann comes online, takes both, answers c1 40 s after opening.
    api.clock.t = OPENS_AT
    await api.as_agent("ann", "PUT", "/v1/agents/me/status", json={"status": "online"})
    conversations = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert len(conversations) == 2
    c1 = next(c for c in conversations if c["external_id"] == "c1")
    api.clock.advance(40)
    await api.call("POST", f"/v1/conversations/{c1['id']}/replies", ann["token"], json={"text": "Sorry!"},
                   expect=201)
    api.clock.advance(3600)  # the widget's handoff is past its 60 s now
    for exact in ("true", "false"):  # the replay, and the rollups kept on write
        report = await api.admin("GET", f"/v1/metrics?{DAY}&exact={exact}")
        human = report["groups"][0]["human"]
        assert report["source"] == ("replay" if exact == "true" else "rollups")
        assert human["first_response_time"]["count"] == 1
        assert abs(human["first_response_time"]["sum"] - 40.0) < 0.5, human["first_response_time"]
        assert human["first_response_within_sla"]["numerator"] == 1
        assert human["first_response_within_sla"]["denominator"] == 2
        assert human["first_response_pending"] == 0
        assert abs(human["queue_wait"]["sum"]) < 1e-6  # assigned at opening: no business time waited

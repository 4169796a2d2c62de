"""The human tier when people are away or slow, through the HTTP API on
both databases: a dropped socket's conversations move on after the grace
period, a reservation nobody takes up moves to the next agent, and with two
instances exactly one acts on each timeout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from storage import tables as t
from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.web import attendance, keys

BILLING = "I was charged twice for my order and want my money back"


async def _start(aiohttp_client: Any, db_url: str, clock: Any, model: Any, **settings: Any) -> Api:
    return await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=model,
                           timekeeper_interval_seconds=3600.0, **settings)


async def _requeued(api: Api) -> list[tuple[str, str]]:
    async with api.app[keys.ENGINES].read.connect() as conn:
        rows = (await conn.execute(select(t.events.c.agent_id, t.events.c.data)
                                   .where(t.events.c.kind == "requeued").order_by(t.events.c.at))).all()
    return [(agent, data["reason"]) for agent, data in rows]


async def test_a_dropped_socket_moves_unanswered_work_on_after_the_grace_period(aiohttp_client, db_url, clock,
                                                                                demo_model) -> None:
    api = await _start(aiohttp_client, db_url, clock, demo_model, presence_grace_seconds=60.0,
                       reservation_timeout_seconds=600.0)
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    bob = await api.add_agent("bob", ["billing"], capacity=2, status="offline")
    ws = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    assert (await api.send("c1", BILLING, message_id="m1"))["agent_id"] == ann["id"]
    await api.as_agent("bob", "PUT", "/v1/agents/me/status", json={"status": "online"})
    await ws.close()  # ann's browser tab is gone
    for _ in range(50):
        if not api.app[keys.SOCKETS].agents():
            break
        await __import__("asyncio").sleep(0.02)
    api.clock.advance(59)
    await attendance.tick(api.app)
    assert await _requeued(api) == []  # a reload or a blip is shorter than the grace period
    api.clock.advance(2)
    await attendance.tick(api.app)
    assert await _requeued(api) == [(ann["id"], "presence_lost")]
    assert (await api.send("c1", "hello, anyone?", message_id="m2")) == {"action": "forwarded",
                                                                          "agent_id": bob["id"]}
    # ann, still "online" as she set it, gets nothing until she is back
    assert (await api.send("c2", BILLING, message_id="m3"))["agent_id"] == bob["id"]
    ws = await api.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    assert (await ws.receive_json(timeout=10))["type"] == "hello"
    assert (await api.send("c3", BILLING, message_id="m4"))["agent_id"] == ann["id"]
    await ws.close()


async def test_a_reservation_nobody_takes_up_moves_to_the_next_agent(aiohttp_client, db_url, clock, demo_model,
                                                                     tmp_path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("skills:\n  billing:\n    reservation_timeout_seconds: 30\n")
    api = await _start(aiohttp_client, db_url, clock, demo_model, routing_rules=rules)
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    assert (await api.send("c1", BILLING, message_id="m1"))["agent_id"] == ann["id"]
    bob = await api.add_agent("bob", ["billing"], capacity=2)
    api.clock.advance(29)
    await attendance.tick(api.app)
    assert await _requeued(api) == []
    api.clock.advance(1)
    await attendance.tick(api.app)
    assert await _requeued(api) == [(ann["id"], "reservation_timeout")]
    assert (await api.send("c1", "hello?", message_id="m2")) == {"action": "forwarded", "agent_id": bob["id"]}
    me = await api.as_agent("ann", "GET", "/v1/agents/me")
    assert me["open_conversations"] == 0


async def test_with_two_instances_exactly_one_acts_on_a_timeout(aiohttp_client, pg_url, clock, demo_model) -> None:
    from tierdesk.models import LiveModel
    from tierdesk.settings import Settings
    from tierdesk.web.app import create_app

    async def instance() -> Api:
        settings = Settings.from_env({}, database_url=pg_url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=3600.0,
                                     timekeeper_interval_seconds=3600.0)
        return Api(client=await aiohttp_client(create_app(settings, clock=clock, model=LiveModel.of(demo_model))),
                   clock=clock)

    one = await instance()
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = channel["token"]
    ann = await one.add_agent("ann", ["billing"], capacity=5)
    two = await instance()
    for i in range(3):
        assert (await one.send(f"c{i}", BILLING, message_id=f"m{i}"))["agent_id"] == ann["id"]
    await one.add_agent("bob", ["billing"], capacity=5)
    clock.advance(61)
    import asyncio

    await asyncio.sleep(0.3)  # both instances know bob (the relay)
    await asyncio.gather(attendance.tick(one.app), attendance.tick(two.app))
    await asyncio.gather(attendance.tick(one.app), attendance.tick(two.app))
    assert await _requeued(one) == [(ann["id"], "reservation_timeout")] * 3


async def test_the_live_view_marks_handoffs_before_they_breach(aiohttp_client, db_url, clock, demo_model) -> None:
    api = await _start(aiohttp_client, db_url, clock, demo_model, sla_human_first_response_seconds=60.0,
                       reservation_timeout_seconds=0.0)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    ann = await api.add_agent("ann", ["billing"], capacity=1)
    await api.send("c1", BILLING, message_id="m1")  # to ann, who does not answer
    await api.send("c2", BILLING, message_id="m2")  # waits
    api.clock.advance(47)
    live = await api.call("GET", "/v1/live", supervisor)
    [billing] = [s for s in live["skills"] if s["skill"] == "billing"]
    assert (billing["waiting"], billing["at_risk"], billing["breached"]) == (1, 0, 0)
    assert billing["oldest_wait_seconds"] == 47.0 and billing["agents_with_free_slot"] == 0
    api.clock.advance(1)  # 48 s of 60: under 20 % left
    live = await api.call("GET", "/v1/live", supervisor)
    [billing] = [s for s in live["skills"] if s["skill"] == "billing"]
    assert (billing["at_risk"], billing["breached"]) == (2, 0)
    api.clock.advance(12)
    live = await api.call("GET", "/v1/live", supervisor)
    [billing] = [s for s in live["skills"] if s["skill"] == "billing"]
    assert (billing["at_risk"], billing["breached"]) == (0, 2)
    [me] = live["agents"]
    assert (me["id"], me["load"], me["unanswered"], me["present"]) == (ann["id"], 1, 1, True)
    assert me["oldest_unanswered_seconds"] == 60.0


async def test_fallback_widens_at_its_delay_and_not_before(aiohttp_client, db_url, clock, demo_model,
                                                           tmp_path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("skills:\n  billing:\n    fallback:\n      - {skill: general, after_seconds: 30}\n")
    api = await _start(aiohttp_client, db_url, clock, demo_model, routing_rules=rules,
                       reservation_timeout_seconds=0.0)
    gus = await api.add_agent("gus", ["general"], capacity=2)
    # Nobody online holds billing: there is nobody to wait for, so general at once.
    assert (await api.send("c0", BILLING, message_id="m0"))["agent_id"] == gus["id"]
    bea = await api.add_agent("bea", ["billing"], capacity=1)
    assert (await api.send("c1", BILLING, message_id="m1"))["agent_id"] == bea["id"]
    handoff = await api.send("c2", BILLING, message_id="m2")
    assert handoff["skill"] == "billing" and handoff["agent_id"] is None  # bea is busy: wait for her
    api.clock.advance(29)
    await attendance.tick(api.app)
    assert (await api.admin("GET", "/v1/queue"))["total"] == 1
    api.clock.advance(1)
    await attendance.tick(api.app)
    assert (await api.admin("GET", "/v1/queue"))["total"] == 0
    assert (await api.send("c2", "hello?", message_id="m3")) == {"action": "forwarded", "agent_id": gus["id"]}


def test_a_bad_routing_rules_file_stops_the_server_with_a_message(tmp_path) -> None:
    from tierdesk.errors import InvalidInput
    from tierdesk.settings import Settings
    from tierdesk.web.app import create_app

    bad = tmp_path / "routing.yaml"
    bad.write_text("skills:\n  billing:\n    fallback: [{skill: general}]\n")
    with pytest.raises(InvalidInput, match="skills.billing.fallback"):
        create_app(Settings.from_env({}, routing_rules=bad))
    with pytest.raises(InvalidInput, match="cannot be read"):
        create_app(Settings.from_env({}, routing_rules=tmp_path / "missing.yaml"))


async def test_levels_are_kept_and_the_best_level_available_takes_the_handoff(aiohttp_client, db_url, clock,
                                                                              demo_model) -> None:
    api = await _start(aiohttp_client, db_url, clock, demo_model)
    junior = await api.add_agent("junior", ["billing"], capacity=3)
    senior = await api.admin("POST", "/v1/admin/agents", expect=201, json={
        "name": "senior", "skills": ["billing", "general"], "capacity": 2, "status": "online",
        "levels": {"billing": 5}})
    assert senior["levels"] == {"billing": 5, "general": 1} and junior["levels"] == {"billing": 1}
    taken = [(await api.send(f"c{i}", BILLING, message_id=f"m{i}"))["agent_id"] for i in range(3)]
    assert taken == [senior["id"], senior["id"], junior["id"]]  # the senior first, while they have room
    patched = await api.admin("PATCH", f"/v1/admin/agents/{junior['id']}", json={"levels": {"billing": 4}})
    assert patched["levels"] == {"billing": 4}
    await api.admin("PATCH", f"/v1/admin/agents/{junior['id']}", json={"levels": {"tech": 3}}, expect=422)
    # as stored: a restart reads the same levels
    again = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model)
    listed = {a["name"]: a["levels"] for a in (await again.admin("GET", "/v1/admin/agents"))["agents"]}
    assert listed == {"junior": {"billing": 4}, "senior": {"billing": 5, "general": 1}}

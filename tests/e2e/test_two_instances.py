"""Two instances on one PostgreSQL (the path past one machine): a push for
an agent connected to the other instance reaches them, and the database
keeps capacity right whichever instance assigns."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.api import ADMIN_TOKEN, Api
from tierdesk.settings import Settings
from tierdesk.web.app import create_app

BILLING = "I was charged twice for my order and want my money back"


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    from tests.conftest import _truncate_postgres

    url = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


async def _instance(aiohttp_client, pg_url: str, clock, model) -> Api:  # type: ignore[no-untyped-def]
    from tierdesk.models import LiveModel

    settings = Settings.from_env({}, database_url=pg_url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=3600.0)
    return Api(client=await aiohttp_client(create_app(settings, clock=clock, model=LiveModel.of(model))),
               clock=clock)


async def test_push_reaches_an_agent_on_the_other_instance(aiohttp_client, pg_url, clock, demo_model) -> None:
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = channel["token"]
    ann = await one.add_agent("ann", ["billing"], capacity=2)
    # The second instance starts after ann exists (it learns agents at start).
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    ws = await two.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await asyncio.sleep(0.3)  # both relays listening
    handoff = await one.send("c1", BILLING, message_id="m1")
    assert handoff["agent_id"] == ann["id"]
    pushed = await ws.receive_json(timeout=5)
    assert pushed["type"] == "assignment" and pushed["conversation"]["external_id"] == "c1"
    await ws.close()


async def test_capacity_holds_across_instances(aiohttp_client, pg_url, clock, demo_model) -> None:
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    for i in range(3):
        await one.add_agent(f"a{i}", ["billing"], capacity=2)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    one.channel_token = two.channel_token = channel["token"]

    async def send_until_stored(api: Api, i: int) -> dict:
        # Each instance decides on its own view of the agents; when the other
        # instance took the slot first, the database refuses the commit (503)
        # and the client retries, as channels do.
        for _ in range(20):
            r = await api.send(f"c{i}", BILLING, message_id=f"m{i}", expect=None)
            if isinstance(r, dict) and "action" in r:
                return r
            await asyncio.sleep(0.05)
        raise AssertionError(f"message m{i} never stored: {r}")

    results = await asyncio.gather(*(send_until_stored(one if i % 2 else two, i) for i in range(40)))
    assert all(r["action"] == "handoff" for r in results)
    from sqlalchemy import func, select

    from storage import tables as t
    from tierdesk.web import keys

    async with one.app[keys.ENGINES].read.connect() as conn:
        per_agent = (await conn.execute(select(t.handoffs.c.agent_id, func.count()).where(
            t.handoffs.c.resolved_at.is_(None), t.handoffs.c.agent_id.is_not(None))
            .group_by(t.handoffs.c.agent_id))).all()
        loads = (await conn.execute(select(t.agents.c.open_count, t.agents.c.capacity))).all()
        inbound = (await conn.execute(select(func.count()).select_from(t.messages)
                                      .where(t.messages.c.external_id.is_not(None)))).scalar_one()
    assert all(n <= 2 for _, n in per_agent), per_agent
    assert all(open_count <= capacity for open_count, capacity in loads)
    assert sum(n for _, n in per_agent) == sum(o for o, _ in loads)
    assert inbound == 40


async def test_many_pushes_at_once_are_all_relayed(aiohttp_client, pg_url, clock, demo_model) -> None:
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = channel["token"]
    ann = await one.add_agent("ann", ["billing"], capacity=50)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    ws = await two.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await asyncio.sleep(0.3)
    await asyncio.gather(*(one.send(f"c{i}", BILLING, message_id=f"m{i}") for i in range(30)))
    got = {(await ws.receive_json(timeout=5))["conversation"]["external_id"] for _ in range(30)}
    assert got == {f"c{i}" for i in range(30)}
    await ws.close()

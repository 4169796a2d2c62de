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
        # instance took the slot first, the database refuses the commit and
        # the instance decides again; refused three times in a row, it
        # answers 503 and the client retries, as channels do.
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


async def _pair_with_ann(aiohttp_client, pg_url: str, clock, model):  # type: ignore[no-untyped-def]
    """Instance one with a channel and ann (billing, one slot), then
    instance two, which learns of her at start."""
    one = await _instance(aiohttp_client, pg_url, clock, model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = channel["token"]
    ann = await one.add_agent("ann", ["billing"], capacity=1)
    two = await _instance(aiohttp_client, pg_url, clock, model)
    two.agents = one.agents
    return one, two, ann


async def _retried(call):  # type: ignore[no-untyped-def]
    """A decision on a copy another instance had just changed is refused and
    decided again; refused three times in a row, it is answered 503 and
    retried, as channels and agent apps do."""
    for _ in range(50):
        r = await call()
        if not (isinstance(r, dict) and r.get("error", {}).get("code") == "unavailable"):
            return r
        await asyncio.sleep(0.02)
    raise AssertionError(f"still refused: {r}")


async def _eventually(check, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    """Poll ``check`` (an async callable) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.02)


async def test_an_agent_created_on_one_instance_is_routed_to_by_the_other(aiohttp_client, pg_url, clock,
                                                                          demo_model) -> None:
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = two.channel_token = channel["token"]
    ann = await one.add_agent("ann", ["billing"], capacity=2)

    async def two_knows_ann() -> bool:
        return any(a["id"] == ann["id"] for a in (await two.admin("GET", "/v1/admin/agents"))["agents"])

    assert await _eventually(two_knows_ann)
    # No refused commit, no retry: the first answer is the assignment.
    handoff = await two.send("c1", BILLING, message_id="m1")
    assert handoff["agent_id"] == ann["id"]


async def test_a_handoff_waiting_on_one_instance_is_routed_by_the_other(aiohttp_client, pg_url, clock,
                                                                        demo_model) -> None:
    one, two, ann = await _pair_with_ann(aiohttp_client, pg_url, clock, demo_model)
    ws = await two.client.ws_connect("/v1/agents/ws", headers={"Authorization": f"Bearer {ann['token']}"})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"

    first = await one.send("c1", BILLING, message_id="m1")
    second = await one.send("c2", BILLING, message_id="m2")
    assert first["agent_id"] == ann["id"] and second["queue_position"] == 1
    assert (await ws.receive_json(timeout=5))["conversation"]["external_id"] == "c1"

    async def two_holds_the_queue() -> list:
        return (await two.admin("GET", "/v1/queue"))["waiting"]

    waiting = await _eventually(two_holds_the_queue)
    assert len(waiting) == 1
    # Ann, connected to the other instance, sees there what instance one
    # gave her, and ends it there: her freed slot goes to the handoff that
    # instance one queued.
    mine = (await two.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert [c["external_id"] for c in mine] == ["c1"]
    await two.as_agent("ann", "POST", f"/v1/conversations/{mine[0]['id']}/resolve")
    pushed = [await ws.receive_json(timeout=5) for _ in range(2)]
    assert {p["type"] for p in pushed} == {"conversation_ended", "assignment"}
    [assigned] = [p["conversation"] for p in pushed if p["type"] == "assignment"]
    assert (assigned["external_id"], assigned["id"]) == ("c2", waiting[0]["conversation_id"])

    async def one_sees_it_assigned() -> bool:
        return (await one.admin("GET", "/v1/queue"))["waiting"] == []

    assert await _eventually(one_sees_it_assigned)
    # The next message of c2, on instance one, is forwarded to ann.
    assert (await one.send("c2", "are you there?", message_id="m3"))["action"] == "forwarded"
    await ws.close()


async def test_routing_stays_right_when_both_instances_route(aiohttp_client, pg_url, clock, demo_model) -> None:
    """Thirty handoffs arrive on either instance for three agents of two
    slots each; the agents end them through either instance. No slot stays
    free while a handoff waits, no agent ever holds more than capacity, and
    every handoff is served exactly once."""
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = two.channel_token = channel["token"]
    agents = [await one.add_agent(f"a{i}", ["billing"], capacity=2) for i in range(3)]
    two.agents = one.agents
    both = (one, two)

    async def two_knows_them() -> bool:
        return len((await two.admin("GET", "/v1/admin/agents"))["agents"]) == 3

    assert await _eventually(two_knows_them)
    await asyncio.gather(*(_retried(lambda i=i: both[i % 2].send(f"c{i}", BILLING, message_id=f"m{i}", expect=None))
                           for i in range(30)))

    from sqlalchemy import func, select

    from storage import tables as t
    from tierdesk.web import keys

    async def db(q):  # type: ignore[no-untyped-def]
        async with one.app[keys.ENGINES].read.connect() as conn:
            return (await conn.execute(q)).all()

    h = t.handoffs
    open_now = h.c.resolved_at.is_(None)

    async def slots_filled() -> bool:
        rows = await db(select(h.c.agent_id.is_(None), func.count()).where(open_now).group_by(h.c.agent_id.is_(None)))
        return dict(rows) == {False: 6, True: 24}

    assert await _eventually(slots_filled), await db(select(h.c.agent_id, func.count()).where(open_now)
                                                     .group_by(h.c.agent_id))
    async def check_capacity() -> None:
        # A consistent snapshot: nobody holds more than their two slots.
        per_agent = await db(select(h.c.agent_id, func.count()).where(open_now, h.c.agent_id.is_not(None))
                             .group_by(h.c.agent_id))
        assert all(n <= 2 for _, n in per_agent), per_agent

    async def full() -> bool:
        return (await db(select(func.count()).select_from(h).where(open_now, h.c.agent_id.is_not(None))))[0][0] == 6

    resolved = 0
    while resolved < 30:
        for n, agent in enumerate(agents):
            api = both[(resolved + n) % 2]
            mine = (await api.as_agent(agent["name"], "GET", "/v1/agents/me/conversations"))["conversations"]
            for c in mine[:1]:
                r = await _retried(lambda c=c, api=api, agent=agent: api.as_agent(
                    agent["name"], "POST", f"/v1/conversations/{c['id']}/resolve", expect=None))
                # Forbidden: this instance's copy was a moment behind (already resolved).
                assert r == {"ok": True} or r["error"]["code"] == "not_your_conversation", r
                resolved += r == {"ok": True}
            await check_capacity()
        waiting = (await db(select(func.count()).select_from(h).where(open_now, h.c.agent_id.is_(None))))[0][0]
        if waiting:
            # Never a free slot while someone waits (given the relay a moment).
            assert await _eventually(full, timeout=3.0)

    # Every handoff served once, by one agent; loads back to zero.
    rows = await db(select(h.c.agent_id, h.c.resolved_at).select_from(h))
    assert len(rows) == 30 and all(agent_id is not None and at is not None for agent_id, at in rows)
    assert [r[0] for r in await db(select(t.agents.c.open_count))] == [0, 0, 0]
    assigned = await db(select(func.count()).select_from(t.events).where(t.events.c.kind == "assigned"))
    assert assigned[0][0] == 30


async def test_a_conversation_written_to_on_both_instances_loses_nothing(aiohttp_client, pg_url, clock,
                                                                        demo_model) -> None:
    """The customer writes through one instance while the agent replies and
    then ends the conversation through the other: every message is stored
    once, and the conversation ends resolved with the agent's
    slot free, whichever instance's copy was behind."""
    one, two, ann = await _pair_with_ann(aiohttp_client, pg_url, clock, demo_model)
    assert (await one.send("c1", BILLING, message_id="m0"))["agent_id"] == ann["id"]

    async def two_has_it() -> list:
        return (await two.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]

    [conv] = await _eventually(two_has_it)

    async def customer() -> None:
        for i in range(1, 11):
            r = await _retried(lambda i=i: one.send("c1", f"message {i}", message_id=f"m{i}", expect=None))
            assert r["action"] == "forwarded", r

    async def agent() -> None:
        for i in range(10):
            r = await _retried(lambda i=i: two.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies",
                                                      json={"text": f"reply {i}"}, expect=None))
            assert r["sender"] == "agent", r

    await asyncio.gather(customer(), agent())
    r = await _retried(lambda: two.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/resolve", expect=None))
    assert r == {"ok": True}
    history = await one.admin("GET", f"/v1/conversations/{conv['id']}")
    texts = [m["text"] for m in history["messages"]]
    assert sorted(t for t in texts if t.startswith("message")) == sorted(f"message {i}" for i in range(1, 11))
    assert sorted(t for t in texts if t.startswith("reply")) == sorted(f"reply {i}" for i in range(10))
    assert len(texts) == len(set(texts)) == 21

    async def resolved_on_one() -> bool:
        # Instance one learns of the end from the relay, a moment after.
        return (await one.admin("GET", f"/v1/conversations/{conv['id']}"))["conversation"]["status"] == "resolved"

    assert await _eventually(resolved_on_one)

    async def slot_free_everywhere() -> bool:
        loads = [a["open_conversations"] for api in (one, two)
                 for a in (await api.admin("GET", "/v1/admin/agents"))["agents"]]
        return loads == [0, 0]

    assert await _eventually(slot_free_everywhere), [
        (await api.admin("GET", "/v1/admin/agents"))["agents"] for api in (one, two)]


async def test_each_reply_is_posted_once_though_both_instances_deliver(aiohttp_client, aiohttp_server, pg_url,
                                                                       clock, demo_model) -> None:
    """Both instances run a delivery worker over the one outbox; each claims
    what it sends, so a healthy receiver gets every reply exactly once."""
    from aiohttp import web

    posts: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        posts.append(request.headers["Idempotency-Key"])
        await asyncio.sleep(0.01)  # a receiver that takes a moment: the other worker polls meanwhile
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    server = await aiohttp_server(receiver)
    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels",
                              json={"name": "web", "webhook_url": str(server.make_url("/hook"))}, expect=201)
    await one.add_agent("ann", ["billing"], capacity=40)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    one.channel_token = two.channel_token = channel["token"]
    for i in range(20):
        await one.send(f"c{i}", BILLING, message_id=f"m{i}")
    convs = await one.as_agent("ann", "GET", "/v1/agents/me/conversations")
    replies = []
    for n in range(3):
        for conv in convs["conversations"]:
            api = one if n % 2 else two
            r = await api.call("POST", f"/v1/conversations/{conv['id']}/replies", one.agents["ann"]["token"],
                               json={"text": f"reply {n}"}, expect=201)
            replies.append(r["id"])
    from tierdesk.web import keys

    for _ in range(500):
        if len(set(posts)) == len(replies):
            break
        for api in (one, two):
            api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # time for a second POST of any of them, if one were coming
    assert sorted(posts) == sorted(replies)


async def test_a_conversation_started_on_one_instance_is_found_by_the_other_which_asks_nothing_of_new_ones(
        aiohttp_client, pg_url, clock, demo_model) -> None:
    from tierdesk.web import keys

    one = await _instance(aiohttp_client, pg_url, clock, demo_model)
    two = await _instance(aiohttp_client, pg_url, clock, demo_model)
    channel = await one.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
    one.channel_token = two.channel_token = channel["token"]
    looked_up = two.app[keys.STORE]._conversation_keys
    desk = two.app[keys.DESK]

    # The bot tier answers it: instance two keeps nothing of it in memory.
    assert (await one.send("c1", "how do I reset my password", message_id="m1"))["action"] == "answer"

    async def two_heard_of_it() -> bool:
        return not looked_up.surely_absent((channel["id"], "c1"))

    assert await _eventually(two_heard_of_it)
    # Its next message through the other instance goes on with it: no
    # second conversation started and refused, no decision made again.
    asked = looked_up.queries
    assert (await two.send("c1", "do you ship internationally", message_id="m2"))["action"] == "answer"
    assert desk.decided_again == 0 and looked_up.queries == asked + 1
    from sqlalchemy import func, select

    from storage import tables as t

    async with two.app[keys.ENGINES].read.connect() as conn:
        stored = (await conn.execute(select(func.count()).select_from(t.conversations))).scalar_one()
    assert stored == 1
    # A new conversation there costs no query at all (a 1 % false positive aside).
    for i in range(10):
        await two.send(f"new{i}", BILLING, message_id=f"n{i}")
    assert looked_up.queries - asked - 1 <= 1

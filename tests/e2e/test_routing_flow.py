"""Routing through the HTTP API, on SQLite and PostgreSQL, as users see it."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from storage import tables as t
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


async def _db_rows(api, query):  # type: ignore[no-untyped-def]
    async with api.app[keys.ENGINES].read.connect() as conn:
        return (await conn.execute(query)).all()


async def test_least_loaded_skilled_agent_wins_ties_go_to_longest_idle(app_client) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["billing"], capacity=4)
    api.clock.advance(10)
    ben = await api.add_agent("ben", ["billing"], capacity=2)
    await api.add_agent("tess", ["tech"], capacity=10)
    api.clock.advance(10)
    got = []
    for i in range(4):
        r = await api.send(f"c{i}", BILLING)
        assert r["action"] == "handoff" and r["skill"] == "billing"
        got.append(r["agent_id"])
        api.clock.advance(1)
    # 0/4 vs 0/2: tie, ann idle longer → ann. Then 1/4 < 0/2? no: ben 0 → ben.
    # Then ann 1/4=.25 < ben 1/2=.5 → ann; then ann 2/4=.5 = ben .5, ben idle longer → ben.
    assert got == [ann["id"], ben["id"], ann["id"], ben["id"]]


async def test_queue_when_full_then_assign_when_a_slot_frees(app_client) -> None:
    api = app_client
    solo = await api.add_agent("solo", ["billing"], capacity=1)
    first = await api.send("c1", BILLING)
    assert first["agent_id"] == solo["id"]
    api.clock.advance(5)
    second = await api.send("c2", BILLING)
    assert second == {"action": "handoff", "reason": "needs_human", "skill": "billing", "agent_id": None,
                      "queue_position": 1}
    queue = await api.admin("GET", "/v1/queue")
    assert [w["position"] for w in queue["waiting"]] == [1]
    mine = await api.as_agent("solo", "GET", "/v1/agents/me/conversations")
    [conv1] = mine["conversations"]
    api.clock.advance(5)
    await api.as_agent("solo", "POST", f"/v1/conversations/{conv1['id']}/resolve")
    mine = await api.as_agent("solo", "GET", "/v1/agents/me/conversations")
    assert [c["external_id"] for c in mine["conversations"]] == ["c2"]
    assert mine["conversations"][0]["handoff"]["queue_position"] is None
    assert (await api.admin("GET", "/v1/queue"))["waiting"] == []
    # The customer's next message goes straight to the agent now.
    nxt = await api.send("c2", "are you there?")
    assert nxt == {"action": "forwarded", "agent_id": solo["id"]}


async def test_vip_waits_ahead_of_regular(app_client) -> None:
    api = app_client
    await api.add_agent("solo", ["billing"], capacity=1)
    await api.send("busy", BILLING)
    api.clock.advance(1)
    regular = await api.send("regular", BILLING)
    api.clock.advance(1)
    vip = await api.send("vip", BILLING, vip=True)
    # Each answer gives the position at that moment; the VIP then went ahead.
    assert (regular["queue_position"], vip["queue_position"]) == (1, 1)
    waiting = (await api.admin("GET", "/v1/queue"))["waiting"]
    assert [(w["vip"], w["position"]) for w in waiting] == [(True, 1), (False, 2)]
    [busy] = (await api.as_agent("solo", "GET", "/v1/agents/me/conversations"))["conversations"]
    await api.as_agent("solo", "POST", f"/v1/conversations/{busy['id']}/resolve")
    [now_open] = (await api.as_agent("solo", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert now_open["external_id"] == "vip"
    assert now_open["customer"]["vip"] is True


async def test_the_queue_lists_its_head_and_counts_the_rest(app_client) -> None:
    api = app_client
    await api.add_agent("solo", ["billing"], capacity=1)
    for name in ("busy", "w1", "w2", "w3"):
        await api.send(name, BILLING)
        api.clock.advance(1)
    head = await api.admin("GET", "/v1/queue?limit=2")
    assert head["total"] == 3
    assert [w["position"] for w in head["waiting"]] == [1, 2]
    everything = await api.admin("GET", "/v1/queue")
    assert everything["total"] == 3
    assert everything["waiting"][:2] == head["waiting"]
    assert [w["position"] for w in everything["waiting"]] == [1, 2, 3]
    for bad in ("limit=0", "limit=5001", "limit=two", "page=2"):
        error = await api.admin("GET", f"/v1/queue?{bad}", expect=422)
        assert error["error"]["code"] == "validation_failed", bad


async def test_agent_coming_online_takes_the_oldest_waiting(app_client) -> None:
    api = app_client
    away = await api.add_agent("late", ["billing"], capacity=2, status="offline")
    for name in ("a", "b", "c"):
        await api.send(name, BILLING)
        api.clock.advance(1)
    await api.as_agent("late", "PUT", "/v1/agents/me/status", json={"status": "online"})
    mine = (await api.as_agent("late", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert sorted(c["external_id"] for c in mine) == ["a", "b"]
    waiting = (await api.admin("GET", "/v1/queue"))["waiting"]
    assert len(waiting) == 1 and waiting[0]["position"] == 1
    me = await api.as_agent("late", "GET", "/v1/agents/me")
    assert me == {**me, "id": away["id"], "open_conversations": 2, "status": "online"}


async def test_two_hundred_concurrent_handoffs_never_exceed_capacity(app_client) -> None:
    api = app_client
    for i in range(5):
        await api.add_agent(f"a{i}", ["billing"], capacity=3)
    results = await asyncio.gather(*(api.send(f"conc-{i}", BILLING, message_id=f"m-{i}") for i in range(200)))
    assigned = [r for r in results if r["agent_id"] is not None]
    queued = [r for r in results if r["agent_id"] is None]
    assert len(assigned) == 15 and len(queued) == 185
    assert sorted(r["queue_position"] for r in queued) == list(range(1, 186))
    # What the database holds, independent of the service's memory:
    per_agent = await _db_rows(api, select(t.handoffs.c.agent_id, func.count()).where(
        t.handoffs.c.resolved_at.is_(None), t.handoffs.c.agent_id.is_not(None)).group_by(t.handoffs.c.agent_id))
    assert sorted(n for _, n in per_agent) == [3, 3, 3, 3, 3]
    loads = await _db_rows(api, select(t.agents.c.open_count, t.agents.c.capacity))
    assert all(open_count == cap == 3 for open_count, cap in loads)
    open_per_conv = await _db_rows(api, select(func.count()).select_from(t.handoffs).where(
        t.handoffs.c.resolved_at.is_(None)).group_by(t.handoffs.c.conversation_id).having(func.count() > 1))
    assert open_per_conv == []
    assert await api.app[keys.STORE].count("messages") == 200
    assert await api.app[keys.STORE].count("handoffs") == 200


async def test_retry_returns_the_first_answer_and_stores_nothing_twice(app_client) -> None:
    api = app_client
    await api.add_agent("ann", ["billing"], capacity=1)
    first = await api.send("c1", "how do I reset my password", message_id="same")
    counts = {name: await api.app[keys.STORE].count(name) for name in ("messages", "events", "conversations")}
    again = await api.send("c1", "how do I reset my password", message_id="same")
    assert again == first
    # Concurrent retries of a new message: one processing, one answer.
    a, b, c = await asyncio.gather(*(api.send("c2", BILLING, message_id="dup") for _ in range(3)))
    assert a == b == c and a["action"] == "handoff"
    assert await api.app[keys.STORE].count("handoffs") == 1
    assert await api.app[keys.STORE].count("messages") == counts["messages"] + 1
    # Same message id with different text is still the same message: first answer wins.
    changed = await api.send("c1", "something else entirely", message_id="same")
    assert changed == first


async def test_retry_after_restart_gets_the_stored_answer(aiohttp_client, db_url, clock, demo_model) -> None:
    from tests.support.api import Api

    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model)
    first = await api.send("c1", "how do I reset my password", message_id="m1")
    token = api.channel_token
    await api.client.close()
    # A new process on the same database: nothing of the first is in memory.
    api2 = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model)
    api2.channel_token = token
    again = await api2.send("c1", "how do I reset my password", message_id="m1")
    assert again == first
    assert await api2.app[keys.STORE].count("messages") == 2  # the question and the bot's answer, once


async def test_bot_hands_off_after_two_answers_without_resolution(app_client) -> None:
    api = app_client
    await api.add_agent("gen", ["general"], capacity=5)
    assert (await api.send("c", "how do I reset my password", message_id="1"))["action"] == "answer"
    assert (await api.send("c", "what are your opening hours", message_id="2"))["action"] == "answer"
    third = await api.send("c", "how do I reset my password", message_id="3")
    assert third["action"] == "handoff" and third["reason"] == "repeated_miss"


async def test_customer_asking_for_a_person_is_handed_off(app_client) -> None:
    api = app_client
    r = await api.send("c", "I want to talk to a human")
    assert r["action"] == "handoff" and r["reason"] == "customer_asked" and r["skill"] == "general"
    r = await api.send("z", "转人工")
    assert r["reason"] == "customer_asked"


async def test_transfer_to_another_skill_and_history(app_client) -> None:
    api = app_client
    await api.add_agent("ann", ["billing"], capacity=2)
    tess = await api.add_agent("tess", ["tech"], capacity=2)
    await api.send("c", "how do I reset my password")
    await api.send("c", BILLING)
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "Looking into it"},
                       expect=201)
    moved = await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/transfer", json={"skill": "tech"})
    assert moved["handoff"]["agent_id"] == tess["id"] and moved["handoff"]["skill"] == "tech"
    assert (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"] == []
    history = await api.as_agent("tess", "GET", f"/v1/conversations/{conv['id']}")
    senders = [(m["sender"], m["text"][:18]) for m in history["messages"]]
    assert senders == [
        ("customer", "how do I reset my "), ("bot", "To reset your pass"),
        ("customer", BILLING[:18]), ("agent", "Looking into it"),
    ]
    # ann no longer holds it.
    err = await api.as_agent("ann", "GET", f"/v1/conversations/{conv['id']}", expect=403)
    assert err["error"]["code"] == "not_your_conversation"

"""Conversation weights and queue limits through the HTTP API, on both
databases: a weight-2 VIP conversation uses 2 of an agent's capacity; over a
skill's queue limit the customer is told the expected wait, leaves a message
(the webhook's next message), and the message reaches an agent once the
customers waiting live have been taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from storage import tables as t
from tests.e2e.test_webhook_notices import receiver, until
from tests.support.api import Api
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


async def _start(aiohttp_client: Any, db_url: str, clock: Any, model: Any, tmp_path: Path, rules: str) -> Api:
    path = tmp_path / "routing.yaml"
    path.write_text(rules)
    return await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=model, routing_rules=path,
                           timekeeper_interval_seconds=3600.0)


async def _stored_load(api: Api, agent_id: str) -> int:
    async with api.app[keys.ENGINES].read.connect() as conn:
        return (await conn.execute(select(t.agents.c.open_count).where(t.agents.c.id == agent_id))).scalar_one()


async def _resolve_the_oldest(api: Api, agent: str) -> None:
    convs = (await api.as_agent(agent, "GET", "/v1/agents/me/conversations"))["conversations"]
    oldest = min(convs, key=lambda c: c["handoff"]["assigned_at"])
    await api.as_agent(agent, "POST", f"/v1/conversations/{oldest['id']}/resolve")


async def test_a_weight_2_vip_conversation_uses_2_of_the_capacity(aiohttp_client, db_url, clock, demo_model,
                                                                  tmp_path) -> None:
    api = await _start(aiohttp_client, db_url, clock, demo_model, tmp_path, "vip_weight: 2\n")
    ann = await api.add_agent("ann", ["billing"], capacity=3)
    first = await api.send("v1", BILLING, message_id="m1", vip=True)
    assert first["agent_id"] == ann["id"]
    [me] = (await api.admin("GET", "/v1/admin/agents"))["agents"]
    assert (me["load"], me["open_conversations"], me["capacity"]) == (2, 1, 3)
    assert await _stored_load(api, ann["id"]) == 2
    [held] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert held["handoff"]["weight"] == 2
    # 2 + 2 > 3: a second VIP waits; the free slot is kept for it.
    assert (await api.send("v2", BILLING, message_id="m2", vip=True))["queue_position"] == 1
    assert (await api.send("r1", BILLING, message_id="m3"))["queue_position"] == 2
    live = await api.admin("GET", "/v1/live")
    assert [(a["load"], a["capacity"], a["conversations"]) for a in live["agents"]] == [(2, 3, 1)]
    api.clock.advance(60)
    await _resolve_the_oldest(api, "ann")
    assert (await api.send("v2", "hello?", message_id="m4"))["action"] == "forwarded"
    assert (await api.send("r1", "hello?", message_id="m5"))["action"] == "forwarded"
    [me] = (await api.admin("GET", "/v1/admin/agents"))["agents"]
    assert (me["load"], me["open_conversations"]) == (3, 2)
    assert await _stored_load(api, ann["id"]) == 3


async def test_over_the_queue_limit_a_message_is_left_and_reaches_an_agent(aiohttp_client, aiohttp_server, db_url,
                                                                           clock, demo_model, tmp_path) -> None:
    api = await _start(aiohttp_client, db_url, clock, demo_model, tmp_path,
                       "skills:\n  billing:\n    queue_limit: 1\n")
    url, received = await receiver(aiohttp_server)
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "app", "webhook_url": url,
                                                                   "notices": True}, expect=201)
    api.channel_token = channel["token"]
    ann = await api.add_agent("ann", ["billing"], capacity=1)
    # Recent throughput: ann takes three customers from the queue in 600 s.
    assert (await api.send("c0", BILLING, message_id="m0"))["agent_id"] == ann["id"]
    for i in range(1, 4):
        assert (await api.send(f"c{i}", BILLING, message_id=f"m{i}"))["queue_position"] == 1
        api.clock.advance(200)
        await _resolve_the_oldest(api, "ann")
    assert (await api.send("c4", BILLING, message_id="m4"))["queue_position"] == 1
    api.clock.advance(20)  # past the estimator's 10 s cache: the third taking counts

    # The queue is at its limit: told the wait (second in line, three taken in
    # the 1800 s window, one per 600 s: 1200 s) and offered to leave a message.
    full = await api.send("c5", BILLING, message_id="m5")
    assert full == {"action": "queue_full", "reason": "needs_human", "skill": "billing", "queue_length": 1,
                    "queue_limit": 1, "expected_wait_seconds": 1200.0,
                    "basis": {"taken_from_queue": 3, "window_seconds": 1800.0}}
    notice = await until(lambda: [r for r in received if r["type"] == "queue_full"], "the queue_full notice")
    assert {k: notice[0][k] for k in ("conversation_id", "skill", "queue_length", "expected_wait_seconds",
                                      "leave_message")} == {"conversation_id": "c5", "skill": "billing",
                                                            "queue_length": 1, "expected_wait_seconds": 1200.0,
                                                            "leave_message": True}
    # The same message again gets the same answer.
    assert (await api.send("c5", BILLING, message_id="m5"))["action"] == "queue_full"

    # The customer's next message is the message left.
    left = await api.send("c5", "Please call me back on 555-0100 about the double charge", message_id="m6")
    assert (left["action"], left["reason"], left["queue_position"]) == ("handoff", "left_message", 2)
    live = await api.admin("GET", "/v1/live")
    [billing] = [s for s in live["skills"] if s["skill"] == "billing"]
    assert (billing["waiting"], billing["left_messages"], billing["queue_limit"]) == (1, 1, 1)
    await api.call("POST", "/v1/conversations/c5/close", api.channel_token)  # the customer has gone: kept

    # The customer waiting live goes first, then the message left.
    api.clock.advance(100)
    await _resolve_the_oldest(api, "ann")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert conv["external_id"] == "c4"
    api.clock.advance(100)
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/resolve")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert (conv["external_id"], conv["handoff"]["reason"]) == ("c5", "left_message")
    history = await api.as_agent("ann", "GET", f"/v1/conversations/{conv['id']}")
    assert history["messages"][-1]["text"].startswith("Please call me back")
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "Calling now."},
                       expect=201)
    reply = await until(lambda: [r for r in received if r["type"] == "agent_message"
                                 and r["conversation_id"] == "c5"], "the reply to the message left")
    assert reply[0]["text"] == "Calling now."

    async with api.app[keys.ENGINES].read.connect() as conn:
        kinds = (await conn.execute(select(t.events.c.kind).join(
            t.conversations, t.conversations.c.id == t.events.c.conversation_id)
            .where(t.conversations.c.external_id == "c5").order_by(t.events.c.seq))).scalars().all()
    assert [k for k in kinds if k in ("queue_full", "message_left", "resolved")] == ["queue_full", "message_left"]
    report = await api.admin("GET", "/v1/metrics", params={"from": "2026-01-01T00:00:00Z",
                                                           "to": "2026-01-01T02:00:00Z"})
    human = report["groups"][0]["human"]
    assert human["handoff_reasons"] == {"left_message": 1, "needs_human": 5}
    assert human["abandonment"]["numerator"] == 0


async def test_the_widget_offers_to_leave_a_message_and_shows_it_left(aiohttp_client, db_url, clock, demo_model,
                                                                      tmp_path) -> None:
    from tests.e2e.test_widget_api import HUMAN, new_customer, widget_channel

    # A limit of 0: a customer nobody can take at once is offered a message.
    api = await _start(aiohttp_client, db_url, clock, demo_model, tmp_path,
                       "skills:\n  general:\n    queue_limit: 0\n")
    ch = await widget_channel(api)
    for lang, header in (("en", "en"), ("zh", "zh-CN")):
        text = (await api.call("GET", f"/v1/widget/channels/{ch['id']}", None,
                               headers={"Accept-Language": header}))["messages"]
        assert {"widget.queue_full", "widget.leave_message", "widget.leave_message_hint",
                "widget.message_left"} <= set(text), lang
    dana = await new_customer(api, ch["id"], "Dana")
    said = await dana.say(HUMAN, "d-1")
    assert (said["reply"]["action"], said["reply"]["queue_length"], said["reply"]["expected_wait_seconds"]) == (
        "queue_full", 0, None)
    state = said["conversation"]
    assert (state["status"], state["queue_full"], state["queue_position"], state["left_message"]) == (
        "bot", True, 1, False)
    left = await dana.say("Please email me the invoice again", "d-2")
    assert (left["reply"]["action"], left["reply"]["reason"]) == ("handoff", "left_message")
    assert (left["conversation"]["status"], left["conversation"]["queue_full"],
            left["conversation"]["left_message"]) == ("queued", False, True)
    await dana.call("POST", "/v1/widget/close")  # gone: the message stays
    ann = await api.add_agent("ann", ["general"], capacity=1)
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    assert conv["handoff"]["reason"] == "left_message" and conv["handoff"]["agent_id"] == ann["id"]

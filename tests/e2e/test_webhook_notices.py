"""The webhook channel behind the channel port: agent replies as before, and
with ``notices`` on, bot answers, "connecting you to a person" with the queue
position and an honest expected wait, and the rating request after a person
resolved the conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from tests.support.api import Api

FAQ = "how do I reset my password"
BILLING = "I was charged twice for my order and want my money back"


async def receiver(aiohttp_server: Any) -> tuple[str, list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append({**await request.json(), "_key": request.headers["Idempotency-Key"]})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook")), received


async def until(condition: Any, what: str) -> Any:
    for _ in range(600):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_channel_with_notices_gets_every_outbound_kind(app_client: Api, aiohttp_server: Any) -> None:
    api = app_client
    url, received = await receiver(aiohttp_server)
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "app", "webhook_url": url,
                                                                   "notices": True}, expect=201)
    assert (channel["kind"], channel["notices"]) == ("webhook", True)
    api.channel_token = channel["token"]
    ann = await api.add_agent("ann", ["billing"], capacity=1)

    answer = await api.send("faq-1", FAQ, message_id="m1")
    assert answer["action"] == "answer"
    bot = await until(lambda: [r for r in received if r["type"] == "bot_answer"], "the bot answer")
    assert bot[0]["text"] == answer["text"] and bot[0]["in_reply_to"] == "m1" and bot[0]["conversation_id"] == "faq-1"

    # ann takes the first billing handoff at once; the second waits, and with
    # no handoff taken from the queue lately its wait is unknown, not invented
    assert (await api.send("order-1", BILLING, message_id="m2"))["agent_id"] == ann["id"]
    assert (await api.send("order-2", BILLING, message_id="m3"))["queue_position"] == 1
    notices = await until(lambda: [r for r in received if r["type"] == "handoff"] if len(
        [r for r in received if r["type"] == "handoff"]) == 2 else None, "two handoff notices")
    by_conv = {n["conversation_id"]: n for n in notices}
    assert by_conv["order-1"]["agent_name"] == "ann" and by_conv["order-1"]["queue_position"] is None
    assert by_conv["order-2"]["queue_position"] == 1 and by_conv["order-2"]["expected_wait_seconds"] is None
    assert by_conv["order-2"]["basis"] == {"taken_from_queue": 0, "window_seconds": 1800.0}

    # ann resolves: the customer is asked for a rating; order-2 is taken from the queue
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    api.clock.advance(30)
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/resolve")
    rating = await until(lambda: [r for r in received if r["type"] == "rating_request"], "the rating request")
    assert rating[0]["conversation_id"] == "order-1"
    # keys are stable per item: a receiver drops repeats by them
    assert len({r["_key"] for r in received}) == len(received)


async def test_the_expected_wait_comes_from_how_fast_the_queue_was_taken(app_client: Api,
                                                                         aiohttp_server: Any) -> None:
    api = app_client
    url, received = await receiver(aiohttp_server)
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "app", "webhook_url": url,
                                                                   "notices": True}, expect=201)
    api.channel_token = channel["token"]
    await api.add_agent("ann", ["billing"], capacity=1)
    # four customers queue behind ann's first; she takes three of them from
    # the queue over ten minutes
    for i in range(5):
        await api.send(f"c{i}", BILLING, message_id=f"m{i}")
    for _ in range(3):
        api.clock.advance(200)
        [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
        await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/resolve")
    # a new customer is second in line (c4 is first): 3 taken in 30 minutes,
    # one per 600 s, so about 1200 s
    assert (await api.send("c5", BILLING, message_id="m5"))["queue_position"] == 2
    notice = await until(lambda: [r for r in received if r["type"] == "handoff" and r["conversation_id"] == "c5"],
                         "c5's handoff notice")
    assert notice[0]["queue_position"] == 2 and notice[0]["expected_wait_seconds"] == 1200.0
    assert notice[0]["basis"]["taken_from_queue"] == 3


async def test_a_channel_without_notices_gets_agent_replies_only(app_client: Api, aiohttp_server: Any) -> None:
    api = app_client
    url, received = await receiver(aiohttp_server)
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "app", "webhook_url": url}, expect=201)
    assert channel["notices"] is False
    api.channel_token = channel["token"]
    await api.add_agent("ann", ["billing"], capacity=1)
    await api.send("faq-1", FAQ, message_id="m1")
    await api.send("order-1", BILLING, message_id="m2")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "On it."},
                       expect=201)
    await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/resolve")
    await until(lambda: received, "the agent reply")
    await asyncio.sleep(0.5)
    assert [r["type"] for r in received] == ["agent_message"]
    # turned on later, it applies from then on
    patched = await api.admin("PATCH", f"/v1/admin/channels/{channel['id']}", json={"notices": True})
    assert patched["notices"] is True
    await api.send("faq-2", FAQ, message_id="m3")
    await until(lambda: [r for r in received if r["type"] == "bot_answer"], "the bot answer after the change")

"""Agent replies reach the channel in order per conversation, through a
receiver outage, across retries and dead letters (docs/reliability.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy import select

from storage import tables as t
from tierdesk.delivery import backoff, least_retry_time
from tierdesk.settings import Settings
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


def test_the_default_retry_schedule_rides_out_a_15_minute_outage() -> None:
    s = Settings.from_env({})
    least = least_retry_time(s.outbox_max_attempts, s.outbox_backoff_base_seconds, s.outbox_backoff_cap_seconds)
    assert least >= 15 * 60
    # and each wait really is at least its half (equal jitter), at most the cap
    for attempt in range(1, 20):
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        waits = [backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)


class Receiver:
    """A real webhook receiver that can be down (connection-level 503s)."""

    def __init__(self) -> None:
        self.up = False
        self.got: list[dict[str, Any]] = []
        self.refused = 0

    async def hook(self, request: web.Request) -> web.Response:
        if not self.up:
            self.refused += 1
            return web.Response(status=503)
        self.got.append(await request.json())
        return web.Response(status=204)


async def _set_up(api: Any, aiohttp_server: Any, receiver: Receiver, conversations: int) -> list[dict[str, Any]]:
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    server = await aiohttp_server(app)
    channel = await api.admin("POST", "/v1/admin/channels",
                              json={"name": "app", "webhook_url": str(server.make_url("/hook"))}, expect=201)
    api.channel_token = channel["token"]
    await api.add_agent("ann", ["billing"], capacity=conversations)
    for i in range(conversations):
        await api.send(f"c{i}", BILLING, message_id=f"m{i}")
    return (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]


async def _outbox(api: Any) -> list[tuple[str, str, int]]:
    async with api.app[keys.ENGINES].read.connect() as conn:
        rows = (await conn.execute(select(t.outbox.c.conversation_id, t.outbox.c.status, t.outbox.c.attempts)
                                   .order_by(t.outbox.c.id))).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def _run_clock(api: Any, seconds: float, step: float) -> None:
    """Move the fake clock on in steps, letting the delivery worker act at each."""
    for _ in range(int(seconds / step)):
        api.clock.advance(step)
        api.app[keys.DELIVERY_WAKE]()
        await asyncio.sleep(0.02)


async def test_replies_arrive_in_order_after_a_15_minute_receiver_outage(app_client, aiohttp_server) -> None:
    api, receiver = app_client, Receiver()
    convs = await _set_up(api, aiohttp_server, receiver, conversations=12)
    # 8 replies in each of 12 conversations, interleaved, while the receiver is down.
    for n in range(8):
        for conv in convs:
            await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies",
                               json={"text": f"{conv['external_id']} reply {n}"}, expect=201)
            api.clock.advance(1)
    await _run_clock(api, 15 * 60, step=20)
    assert receiver.refused >= 12  # every conversation's first reply was tried and refused
    assert [s for _, s, _ in await _outbox(api) if s == "dead"] == []
    receiver.up = True
    for _ in range(300):
        if len(receiver.got) == 96:
            break
        await _run_clock(api, 300, step=300)
    assert len(receiver.got) == 96
    for conv in convs:
        texts = [g["text"] for g in receiver.got if g["conversation_id"] == conv["external_id"]]
        assert texts == [f"{conv['external_id']} reply {n}" for n in range(8)]


async def test_a_dead_letter_holds_back_the_later_replies_of_its_conversation(aiohttp_client, aiohttp_server,
                                                                               db_url, clock, demo_model) -> None:
    from tests.support.api import Api

    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, outbox_max_attempts=2)
    receiver = Receiver()
    convs = await _set_up(api, aiohttp_server, receiver, conversations=2)
    held, other = convs
    await api.as_agent("ann", "POST", f"/v1/conversations/{held['id']}/replies", json={"text": "one"}, expect=201)
    for _ in range(200):
        if any(s == "dead" for _, s, _ in await _outbox(api)):
            break
        await _run_clock(api, 600, step=600)
    receiver.up = True
    await api.as_agent("ann", "POST", f"/v1/conversations/{held['id']}/replies", json={"text": "two"}, expect=201)
    await api.as_agent("ann", "POST", f"/v1/conversations/{other['id']}/replies", json={"text": "other"},
                       expect=201)
    for _ in range(100):
        if receiver.got:
            break
        await _run_clock(api, 60, step=60)
    await _run_clock(api, 600, step=60)
    # The other conversation flows; this one's "two" waits behind its dead "one".
    assert [g["text"] for g in receiver.got] == ["other"]
    assert api.app[keys.DELIVERY].dead == 1
    assert await api.app[keys.OUTBOX].held() == 1
    dead = (await api.admin("GET", "/v1/admin/deliveries", params={"status": "dead"}))["deliveries"]
    assert [d["conversation_id"] for d in dead] == [held["id"]]
    assert (await api.admin("POST", "/v1/admin/deliveries/replay"))["replayed"] == 1
    for _ in range(100):
        if len(receiver.got) == 3:
            break
        await _run_clock(api, 1, step=1)
    assert [g["text"] for g in receiver.got] == ["other", "one", "two"]
    metrics = await (await api.client.get("/metrics")).text()
    assert "tierdesk_deliveries_dead_total 1" in metrics

"""GET /v1/metrics returns the exact figures of a scripted timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


def assert_same(exact: object, approx: object, path: str = "") -> None:
    if isinstance(exact, dict):
        assert isinstance(approx, dict), path
        assert set(exact) - {"source"} == set(approx) - {"source"}, path
        for k in set(exact) - {"source"}:
            assert_same(exact[k], approx[k], f"{path}.{k}")
    elif isinstance(exact, list):
        assert isinstance(approx, list) and len(exact) == len(approx), path
        for i, (a, b) in enumerate(zip(exact, approx, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(exact, float) and path.endswith(("p50", "p90")):
        assert approx == pytest.approx(exact, rel=0.01, abs=1e-6), path
    else:
        assert exact == approx, (path, exact, approx)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


async def test_worked_example_of_the_spec(app_client) -> None:
    api = app_client
    t0 = api.clock.now()
    await api.add_agent("ann", ["general"], capacity=2, status="offline")
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]

    api.clock.set(t0)
    assert (await api.send("c1", "how do I reset my password", message_id="m1"))["action"] == "answer"
    api.clock.set(t0 + 20)
    handoff = await api.send("c1", "that didn't work, I want a person", message_id="m2")
    assert handoff["reason"] == "customer_asked" and handoff["agent_id"] is None
    api.clock.set(t0 + 50)
    await api.as_agent("ann", "PUT", "/v1/agents/me/status", json={"status": "online"})
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    cid = conv["id"]
    api.clock.set(t0 + 80)
    await api.as_agent("ann", "POST", f"/v1/conversations/{cid}/replies", json={"text": "Hi, I'm Ann"}, expect=201)
    api.clock.set(t0 + 90)
    assert (await api.send("c1", "still there?", message_id="m3"))["action"] == "forwarded"
    api.clock.set(t0 + 95)
    assert (await api.send("c1", "hello?", message_id="m4"))["action"] == "forwarded"
    api.clock.set(t0 + 130)
    await api.as_agent("ann", "POST", f"/v1/conversations/{cid}/replies", json={"text": "Done: reset"}, expect=201)
    api.clock.set(t0 + 200)
    await api.as_agent("ann", "POST", f"/v1/conversations/{cid}/resolve")
    api.clock.set(t0 + 300)

    report = await api.call("GET", "/v1/metrics", supervisor,
                            params={"from": iso(t0), "to": iso(t0 + 3600), "exact": "true"})
    assert report["source"] == "replay"
    # The rollups maintained on write give the same report: counts exactly,
    # percentiles within their 1% histogram bins.
    fast = await api.call("GET", "/v1/metrics", supervisor, params={"from": iso(t0), "to": iso(t0 + 3600)})
    assert fast["source"] == "rollups"
    assert_same(report, fast)
    [group] = report["groups"]
    bot, human = group["bot"], group["human"]
    assert bot["messages"] == 1
    assert bot["response_rate_within_sla"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    # The fake clock does not move inside a request: the bot answers at once.
    assert bot["response_time"]["avg"] == 0.0
    assert bot["containment"] == {"value": 0.0, "numerator": 0, "denominator": 1}
    assert human["messages"] == 3
    assert human["response_rate_within_sla"] == {"value": 1.0, "numerator": 3, "denominator": 3}
    assert human["response_time"] == {"count": 3, "sum": 135.0, "avg": 45.0, "p50": 40.0, "p90": 56.0}
    assert human["first_response_time"]["avg"] == 60.0
    assert human["first_response_within_sla"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    assert human["queue_wait"]["avg"] == 30.0
    assert human["reply_interval"] == {"count": 2, "sum": 75.0, "avg": 37.5, "p50": 37.5, "p90": 39.5}
    assert human["resolution_time"]["avg"] == 180.0
    assert human["handoff_rate"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    assert human["handoff_reasons"] == {"customer_asked": 1}
    assert human["abandonment"]["numerator"] == 0

    by_agent = await api.call("GET", "/v1/metrics", supervisor,
                              params={"from": iso(t0), "to": iso(t0 + 3600), "group_by": "agent"})
    keyed = {tuple(g["key"].items()): g for g in by_agent["groups"]}
    ann_id = api.agents["ann"]["id"]
    assert keyed[(("agent", ann_id),)]["human"]["messages"] == 3
    assert keyed[(("agent", None),)]["bot"]["messages"] == 1


async def test_unanswered_human_message_counts_against_the_rate_once_due(app_client) -> None:
    api = app_client
    t0 = api.clock.now()
    await api.send("c", "I want to talk to a human", message_id="x")  # nobody online: queued
    api.clock.set(t0 + 30)
    inside = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 60)})
    assert inside["source"] == "replay"  # not whole hours
    assert_same(inside, await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600)})
                | {"from": inside["from"], "to": inside["to"]})
    human = inside["groups"][0]["human"]
    assert human["pending"] == 1
    assert human["response_rate_within_sla"] == {"value": None, "numerator": 0, "denominator": 0}
    api.clock.set(t0 + 61)
    overdue = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 60)})
    assert_same(overdue, await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600)})
                | {"from": overdue["from"], "to": overdue["to"]})
    human = overdue["groups"][0]["human"]
    assert human["pending"] == 0
    assert human["response_rate_within_sla"] == {"value": 0.0, "numerator": 0, "denominator": 1}


async def test_abandonment_and_satisfaction(app_client) -> None:
    api = app_client
    t0 = api.clock.now()
    await api.send("gone", "I want to talk to a human", message_id="g1")
    api.clock.set(t0 + 10)
    await api.call("POST", "/v1/conversations/gone/close", api.channel_token)
    await api.send("happy", "how do I reset my password", message_id="h1")
    await api.call("POST", "/v1/conversations/happy/feedback", api.channel_token,
                   json={"rating": 5, "resolved": True})
    api.clock.set(t0 + 100)
    report = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 60)})
    assert_same(report, await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600)})
                | {"from": report["from"], "to": report["to"]})
    g = report["groups"][0]
    assert g["human"]["abandonment"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    assert g["bot"]["satisfaction"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    assert g["bot"]["containment"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    assert g["bot"]["resolution_time"]["count"] == 1


async def test_range_may_be_given_in_epoch_seconds(app_client) -> None:
    api = app_client
    t0 = api.clock.now()
    await api.send("c", "how do I reset my password", message_id="e1")
    by_epoch = await api.admin("GET", "/v1/metrics", params={"from": f"{t0:.0f}", "to": f"{t0 + 3600:.0f}"})
    by_iso = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600)})
    assert by_epoch == by_iso and by_epoch["groups"][0]["bot"]["messages"] == 1


async def test_a_replayed_rating_counts_once_and_a_changed_one_replaces_it(app_client) -> None:
    """One rating per conversation episode: the same signed feedback sent
    three times inside the signature window is one rating; a different
    rating replaces it; the next episode is rated on its own. Replay and
    rollups agree."""
    from sqlalchemy import select

    from storage import tables as t
    from tierdesk.signing import sign
    from tierdesk.web import keys

    api = app_client
    t0 = api.clock.now() - api.clock.now() % 3600
    api.clock.set(t0 + 10)
    supervisor = (await api.admin("POST", "/v1/admin/supervisor-tokens", expect=201))["token"]
    channel = await api.admin("POST", "/v1/admin/channels", json={"name": "signed", "require_signature": True},
                              expect=201)
    api.channel_token = channel["token"]

    async def feedback(conversation: str, body: bytes) -> None:
        headers = {"Authorization": f"Bearer {channel['token']}", "Content-Type": "application/json",
                   "X-Tierdesk-Signature": sign(channel["webhook_secret"], int(api.clock.now()), body)}
        for _ in range(3):  # the very same signed request, replayed
            resp = await api.client.post(f"/v1/conversations/{conversation}/feedback", data=body, headers=headers)
            assert resp.status == 200, await resp.text()

    async def satisfaction() -> tuple[dict, dict]:
        window = {"from": iso(t0), "to": iso(t0 + 7200)}
        exact = await api.call("GET", "/v1/metrics", supervisor, params={**window, "exact": "true"})
        rolled = await api.call("GET", "/v1/metrics", supervisor, params=window)
        assert rolled["source"] == "rollups"
        assert_same(exact["groups"], rolled["groups"])
        return exact["groups"][0]["bot"]["satisfaction"], exact["groups"][0]["human"]["satisfaction"]

    async def send_signed(conversation: str, text: str, message_id: str) -> dict:
        body = (f'{{"message_id":"{message_id}","conversation_id":"{conversation}",'
                f'"customer":{{"id":"u1"}},"text":"{text}"}}').encode()
        headers = {"Authorization": f"Bearer {channel['token']}", "Content-Type": "application/json",
                   "X-Tierdesk-Signature": sign(channel["webhook_secret"], int(api.clock.now()), body)}
        resp = await api.client.post("/v1/messages", data=body, headers=headers)
        assert resp.status == 200
        return await resp.json()

    assert (await send_signed("c1", "how do I reset my password", "m1"))["action"] == "answer"
    api.clock.advance(5)
    await feedback("c1", b'{"rating": 5, "resolved": true}')
    async with api.app[keys.ENGINES].read.connect() as conn:
        kinds = (await conn.execute(select(t.events.c.kind).where(t.events.c.kind == "feedback"))).all()
    assert len(kinds) == 1
    bot, _ = await satisfaction()
    assert (bot["numerator"], bot["denominator"]) == (1, 1)
    api.clock.advance(5)
    await feedback("c1", b'{"rating": 1}')  # changed their mind: replaces the 5
    bot, _ = await satisfaction()
    assert (bot["numerator"], bot["denominator"]) == (0, 1)
    # a new episode gets a rating of its own
    api.clock.advance(60)
    assert (await send_signed("c1", "how do I reset my password", "m2"))["action"] == "answer"
    await feedback("c1", b'{"rating": 4, "resolved": true}')
    api.clock.set(t0 + 7200)
    bot, _ = await satisfaction()
    assert (bot["numerator"], bot["denominator"]) == (1, 2)

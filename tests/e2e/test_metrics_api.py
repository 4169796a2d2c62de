"""GET /v1/metrics returns the exact figures of a scripted timeline."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest


# What the two paths say about themselves: where the figures came from and
# how exact their percentiles are.
OWN = {"source", "percentile_error"}


def assert_same(exact: object, approx: object, path: str = "") -> None:
    """The rollups' report (``approx``) is the replay's: counts exactly,
    percentiles within the bound it states."""
    if isinstance(exact, dict):
        assert isinstance(approx, dict), path
        if path == "" and approx.get("source") == "rollups":
            assert exact["percentile_error"] == {"relative": 0.0, "seconds": 0.0}
            assert approx["percentile_error"] == {"relative": 0.01, "seconds": 0.0001}
        own = OWN if path == "" else set()
        assert set(exact) - own == set(approx) - own, path
        for k in set(exact) - own:
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


# The spec's sentences (/work/shared/specs/metrics.md) through the HTTP API
# on both databases: each report is asked of the replay (exact=true) and of
# the rollups, which must agree.
async def both(api, t0: float, **params: str) -> dict:
    window = {"from": iso(t0), "to": iso(t0 + 3600), **params}
    exact = await api.admin("GET", "/v1/metrics", params={**window, "exact": "true"})
    fast = await api.admin("GET", "/v1/metrics", params=window)
    assert exact["source"] == "replay" and fast["source"] == "rollups"
    assert_same(exact, fast)
    return exact


async def handed_off_and_answered(api, conversation: str, agent: str, *, reply_after: float) -> str:
    """A customer asks for a person, ``agent`` (online) takes it and replies."""
    start = api.clock.now()
    await api.send(conversation, "I want to talk to a human", message_id=f"{conversation}-1")
    convs = (await api.as_agent(agent, "GET", "/v1/agents/me/conversations"))["conversations"]
    [cid] = [c["id"] for c in convs if c["external_id"] == conversation]
    api.clock.set(start + reply_after)
    await api.as_agent(agent, "POST", f"/v1/conversations/{cid}/replies", json={"text": "Hello"}, expect=201)
    return cid


async def test_human_resolution_leaves_out_handoffs_that_merely_ended(app_client) -> None:
    """Spec: "human: handoff → resolved (a handoff whose conversation ended —
    customer left, idle timeout — is not resolved and is left out)"."""
    from tierdesk.web import keys

    api = app_client
    t0 = api.clock.now()
    await api.add_agent("ann", ["general"], capacity=5)
    cid = await handed_off_and_answered(api, "resolved", "ann", reply_after=20)
    api.clock.set(t0 + 180)
    await api.as_agent("ann", "POST", f"/v1/conversations/{cid}/resolve")
    api.clock.set(t0 + 200)
    await handed_off_and_answered(api, "left", "ann", reply_after=20)
    api.clock.set(t0 + 300)
    await api.call("POST", "/v1/conversations/left/close", api.channel_token)
    api.clock.set(t0 + 400)
    await handed_off_and_answered(api, "idle", "ann", reply_after=50)
    api.clock.set(t0 + 400 + 651)  # the reply, then over 600 s of silence
    assert await api.app[keys.DESK].close_idle(600) == 1
    api.clock.set(t0 + 3600)
    human = (await both(api, t0))["groups"][0]["human"]
    assert human["handoffs"] == 3
    assert human["resolution_time"]["count"] == 1 and human["resolution_time"]["sum"] == 180.0
    assert human["abandonment"] == {"value": 0.0, "numerator": 0, "denominator": 3}


async def test_a_rating_given_while_the_bot_held_the_conversation_counts_for_the_person_who_ended_it(
        app_client) -> None:
    """Spec: "satisfaction | … attributed to the tier that ended the
    conversation (episode): a rating that arrives before the end is
    attributed when it ends"."""
    api = app_client
    t0 = api.clock.now()
    await api.add_agent("ann", ["general"], capacity=2)
    assert (await api.send("c", "how do I reset my password", message_id="q1"))["action"] == "answer"
    api.clock.set(t0 + 10)
    await api.call("POST", "/v1/conversations/c/feedback", api.channel_token, json={"rating": 1})
    api.clock.set(t0 + 20)
    cid = await handed_off_and_answered(api, "c", "ann", reply_after=30)
    api.clock.set(t0 + 60)
    before_end = (await both(api, t0))["groups"][0]
    assert before_end["bot"]["satisfaction"]["denominator"] == 0
    assert before_end["human"]["satisfaction"]["denominator"] == 0
    await api.as_agent("ann", "POST", f"/v1/conversations/{cid}/resolve")
    api.clock.set(t0 + 120)
    ended = (await both(api, t0))["groups"][0]
    assert ended["bot"]["satisfaction"] == {"value": None, "numerator": 0, "denominator": 0}
    assert ended["human"]["satisfaction"] == {"value": 0.0, "numerator": 0, "denominator": 1}


async def test_a_first_response_of_exactly_the_sla_reads_as_exactly_the_sla(app_client) -> None:
    """Spec: "A percentile never lies outside the observed values.\""""
    api = app_client
    t0 = api.clock.now()
    await api.add_agent("ann", ["general"], capacity=2)
    await handed_off_and_answered(api, "c", "ann", reply_after=60)
    api.clock.set(t0 + 100)
    fast = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600)})
    assert fast["source"] == "rollups"
    human = fast["groups"][0]["human"]
    assert human["first_response_time"] == {"count": 1, "sum": 60.0, "avg": 60.0, "p50": 60.0, "p90": 60.0}
    assert human["first_response_within_sla"] == {"value": 1.0, "numerator": 1, "denominator": 1}
    await both(api, t0)


async def test_first_responses_still_inside_their_sla_are_reported_as_pending(app_client) -> None:
    """Spec: "share within the first-response SLA (default 60 s) over due
    handoffs (answered, or unanswered past the SLA; those still inside it
    are pending, reported as such)"."""
    api = app_client
    t0 = api.clock.now()
    await api.send("early", "I want to talk to a human", message_id="e1")  # nobody online: queued
    api.clock.set(t0 + 50)
    await api.send("late", "I want to talk to a human", message_id="l1")
    api.clock.set(t0 + 80)
    human = (await both(api, t0))["groups"][0]["human"]
    assert human["handoffs"] == 2
    assert human["first_response_within_sla"] == {"value": 0.0, "numerator": 0, "denominator": 1}
    assert human["first_response_pending"] == 1
    api.clock.set(t0 + 111)
    human = (await both(api, t0))["groups"][0]["human"]
    assert human["first_response_within_sla"]["denominator"] == 2 and human["first_response_pending"] == 0


async def test_by_agent_each_figure_goes_to_the_agent_who_did_it_under_their_name(app_client) -> None:
    """Spec: "Grouped by agent, each figure goes to the agent who did it: a
    first response to the agent who sent it, a queue wait to the agent first
    assigned, a resolution to the agent who resolved.\""""
    api = app_client
    t0 = api.clock.now()
    ann = (await api.add_agent("Ann Lee", ["general"], capacity=2, status="offline"))["id"]
    bob = (await api.add_agent("Bob Roe", ["general"], capacity=2, status="offline"))["id"]
    assert (await api.send("c", "how do I reset my password", message_id="q1"))["action"] == "answer"
    api.clock.set(t0 + 20)
    await api.send("c", "I want to talk to a human", message_id="q2")
    api.clock.set(t0 + 30)
    await api.as_agent("Ann Lee", "PUT", "/v1/agents/me/status", json={"status": "online"})  # queue wait 10 s
    [conv] = (await api.as_agent("Ann Lee", "GET", "/v1/agents/me/conversations"))["conversations"]
    api.clock.set(t0 + 50)
    await api.as_agent("Ann Lee", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "Hi"},
                       expect=201)  # first response 30 s
    await api.as_agent("Bob Roe", "PUT", "/v1/agents/me/status", json={"status": "online"})
    api.clock.set(t0 + 60)
    await api.as_agent("Ann Lee", "POST", f"/v1/conversations/{conv['id']}/transfer", json={"agent_id": bob})
    api.clock.set(t0 + 120)
    await api.as_agent("Bob Roe", "POST", f"/v1/conversations/{conv['id']}/resolve")  # resolution 100 s
    api.clock.set(t0 + 200)
    report = await api.admin("GET", "/v1/metrics", params={"from": iso(t0), "to": iso(t0 + 3600),
                                                           "group_by": "agent"})
    groups = {g["key"]["agent"]: g for g in report["groups"]}
    assert set(groups) == {None, ann, bob}
    assert groups[ann]["label"] == "Ann Lee" and groups[bob]["label"] == "Bob Roe"
    assert groups[None]["label"].startswith("no agent")
    a, b = groups[ann]["human"], groups[bob]["human"]
    assert a["first_response_time"]["sum"] == 30.0 and b["first_response_time"]["count"] == 0
    assert a["queue_wait"]["sum"] == 10.0 and b["queue_wait"]["count"] == 0
    assert b["resolution_time"]["sum"] == 100.0 and a["resolution_time"]["count"] == 0
    assert groups[None]["bot"]["messages"] == 1


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

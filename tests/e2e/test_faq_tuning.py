"""FAQ tuning through the API: versions hot-swapped under load, rollback,
live answer edits, refusals that leave the live model untouched, misses."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from classifier.artifact import ModelStore
from tests.support.api import Api
from tests.support.models import copy_store
from tierdesk.web import keys
from tierdesk.web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
KB = ROOT / "knowledge_base"
RESET = "how do I reset my password"


@pytest.fixture
async def faq_api(aiohttp_client, db_url, clock, demo_store, tmp_path):  # type: ignore[no-untyped-def]
    models = copy_store(demo_store, tmp_path / "models", versions=2)
    # The rate limiter reads the fake clock, which stands still: on a fast
    # machine the hot-swap test's traffic outran the channel's burst (429).
    return await Api.start_deployed(aiohttp_client, db_url=db_url, clock=clock, models=models,
                                    rate_limit_channel_per_second=0.0)


async def test_activate_and_rollback_under_concurrent_requests(faq_api: Api) -> None:
    api = faq_api
    assert (await api.admin("GET", "/v1/faq/models"))["live"] == "v0001"
    stop = asyncio.Event()
    results: list[int] = []

    async def traffic(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            resp = await api.client.post("/v1/messages", json={
                "message_id": f"w{worker}-{n}", "conversation_id": f"w{worker}-{n}", "customer": {"id": "u"},
                "text": RESET}, headers={"Authorization": f"Bearer {api.channel_token}"})
            results.append(resp.status)
            await resp.read()

    workers = [asyncio.create_task(traffic(i)) for i in range(8)]
    await asyncio.sleep(0.2)
    assert (await api.admin("POST", "/v1/faq/models/v0002/activate"))["live"] == "v0002"
    await asyncio.sleep(0.2)
    assert (await api.admin("POST", "/v1/faq/models/rollback"))["live"] == "v0001"
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*workers)
    assert len(results) > 50
    assert set(results) == {200}, f"some requests failed during the swaps: {set(results)}"
    versions = {v["version"]: v for v in (await api.admin("GET", "/v1/faq/models"))["versions"]}
    assert versions["v0001"]["active"] and versions["v0001"]["live"] and not versions["v0002"]["active"]


async def test_refusals_leave_the_live_model_untouched(faq_api: Api) -> None:
    api = faq_api
    err = await api.admin("POST", "/v1/faq/models/v0099/activate", expect=404)
    assert err["error"]["code"] == "model_not_found"
    models = api.app[keys.SETTINGS].models_dir
    npz = next((models / "v0002").glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10] + b"tampered!!")
    err = await api.admin("POST", "/v1/faq/models/v0002/activate", expect=422)
    assert err["error"]["code"] == "corrupt_model" and "checksum" in err["error"]["message"]
    assert api.app[keys.MODEL].version == "v0001"
    assert ModelStore(models).active_version() == "v0001"
    assert (await api.send("c", RESET))["action"] == "answer"


async def test_answer_edit_goes_live_without_retraining_and_survives_a_restart(
    faq_api: Api, aiohttp_client, clock  # type: ignore[no-untyped-def]
) -> None:
    api = faq_api
    new = "Use the 'Forgot password?' link on the sign-in page (edited)."
    view = await api.admin("PATCH", "/v1/faq/intents/reset_password", json={"answer": new})
    assert view["answer"] == new
    assert (await api.send("c1", RESET, message_id="1"))["text"] == new
    assert api.app[keys.MODEL].version == "v0001"  # same model, new answer
    err = await api.admin("PATCH", "/v1/faq/intents/refund_dispute", json={"answer": "x"}, expect=400)
    assert err["error"]["code"] == "invalid_input"
    await api.admin("PATCH", "/v1/faq/intents/nope", json={"answer": "x"}, expect=404)
    # A new process on the same database serves the edited answer.
    settings = api.app[keys.SETTINGS]
    again = Api(client=await aiohttp_client(create_app(settings, clock=clock)), clock=clock,
                channel_token=api.channel_token)
    assert (await again.send("c2", RESET, message_id="2"))["text"] == new
    # Resetting brings the knowledge base's answer back.
    reset = await again.admin("DELETE", "/v1/faq/intents/reset_password/answer")
    assert reset["answer"] != new and reset["answer"].startswith("To reset your password")


async def test_knowledge_base_reload_takes_answer_edits_and_refuses_new_examples(
    aiohttp_client, db_url, clock, demo_model, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    kb = tmp_path / "kb.yaml"
    shutil.copy(KB / "demo.yaml", kb)
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, knowledge_base=kb)
    api.app[keys.MODEL].knowledge_base = kb
    text = kb.read_text()
    marker = "To reset your password"
    kb.write_text(text.replace(marker, "RESET (from the file): to reset your password", 1))
    await api.admin("POST", "/v1/faq/reload")
    assert (await api.send("c1", RESET, message_id="1"))["text"].startswith("RESET (from the file)")
    kb.write_text(text.replace("- how do I reset my password", "- how do I reset my password\n      - brand new example", 1))
    err = await api.admin("POST", "/v1/faq/reload", expect=422)
    assert err["error"]["code"] == "incompatible_model"
    assert (await api.send("c2", RESET, message_id="2"))["text"].startswith("RESET (from the file)")


async def test_misses_are_recorded_and_clustered(app_client) -> None:
    api = app_client
    # The bot answers, then the customer asks for a person: a miss.
    await api.send("a", RESET, message_id="a1")
    await api.send("a", "that did not help, I want a human", message_id="a2")
    # A thumbs down right after an answer: a miss.
    await api.send("b", RESET, message_id="b1")
    await api.call("POST", "/v1/conversations/b/feedback", api.channel_token, json={"rating": 1})
    # Questions the bot was not sure about.
    for i, q in enumerate(["do you sponsor football teams", "can your company sponsor my football club",
                           "football team sponsorship request"]):
        r = await api.send(f"q{i}", q, message_id=f"q{i}")
        assert r["action"] == "handoff" and r["reason"] == "low_confidence", r
    report = await api.admin("GET", "/v1/faq/misses", params={"days": "1"})
    assert report["misses"] == 5
    sizes = {c["representative"]: (c["size"], c["reasons"]) for c in report["clusters"]}
    [football] = [c for c in report["clusters"] if "football" in c["representative"]]
    assert football["size"] == 3 and football["reasons"] == {"low_confidence": 3}
    [reset] = [c for c in report["clusters"] if c["representative"] == RESET]
    assert reset["size"] == 2 and reset["reasons"] == {"asked_for_person": 1, "thumbs_down": 1}
    assert reset["top_intent"] == "reset_password", sizes


async def test_shadow_evaluation_reports_changes_and_precision_on_known_outcomes(faq_api: Api) -> None:
    api = faq_api
    # Confirmed answers (rating 5) and a rejected one (thumbs down).
    for i, q in enumerate([RESET, "what are your opening hours", "how long does shipping take"]):
        r = await api.send(f"ok{i}", q, message_id=f"ok{i}")
        assert r["action"] == "answer"
        await api.call("POST", f"/v1/conversations/ok{i}/feedback", api.channel_token, json={"rating": 5})
    # Any question the demo model answers will do for the rejected one.
    r = await api.send("bad", "can I pay with paypal", message_id="bad")
    assert r["action"] == "answer"
    await api.call("POST", "/v1/conversations/bad/feedback", api.channel_token, json={"rating": 1})
    await api.send("x", "do you sponsor football teams", message_id="x")
    report = await api.admin("GET", "/v1/faq/models/v0002/shadow", params={"days": "1"})
    assert report["messages"] == 5 and report["with_known_outcome"] == 4
    live, cand = report["live"], report["candidate"]
    assert live["version"] == "v0001" and cand["version"] == "v0002"
    # The live model answers all four the same way it did: 3 right, 1 rejected.
    assert (live["correct"], live["wrong"]) == (3, 1)
    assert live["precision"] == 0.75
    assert report["changed"] == (report["handoff_to_answer"] + report["answer_to_handoff"]
                                 + report["different_answer"])
    await api.admin("GET", "/v1/faq/models/v0042/shadow", expect=404)

"""GET /metrics as Prometheus reads it: counters named and typed as
counters, idempotent re-sends not counted again, dead letters counted."""

from __future__ import annotations

import asyncio

import structlog
import structlog.testing

from prometheus_client.parser import text_string_to_metric_families


async def scrape(api) -> dict[str, tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]]:
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await resp.text()
    for line in text.splitlines():
        if line.startswith("# TYPE ") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line
    return {f.name: (f.type, {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples})
            for f in text_string_to_metric_families(text)}


async def test_a_re_sent_message_is_counted_once(app_client) -> None:
    api = app_client
    first = await api.send("c1", "how do I reset my password", message_id="same-id")
    again = await api.send("c1", "how do I reset my password", message_id="same-id")
    assert first == again and first["action"] == "answer"
    families = await scrape(api)
    kind, samples = families["tierdesk_messages"]
    assert kind == "counter"
    assert samples[("tierdesk_messages_total", (("action", "answer"),))] == 1
    # What used to be typed gauge is a counter now.
    for name in ("tierdesk_classifier_batches", "tierdesk_classifier_messages", "tierdesk_deliveries_sent",
                 "tierdesk_delivery_retries", "tierdesk_group_commit_batches", "tierdesk_group_commit_changes",
                 "tierdesk_changes_refused", "tierdesk_decisions_made_again"):
        assert families[name][0] == "counter", name
    assert families["tierdesk_queue_waiting"][0] == "gauge"


async def test_a_dead_letter_is_counted(app_client) -> None:
    api = app_client
    await api.add_agent("ann", ["general"], capacity=2)
    await api.send("c1", "I want to talk to a human", message_id="h1")
    [conv] = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    # The test channel has no webhook_url: the reply cannot be delivered.
    with structlog.testing.capture_logs() as logs:
        await api.as_agent("ann", "POST", f"/v1/conversations/{conv['id']}/replies", json={"text": "Hi"},
                           expect=201)
        for _ in range(200):
            dead = (await scrape(api))["tierdesk_deliveries_dead"]
            if dead[1][("tierdesk_deliveries_dead_total", ())] == 1:
                break
            await asyncio.sleep(0.05)
    assert dead == ("counter", {("tierdesk_deliveries_dead_total", ()): 1})
    [warning] = [e for e in logs if e["event"] == "delivery_dead_letter"]
    assert warning["log_level"] == "warning" and warning["error"] == "channel has no webhook_url"
    assert len((await api.admin("GET", "/v1/admin/deliveries"))["deliveries"]) == 1

"""TIERDESK_CONVERSATION_CACHE_SIZE bounds the conversations a server keeps
in memory: the human tier's stay whatever their number, the others leave
least recently used first and come back from the database as they were."""

from __future__ import annotations

from typing import Any

from router.ports import FakeClock
from tests.support.api import Api

FAQ = "how do I reset my password"
HUMAN = "I want to talk to a human"


async def gauge(api: Api) -> float:
    resp = await api.client.get("/metrics")
    assert resp.status == 200
    for line in (await resp.text()).splitlines():
        if line.startswith("tierdesk_conversations_in_memory "):
            return float(line.split()[1])
    raise AssertionError("no tierdesk_conversations_in_memory on /metrics")


async def test_a_small_cache_keeps_the_human_tier_and_reads_the_rest_back(
        aiohttp_client: Any, db_url: str, clock: FakeClock, demo_model: Any) -> None:
    api = await Api.start(aiohttp_client, db_url=db_url, clock=clock, model=demo_model, conversation_cache_size=2)
    # Nobody is online: three customers wait for a person.
    for c in ("wait-1", "wait-2", "wait-3"):
        assert (await api.send(c, HUMAN))["action"] == "handoff"
    assert await gauge(api) == 3  # over the size: the human tier's stay
    # The bot answers five more; only the one just used stays beside the queue.
    for i in range(5):
        clock.advance(1)
        assert (await api.send(f"faq-{i}", FAQ))["action"] == "answer"
    assert await gauge(api) == 4

    # A conversation read back from the database goes on where it was: its
    # third bot answer in a row hands it off (max_bot_answers is 2).
    clock.advance(1)
    assert (await api.send("faq-0", FAQ))["action"] == "answer"
    clock.advance(1)
    again = await api.send("faq-0", FAQ)
    assert again["action"] == "handoff", again
    assert again["queue_position"] == 4

    # The queued ones were never out of memory: an agent coming online gets the first.
    agent = await api.add_agent("Ann", ["general"], capacity=1)
    held = await api.as_agent("Ann", "GET", "/v1/agents/me/conversations")
    assert [c["external_id"] for c in held["conversations"]] == ["wait-1"], agent

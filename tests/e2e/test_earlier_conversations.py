"""The customer's earlier passages to a person, listed beside the
conversation an agent holds (GET /v1/conversations/{id}/earlier), on SQLite
and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api

HUMAN = "I want to talk to a human"


async def _held(api: Api, external_id: str) -> tuple[str, str]:
    """(agent name, conversation id) of whoever holds the conversation."""
    for name in api.agents:
        for c in (await api.as_agent(name, "GET", "/v1/agents/me/conversations"))["conversations"]:
            if c["external_id"] == external_id:
                return name, c["id"]
    raise AssertionError(f"nobody holds {external_id}")


async def _passage(api: Api, external_id: str, customer: str, *, resolve: bool) -> tuple[str, str]:
    said = await api.send(external_id, HUMAN, customer=customer)
    assert said["action"] == "handoff", said
    name, conv = await _held(api, external_id)
    if resolve:
        await api.as_agent(name, "POST", f"/v1/conversations/{conv}/replies", json={"text": "Done."}, expect=201)
        await api.as_agent(name, "POST", f"/v1/conversations/{conv}/resolve")
    api.clock.advance(60)
    return name, conv


async def test_a_returning_customer_s_earlier_handoffs_are_listed_newest_first(app_client: Api) -> None:
    api = app_client
    await api.add_agent("ann", ["general"], capacity=3)
    await api.add_agent("bob", ["general"], capacity=3)
    await _passage(api, "zoe-1", "zoe", resolve=True)
    await _passage(api, "zoe-2", "zoe", resolve=True)
    await _passage(api, "max-1", "max", resolve=True)
    holder, now = await _passage(api, "zoe-1", "zoe", resolve=False)  # zoe is back in her first conversation

    earlier: list[dict[str, Any]] = (await api.as_agent(holder, "GET", f"/v1/conversations/{now}/earlier"))["handoffs"]
    # zoe-2's handoff, then zoe-1's first; max's are not hers, the open one is the current
    assert [h["conversation_id"] == now for h in earlier] == [False, True]
    assert earlier[0]["requested_at"] > earlier[1]["requested_at"]
    assert all(h["reason"] == "customer_asked" and h["resolved_at"] and h["first_reply_at"] for h in earlier)
    assert all(h["agent_name"] in ("ann", "bob") for h in earlier)

    # supervisors and the admin may look; the agent who does not hold it may not
    assert len((await api.admin("GET", f"/v1/conversations/{now}/earlier"))["handoffs"]) == 2
    other = "bob" if holder == "ann" else "ann"
    refused = await api.as_agent(other, "GET", f"/v1/conversations/{now}/earlier", expect=403)
    assert refused["error"]["code"] == "not_your_conversation"
    await api.admin("GET", "/v1/conversations/conv_nope/earlier", expect=404)


async def test_a_first_time_customer_has_none(app_client: Api) -> None:
    api = app_client
    await api.add_agent("ann", ["general"], capacity=3)
    _, conv = await _passage(api, "new-1", "newcomer", resolve=False)
    assert (await api.as_agent("ann", "GET", f"/v1/conversations/{conv}/earlier"))["handoffs"] == []

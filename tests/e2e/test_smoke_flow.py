from __future__ import annotations


async def test_faq_answer_and_handoff_to_skilled_agent(app_client) -> None:
    api = app_client
    await api.add_agent("ann", ["billing"], capacity=2)
    await api.add_agent("bob", ["tech"], capacity=2)
    answer = await api.send("c1", "how do I reset my password")
    assert answer["action"] == "answer", answer
    assert answer["faq_id"] == "reset_password"
    handoff = await api.send("c2", "I was charged twice for my order and want my money back")
    assert handoff["action"] == "handoff", handoff
    assert handoff["skill"] == "billing"
    assert handoff["agent_id"] == api.agents["ann"]["id"]

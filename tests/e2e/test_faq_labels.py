"""Agents label handed-off questions over the API (both databases); the
labels, with customers' verdicts on bot answers, become labelled traffic
that `faq eval --traffic` scores and `faq train --traffic` learns from."""

from __future__ import annotations

from classifier.traffic import score_on_traffic, training_examples
from tests.support.api import Api
from tierdesk.web import keys

RESET = "how do I reset my password"
FOOTBALL = "do you sponsor football teams"


async def _customer_message_id(api: Api, agent: str, text: str) -> str:
    [conv] = (await api.as_agent(agent, "GET", "/v1/agents/me/conversations"))["conversations"]
    detail = await api.as_agent(agent, "GET", f"/v1/conversations/{conv['id']}")
    [message] = [m for m in detail["messages"] if m["sender"] == "customer" and m["text"] == text]
    return message["id"]


async def test_an_agent_labels_a_handed_off_question_and_it_becomes_labelled_traffic(app_client: Api) -> None:
    api = app_client
    ann = await api.add_agent("ann", ["general"], 2)
    handoff = await api.send("q1", FOOTBALL, message_id="q1")
    assert handoff["action"] == "handoff" and handoff["reason"] == "low_confidence"
    message_id = await _customer_message_id(api, "ann", FOOTBALL)

    label = await api.as_agent("ann", "PUT", f"/v1/faq/labels/{message_id}", json={"intent": None})
    assert label["intent"] is None and label["labelled_by"] == ann["id"] and label["text"] == FOOTBALL
    assert label["outcome"] == "low_confidence"
    # A later label replaces the first.
    label = await api.as_agent("ann", "PUT", f"/v1/faq/labels/{message_id}", json={"intent": "opening_hours"})
    assert label["intent"] == "opening_hours"

    # Refusals: not an FAQ intent, unknown intent, unknown message, a channel token.
    err = await api.as_agent("ann", "PUT", f"/v1/faq/labels/{message_id}", json={"intent": "refund_dispute"},
                             expect=422)
    assert err["error"]["code"] == "validation_failed" and "not an FAQ intent" in err["error"]["message"]
    await api.as_agent("ann", "PUT", f"/v1/faq/labels/{message_id}", json={"intent": "nope"}, expect=422)
    await api.as_agent("ann", "PUT", f"/v1/faq/labels/{message_id}", json={}, expect=422)
    err = await api.as_agent("ann", "PUT", "/v1/faq/labels/msg_nope", json={"intent": None}, expect=404)
    assert err["error"]["code"] == "not_found"
    await api.call("PUT", f"/v1/faq/labels/{message_id}", api.channel_token, json={"intent": None}, expect=403)

    listed = await api.admin("GET", "/v1/faq/labels", params={"days": "1"})
    assert [(x["message_id"], x["intent"]) for x in listed["labels"]] == [(message_id, "opening_hours")]
    await api.as_agent("ann", "GET", "/v1/faq/labels", expect=403)

    # Customers' verdicts: a confirmed answer and a rejected one.
    await api.send("ok", RESET, message_id="ok1")
    await api.call("POST", "/v1/conversations/ok/feedback", api.channel_token, json={"rating": 5})
    await api.send("bad", "what are your opening hours", message_id="bad1")
    await api.call("POST", "/v1/conversations/bad/feedback", api.channel_token, json={"rating": 1})

    traffic = await api.app[keys.FAQ].labelled_traffic(api.clock.now() - 86400)
    by_text = {(t.text, t.source): t for t in traffic}
    assert by_text[(FOOTBALL, "label")].intent == "opening_hours"
    assert by_text[(RESET, "confirmed")].intent == "reset_password"
    rejected = by_text[("what are your opening hours", "thumbs_down")]
    assert rejected.intent is None and rejected.not_intent == "opening_hours"
    assert len(traffic) == 3

    model = api.app[keys.MODEL].model
    report = score_on_traffic(model, traffic)
    # The live model answers RESET (right) and the opening hours question
    # with the answer the customer rejected (wrong); the football question
    # was handed off, so of the two questions known to ask an FAQ one was answered.
    assert report["judged_answers"] == 2 and report["precision"] == 0.5
    assert report["faq_questions"] == 2 and report["coverage"] == 0.5
    texts, labels, warnings = training_examples(traffic, model.kb)
    assert (texts, labels, warnings) == ([FOOTBALL], ["opening_hours"], [])

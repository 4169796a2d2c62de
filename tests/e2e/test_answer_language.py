"""Answers in the customer's language, through the HTTP API, with the demo
knowledge base trained as `make serve` trains it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from classifier.knowledge_base import load_knowledge_base
from tests.support.api import Api
from tests.support.models import copy_store

ROOT = Path(__file__).resolve().parents[2]
KB = ROOT / "knowledge_base"
DEMO = load_knowledge_base(KB / "demo.yaml")
SHIPPING_EN = DEMO.get("shipping_time").answer
SHIPPING_ZH = dict(DEMO.get("shipping_time").translations)["zh"]
ZH_QUESTION = "发货需要多长时间？"
EN_QUESTION = "How long does shipping take?"


@pytest.fixture
async def api(aiohttp_client, db_url, clock, demo_store, tmp_path):  # type: ignore[no-untyped-def]
    models = copy_store(demo_store, tmp_path / "models")
    return await Api.start_deployed(aiohttp_client, db_url=db_url, clock=clock, models=models)


async def ask(api: Api, conversation: str, text: str, locale: str | None = None, expect: int = 200) -> Any:
    body: dict[str, Any] = {"message_id": f"{conversation}-1", "conversation_id": conversation,
                            "customer": {"id": f"cust-{conversation}"}, "text": text}
    if locale is not None:
        body["locale"] = locale
    return await api.call("POST", "/v1/messages", api.channel_token, json=body, expect=expect)


async def test_a_chinese_question_gets_the_chinese_answer_and_an_english_one_the_english(api: Api) -> None:
    zh = await ask(api, "zh", ZH_QUESTION)
    assert (zh["action"], zh["faq_id"], zh["language"], zh["text"]) == ("answer", "shipping_time", "zh", SHIPPING_ZH)
    en = await ask(api, "en", EN_QUESTION)
    assert (en["action"], en["faq_id"], en["language"], en["text"]) == ("answer", "shipping_time", "en", SHIPPING_EN)
    # A repeat of the message gets the same answer, language included.
    assert await ask(api, "zh", ZH_QUESTION) == zh


async def test_the_channels_locale_overrides_the_texts_language(api: Api) -> None:
    told_zh = await ask(api, "a", EN_QUESTION, locale="zh-CN")
    assert (told_zh["language"], told_zh["text"]) == ("zh", SHIPPING_ZH)
    told_en = await ask(api, "b", ZH_QUESTION, locale="en_US")
    assert (told_en["language"], told_en["text"]) == ("en", SHIPPING_EN)
    # No answer in the locale's language: the text's language, then the default.
    told_fr = await ask(api, "c", ZH_QUESTION, locale="fr-FR")
    assert (told_fr["language"], told_fr["text"]) == ("zh", SHIPPING_ZH)
    bad = await ask(api, "d", EN_QUESTION, locale="zh CN; drop", expect=422)
    assert bad["error"]["code"] == "validation_failed"


async def test_the_widget_sends_the_browsers_language(api: Api) -> None:
    ch = await api.admin("POST", "/v1/admin/channels", json={"name": "chat", "kind": "widget"}, expect=201)
    made = await api.call("POST", f"/v1/widget/channels/{ch['id']}/sessions", None, json={}, expect=201)
    said = await api.call("POST", "/v1/widget/messages", made["session"],
                          json={"message_id": "w-1", "text": EN_QUESTION, "locale": "zh-CN"})
    assert (said["reply"]["language"], said["reply"]["text"]) == ("zh", SHIPPING_ZH)


async def test_answer_edits_are_per_language(api: Api) -> None:
    new_zh = "工作日下午 2 点前下单，当天发货（已修改）。"
    view = await api.admin("PATCH", "/v1/faq/intents/shipping_time", json={"answer": new_zh, "language": "zh"})
    assert view["answers"] == {"en": SHIPPING_EN, "zh": new_zh} and view["answer"] == SHIPPING_EN
    assert (await ask(api, "1", ZH_QUESTION))["text"] == new_zh
    assert (await ask(api, "2", EN_QUESTION))["text"] == SHIPPING_EN
    # A language the file has no answer in can be added.
    fr = "Deux à quatre jours ouvrés."
    await api.admin("PATCH", "/v1/faq/intents/shipping_time", json={"answer": fr, "language": "fr"})
    assert (await ask(api, "3", EN_QUESTION, locale="fr-CA"))["text"] == fr
    listed = await api.admin("GET", "/v1/faq/intents")
    assert listed["default_language"] == "en"
    shipping = next(i for i in listed["intents"] if i["id"] == "shipping_time")
    assert shipping["answers"] == {"en": SHIPPING_EN, "fr": fr, "zh": new_zh}
    err = await api.admin("PATCH", "/v1/faq/intents/shipping_time", json={"answer": "x", "language": "zh-CN"},
                          expect=400)
    assert err["error"]["code"] == "invalid_input" and "'zh'" in err["error"]["message"]
    # Resetting one language leaves the others' edits.
    reset = await api.admin("DELETE", "/v1/faq/intents/shipping_time/answer?language=zh")
    assert reset["answers"] == {"en": SHIPPING_EN, "fr": fr, "zh": SHIPPING_ZH}
    assert (await ask(api, "4", ZH_QUESTION))["text"] == SHIPPING_ZH
    await api.admin("DELETE", "/v1/faq/intents/shipping_time/answer?language=chinese", expect=422)
    # Without a language, every edit of the intent goes.
    reset = await api.admin("DELETE", "/v1/faq/intents/shipping_time/answer")
    assert reset["answers"] == {"en": SHIPPING_EN, "zh": SHIPPING_ZH}

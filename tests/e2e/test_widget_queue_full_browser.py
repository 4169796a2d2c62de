"""The widget when the queue is full, in a real browser (Debian's Chromium
through Playwright): the customer is told the expected wait and offered to
leave a message by a button, leaves one, is thanked, and the agent who later
comes online gets it and is read in the widget. In English and Chinese."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    browser_or_skip,
    chromium,
    new_context,
    served,
)

pytestmark = pytest.mark.browser  # make test-browser runs these alone

playwright_sync = browser_or_skip()
expect = playwright_sync.expect

ADMIN = "td_admin_widget-full-tests"
HUMAN = "I want to talk to a human"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, demo_model: Any) -> Iterator[Any]:
    where = tmp_path_factory.mktemp("widget-full")
    rules = where / "routing.yaml"
    # A limit of 0: whoever nobody can take at once is offered to leave a message.
    rules.write_text("skills:\n  general:\n    queue_limit: 0\n")
    with served(where, sqlite_template, demo_model, ADMIN, routing_rules=rules) as s:
        yield s


@pytest.fixture(scope="module")
def page_of(server: Any) -> Iterator[Any]:
    with chromium(playwright_sync) as browser:
        contexts = []

        def make(locale: str) -> Any:
            ctx = new_context(browser, server.url, locale=locale)
            contexts.append(ctx)
            return ctx.new_page()

        yield make
        for ctx in contexts:
            ctx.close()


@pytest.mark.parametrize("locale,full,button,hint,left", [
    ("en-US", "All our people are busy and the queue is full.", "Leave a message",
     "Write your message: we will reply here.", "Thank you: your message is with us"),
    ("zh-CN", "客服人员都在忙，排队人数已满。", "留言", "请写下您的留言，我们会在这里回复您。", "谢谢，我们已收到您的留言"),
])
def test_a_full_queue_offers_a_message_which_an_agent_answers(server: Any, page_of: Any, locale: str, full: str,
                                                              button: str, hint: str, left: str) -> None:
    widget = server.http("POST", "/v1/admin/channels", ADMIN, {"name": f"Acme {locale}", "kind": "widget"},
                         expect=201)
    page = page_of(locale)
    page.goto(f"/widget/demo/{widget['id']}")
    page.locator("#tierdesk-widget .launcher").click()
    expect(page.locator("#tierdesk-widget .conn")).to_have_attribute("data-state", "live")
    box = page.locator("#tierdesk-widget .input")
    box.fill(HUMAN)
    box.press("Enter")

    queue = page.locator("#tierdesk-widget .queue")
    expect(queue).to_have_attribute("data-state", "full")
    expect(queue).to_contain_text(full)
    leave = queue.get_by_role("button", name=button)
    leave.click()
    expect(box).to_have_attribute("placeholder", hint)
    expect(box).to_be_focused()
    box.fill("Please email me the invoice again")
    box.press("Enter")
    expect(queue).to_have_attribute("data-state", "left")
    expect(queue).to_contain_text(left)

    # An agent comes online: the message left is theirs, and their reply shows.
    ann = server.http("POST", "/v1/admin/agents", ADMIN, {
        "name": f"Ann {locale}", "skills": ["general"], "capacity": 1, "status": "online"}, expect=201)
    [conv] = server.http("GET", "/v1/agents/me/conversations", ann["token"])["conversations"]
    assert conv["handoff"]["reason"] == "left_message"
    history = server.http("GET", f"/v1/conversations/{conv['id']}", ann["token"])["messages"]
    assert history[-1]["text"] == "Please email me the invoice again"
    server.http("POST", f"/v1/conversations/{conv['id']}/replies", ann["token"], {"text": "Sent again."},
                expect=201)
    expect(page.locator("#tierdesk-widget .msg.agent")).to_contain_text("Sent again.")
    expect(queue).to_have_attribute("data-state", "assigned")
    server.http("POST", f"/v1/conversations/{conv['id']}/resolve", ann["token"])
    server.http("PUT", "/v1/agents/me/status", ann["token"], {"status": "offline"})  # the next customer finds nobody

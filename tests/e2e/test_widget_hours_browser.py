"""The web chat widget out of hours, in a real browser (Debian's Chromium,
headless, Playwright): a customer who asks for a person while the skill is
closed is told when it opens, in English and in Chinese, also after a
reload; once an agent takes the conversation the notice gives way."""

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

ADMIN = "td_admin_widget-hours-tests"
HUMAN = "I want to talk to a human"
# The server's clock reads 2026-01-01T09:00:00Z: 17:00 on New Year's Day in
# Shanghai, a holiday; general opens next on Friday 09:00 there (01:00 UTC).
RULES = """\
skills:
  general:
    hours:
      timezone: Asia/Shanghai
      weekly: {mon-fri: "09:00-18:00"}
      holidays: [2026-01-01]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, demo_model: Any) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("widget-hours")
    (folder / "routing.yaml").write_text(RULES)
    with served(folder, sqlite_template, demo_model, ADMIN, routing_rules=folder / "routing.yaml") as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(playwright_sync) as b:
        yield b


def ask_for_a_person(browser: Any, server: Any, channel: str, locale: str, lang: str) -> Any:
    ctx = new_context(browser, server.url, locale=locale)
    page = ctx.new_page()
    page.goto(f"/widget/demo/{channel}?lang={lang}")
    page.locator("#tierdesk-widget .launcher").click()
    expect(page.locator("#tierdesk-widget .conn")).to_have_attribute("data-state", "live")
    box = page.locator("#tierdesk-widget textarea.input")
    box.fill(HUMAN)
    box.press("Enter")
    return page


def test_out_of_hours_the_widget_tells_when_people_are_back(browser: Any, server: Any) -> None:
    widget = server.http("POST", "/v1/admin/channels", ADMIN, {"name": "Acme support", "kind": "widget"},
                         expect=201)
    page = ask_for_a_person(browser, server, widget["id"], "en-US", "en")
    queue = page.locator("#tierdesk-widget .queue")
    expect(queue).to_have_attribute("data-state", "closed")
    expect(queue).to_contain_text("We are closed now. We open again 1/2/2026, 1:00:00 AM.")
    page.reload()  # kept in the conversation's state, not only pushed once
    page.locator("#tierdesk-widget .panel").wait_for()
    expect(queue).to_contain_text("We are closed now.")

    zh = ask_for_a_person(browser, server, widget["id"], "zh-CN", "zh")
    zh_queue = zh.locator("#tierdesk-widget .queue")
    expect(zh_queue).to_have_attribute("data-state", "closed")
    expect(zh_queue).to_contain_text("现在不在服务时间。我们将于 2026/1/2 01:00:00 重新开放。")

    # An agent comes online (before opening): they take the waiting customers, the notice gives way.
    server.http("POST", "/v1/admin/agents", ADMIN, {"name": "Ann", "skills": ["general"], "capacity": 2,
                                                   "status": "online"}, expect=201)
    expect(queue).to_have_attribute("data-state", "assigned")
    expect(zh_queue).to_have_attribute("data-state", "assigned")
    for p in (page, zh):
        p.context.close()

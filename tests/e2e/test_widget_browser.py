"""The web chat widget in a real browser (Debian's Chromium, headless, driven
by Playwright) on the demo page a real server serves: a customer asks an
FAQ question and sees the answer at once, asks for a person and sees the
queue, gets the agent's replies live, survives a reload, a dropped
connection and going offline without a message shown twice or lost, rates
the conversation into /v1/metrics; another customer cannot read it; the
widget in Chinese at 360 px.

With TIERDESK_SCREENSHOTS=1 (`make screenshots`) it saves the widget's
views under docs/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import (
    SCREENSHOTS,
    ThreadedServer,
    browser_or_skip,
    chromium,
    new_context,
    served,
    want_screenshots,
)
from tierdesk.web import keys

pytestmark = pytest.mark.browser  # make test-browser runs these alone

playwright_sync = browser_or_skip()
expect = playwright_sync.expect

ADMIN = "td_admin_widget-tests"
FAQ = "how do I reset my password"
HUMAN = "I want to talk to a human"


class World:
    def __init__(self, server: ThreadedServer) -> None:
        self.server = server
        self.widget = server.http("POST", "/v1/admin/channels", ADMIN, {"name": "Acme support", "kind": "widget"},
                                  expect=201)
        self.app_channel = server.http("POST", "/v1/admin/channels", ADMIN, {"name": "app"}, expect=201)
        self.ann = server.http("POST", "/v1/admin/agents", ADMIN, {
            "name": "Ann", "skills": ["general"], "capacity": 1, "status": "online"}, expect=201)

    def held(self) -> list[dict[str, Any]]:
        return self.server.http("GET", "/v1/agents/me/conversations", self.ann["token"])["conversations"]  # type: ignore[no-any-return]

    def as_ann(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        return self.server.http(method, path, self.ann["token"], body, expect=expect)

    def satisfaction(self) -> tuple[int, int]:
        report = self.server.http("GET", "/v1/metrics?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&exact=true",
                                  ADMIN)
        s = report["groups"][0]["human"]["satisfaction"]
        return s["numerator"], s["denominator"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, demo_model: Any) -> Iterator[World]:
    with served(tmp_path_factory.mktemp("widget"), sqlite_template, demo_model, ADMIN) as server:
        yield World(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium(playwright_sync) as b:
        yield b


@pytest.fixture
def context(browser: Any, world: World) -> Iterator[Any]:
    contexts = []

    def make(width: int = 1100, height: int = 800, locale: str = "en-US") -> Any:
        ctx = new_context(browser, world.server.url, width=width, height=height, locale=locale)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


def shot(page: Any, name: str) -> None:
    if want_screenshots():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def open_widget(page: Any, world: World, lang: str = "") -> Any:
    page.goto(f"/widget/demo/{world.widget['id']}" + (f"?lang={lang}" if lang else ""))
    launcher = page.locator("#tierdesk-widget .launcher")
    launcher.click()
    return page.locator("#tierdesk-widget .panel")


def say(page: Any, text: str) -> None:
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def test_a_customer_is_served_by_the_bot_then_a_person_and_rates_it(world: World, context: Any) -> None:
    # Ann is busy with a customer of another channel: the widget's customer will wait
    world.server.http("POST", "/v1/messages", world.app_channel["token"], {
        "message_id": "app-1", "conversation_id": "app-1", "customer": {"id": "c-app"}, "text": HUMAN})
    ctx = context()
    page = ctx.new_page()
    panel = open_widget(page, world)
    expect(panel.get_by_role("heading")).to_have_text("Acme support")
    expect(page.locator("#tierdesk-widget .conn")).to_have_attribute("data-state", "live")

    # the bot answers at once
    say(page, FAQ)
    expect(page.locator("#tierdesk-widget .msg.bot")).to_contain_text("password")
    expect(page.locator("#tierdesk-widget .msg.customer")).to_have_count(1)
    shot(page, "widget-faq")

    # asking for a person: the queue position and an honest expected wait
    say(page, HUMAN)
    queue = page.locator("#tierdesk-widget .queue")
    expect(queue).to_have_attribute("data-state", "queued")
    expect(queue).to_contain_text("You are number 1 in the queue.")
    expect(queue).to_contain_text("Expected wait: unknown.")
    shot(page, "widget-queue")

    # Ann finishes the other conversation and takes this one; her reply shows live, with her name
    [other] = world.held()
    world.as_ann("POST", f"/v1/conversations/{other['id']}/resolve")
    expect(queue).to_have_attribute("data-state", "assigned")
    expect(queue).to_contain_text("Ann is here to help you.")
    [mine] = world.held()
    # Ann types: the widget says so, by her name
    assert world.as_ann("POST", f"/v1/conversations/{mine['id']}/typing", {"typing": True})["shown"] is True
    expect(page.locator("#tierdesk-widget .typing")).to_have_text("Ann is typing…")
    world.as_ann("POST", f"/v1/conversations/{mine['id']}/replies", {"text": "Hello, Ann here. How can I help?"},
                 expect=201)
    agent_msgs = page.locator("#tierdesk-widget .msg.agent")
    expect(agent_msgs).to_have_count(1)
    expect(agent_msgs).to_contain_text("Hello, Ann here.")
    expect(agent_msgs.locator(".who")).to_have_text("Ann")

    # a reload resumes the conversation, each message once
    page.reload()
    page.locator("#tierdesk-widget .panel").wait_for()
    expect(page.locator("#tierdesk-widget .msg")).to_have_count(4)  # the FAQ, its answer, the ask, Ann
    expect(page.locator("#tierdesk-widget .msg.agent")).to_have_count(1)

    # the connection drops; what Ann writes meanwhile arrives once
    world.server.call(world.server.app[keys.CUSTOMER_SOCKETS].close_all())
    world.as_ann("POST", f"/v1/conversations/{mine['id']}/replies", {"text": "Are you still there?"}, expect=201)
    expect(page.locator("#tierdesk-widget .msg.agent", has_text="Are you still there?")).to_have_count(1)
    expect(page.locator("#tierdesk-widget .conn")).to_have_attribute("data-state", "live")

    # offline: the message waits in the widget, and goes once when back
    ctx.set_offline(True)
    say(page, "yes, I am here")
    expect(page.locator("#tierdesk-widget .msg.customer.pending")).to_contain_text("Not sent yet")
    ctx.set_offline(False)
    expect(page.locator("#tierdesk-widget .msg.customer.pending")).to_have_count(0)
    expect(page.locator("#tierdesk-widget .msg.customer", has_text="yes, I am here")).to_have_count(1)
    history = world.as_ann("GET", f"/v1/conversations/{mine['id']}")["messages"]
    assert [m["text"] for m in history].count("yes, I am here") == 1
    shot(page, "widget-agent")

    # resolved: asked for a rating, which the metrics count
    before = world.satisfaction()
    world.as_ann("POST", f"/v1/conversations/{mine['id']}/resolve")
    rate = page.locator("#tierdesk-widget .rate")
    expect(rate).to_be_visible()
    rate.get_by_role("radio", name="5 of 5").check()
    rate.get_by_label("Comment (optional)").fill("Quick and kind.")
    shot(page, "widget-rating")
    rate.get_by_role("button", name="Send rating").click()
    # The thanks line is in the page, hidden, from the start: only its
    # showing says the server took the rating.
    thanks = page.locator("#tierdesk-widget .thanks")
    expect(thanks).to_be_visible()
    expect(thanks).to_have_text("Thank you for your rating.")
    world.server.clock.advance(1)
    assert world.satisfaction() == (before[0] + 1, before[1] + 1)

    # another customer (another browser) starts their own conversation and cannot read this one
    stranger = context().new_page()
    open_widget(stranger, world)
    expect(stranger.locator("#tierdesk-widget .conn")).to_have_attribute("data-state", "live")
    expect(stranger.locator("#tierdesk-widget .empty")).to_be_visible()
    expect(stranger.locator("#tierdesk-widget .messages")).not_to_contain_text("Ann here")
    stolen = page.evaluate(f"JSON.parse(localStorage.getItem('tierdesk.widget.{world.widget['id']}')).session")
    own = stranger.evaluate(f"JSON.parse(localStorage.getItem('tierdesk.widget.{world.widget['id']}')).session")
    # the stranger's own session, changed to name the first customer's conversation, is refused
    status = stranger.evaluate("""async ([own, stolen]) => {
        const part = (t) => JSON.parse(atob(t.slice(12).split('.')[0].replace(/-/g, '+').replace(/_/g, '/')));
        const claims = part(own);
        claims.v = part(stolen).v;
        const forged = 'td_customer_' + btoa(JSON.stringify(claims)).replace(/\\+/g, '-').replace(/\\//g, '_')
          .replace(/=+$/, '') + '.' + own.split('.')[1];
        const r = await fetch('/v1/widget/conversation', {headers: {Authorization: 'Bearer ' + forged}});
        return r.status;
    }""", [own, stolen])
    assert status == 401


def test_the_widget_in_chinese_at_phone_width_and_by_keyboard(world: World, context: Any) -> None:
    page = context(width=360, height=740, locale="zh-CN").new_page()
    page.goto(f"/widget/demo/{world.widget['id']}?lang=zh")
    launcher = page.get_by_role("button", name="与我们聊天")
    launcher.focus()
    page.keyboard.press("Enter")
    box = page.get_by_label("您的消息")
    expect(box).to_be_focused()
    page.keyboard.type("怎么重置密码")
    page.keyboard.press("Enter")
    expect(page.locator("#tierdesk-widget .msg.customer")).to_have_count(1)
    expect(page.locator("#tierdesk-widget .msg.bot .who")).to_have_text("智能助手")
    # The browser's language (navigator.language) chose the answer's.
    expect(page.locator("#tierdesk-widget .msg.bot")).to_contain_text("要重置密码")
    expect(page.locator("#tierdesk-widget .conn")).to_have_text("已连接")
    # nothing reaches past the screen's edge
    wide = page.evaluate("""() => {
        const root = document.getElementById('tierdesk-widget').shadowRoot;
        return [...root.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > 361)
            .map(e => e.className + ' ' + e.getBoundingClientRect().right);
    }""")
    assert wide == [], wide
    shot(page, "widget-phone-zh")
    page.keyboard.press("Escape")
    expect(page.locator("#tierdesk-widget .panel")).to_be_hidden()
    expect(launcher).to_be_focused()
    assert re.search(r"^tierdesk", page.title())

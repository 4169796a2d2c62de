"""What the browser tests need: the app served from a thread on a real port
(its clock under the test's control), a webhook receiver, plain HTTP calls
for the channel and the admin, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiohttp import web

from router.ports import FakeClock
from tests.support.server import free_port
from tierdesk.models import LiveModel
from tierdesk.settings import Settings
from tierdesk.web.app import create_app

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium reaches for the network
# at start, which a closed network refuses (and which a test never needs).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
WAIT_MS = 30_000  # generous: the machine is shared
NINE_AM = 1_767_258_000.0  # 2026-01-01T09:00:00Z: where the served app's clock starts


def browser_or_skip() -> Any:
    """Playwright's sync API (its expect() waiting up to WAIT_MS), once
    Debian's Chromium is there too. Without either the browser test module
    is skipped, saying why; under `make test` (TIERDESK_TEST_BROWSER=required)
    it fails instead: a browser suite that ran nothing must not pass."""
    import pytest

    why = None
    try:
        import playwright.sync_api as api
    except ImportError:
        why = "the test extra installs Playwright (make test)"
    if why is None and not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    if why is None:
        api.expect.set_options(timeout=WAIT_MS)
        return api
    if os.environ.get("TIERDESK_TEST_BROWSER") == "required":
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)


def want_screenshots() -> bool:
    """`make screenshots` sets this; `make test` leaves docs/ alone."""
    return os.environ.get("TIERDESK_SCREENSHOTS") == "1"


class ThreadedServer:
    """The real app on 127.0.0.1:<port>, its event loop in a thread of its own."""

    def __init__(self, settings: Settings, clock: FakeClock, model: Any) -> None:
        self.clock = clock
        self.app = create_app(settings, clock=clock, model=LiveModel.of(model))
        self.port = settings.port
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="console-server", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

        async def up() -> None:
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self.call(up())

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def http(self, method: str, path: str, token: str | None = None, body: Any = None,
             expect: int | None = 200) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        result = json.loads(raw) if raw else None
        if expect is not None:
            assert status == expect, (method, path, status, result)
        return result


class WebhookReceiver:
    """A channel's webhook: records every delivery it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the standard library's name
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def served(folder: Path, sqlite_template: Path, model: Any, admin_token: str, **settings: Any) -> Iterator[ThreadedServer]:
    """The app on a copy of the migrated SQLite template in ``folder``, its
    clock at NINE_AM; ``settings`` override the browser tests' defaults (no
    sweeper, no rate limit, a quick outbox)."""
    db = folder / "tierdesk.db"
    shutil.copy(sqlite_template, db)
    defaults: dict[str, Any] = {"sweep_interval_seconds": 3600.0, "log_format": "console", "log_level": "warning",
                                "outbox_poll_seconds": 0.2, "rate_limit_ip_per_second": 0.0}
    config = Settings.from_env({}, database_url=f"sqlite:///{db}", admin_token=admin_token, port=free_port(),
                               **(defaults | settings))
    server = ThreadedServer(config, FakeClock(NINE_AM), model)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def chromium(api: Any) -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright's sync ``api``."""
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_context(browser: Any, base_url: str, *, width: int = 1100, height: int = 800, locale: str = "en-US") -> Any:
    """A fresh browser profile (its own cookies and storage) on the served app."""
    ctx = browser.new_context(base_url=base_url, viewport={"width": width, "height": height}, timezone_id="UTC",
                              locale=locale)
    ctx.set_default_timeout(WAIT_MS)
    return ctx

"""The demo channel's webhook receiver, served by `tierdesk serve --demo`.

In the demo there is no chat platform for agent replies to go to, so the
server receives them itself: the demo channel's webhook_url points at
``POST /demo/inbox``, which checks each delivery's signature as a real
receiver should, drops a delivery it already has (same Idempotency-Key),
and keeps the last ones in memory; ``GET /demo/inbox`` lists them (with
``?wait=S``, waiting up to S seconds while it is still empty: a delivery
goes out a moment after the reply is stored). Without ``--demo`` neither
route exists.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from tierdesk.errors import InvalidInput
from tierdesk.signing import HEADER, verify

from . import keys

KEEP = 100  # deliveries listed, newest last
MAX_WAIT = 30.0


@dataclass
class DemoInbox:
    channel_id: str
    webhook_secret: str
    signature_tolerance: float = 300.0
    received: collections.deque[dict[str, Any]] = field(default_factory=lambda: collections.deque(maxlen=KEEP))
    repeats: int = 0  # deliveries received again (their acknowledgement was lost)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, signature: str | None, idempotency_key: str | None, body: bytes, now: float) -> bool:
        """Checks and keeps one delivery; False if it was a repeat."""
        verify(self.webhook_secret, signature, body, now, self.signature_tolerance)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidInput("a delivery's body is JSON", code="validation_failed") from None
        if idempotency_key is not None and any(d["idempotency_key"] == idempotency_key for d in self.received):
            self.repeats += 1
            return False
        at = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
        self.received.append({"idempotency_key": idempotency_key, "received_at": at, "signature": "valid",
                              "payload": payload})
        self.arrived.set()
        return True

    async def wait(self, seconds: float) -> None:
        """Until something has been received, or ``seconds`` have passed."""
        if not self.received and seconds > 0:
            try:
                await asyncio.wait_for(self.arrived.wait(), seconds)
            except TimeoutError:
                pass


async def post_inbox(request: web.Request) -> web.Response:
    inbox = request.app[keys.DEMO_INBOX]
    new = inbox.take(request.headers.get(HEADER), request.headers.get("Idempotency-Key"), await request.read(),
                     request.app[keys.CLOCK].now())
    return web.json_response({"ok": True, "repeat": not new})


async def get_inbox(request: web.Request) -> web.Response:
    inbox = request.app[keys.DEMO_INBOX]
    raw = request.query.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:  # also nan
        raise InvalidInput(f"wait must be a number of seconds from 0 to {MAX_WAIT:g}", code="validation_failed")
    await inbox.wait(wait)
    return web.json_response({"channel_id": inbox.channel_id, "received": list(inbox.received),
                              "repeats": inbox.repeats}, dumps=lambda o: orjson.dumps(o).decode())


def add_routes(app: web.Application, inbox: DemoInbox) -> None:
    app[keys.DEMO_INBOX] = inbox
    app.router.add_post("/demo/inbox", post_inbox)
    app.router.add_get("/demo/inbox", get_inbox)

"""The delivery worker: sends outbox items to channel webhooks.

Retries use exponential backoff with full jitter, so a channel coming back
from an outage is not hit by every retry at once; after the configured
number of tries an item becomes a dead letter that an operator can replay.
Each request carries the item's idempotency key, so a receiver that got a
delivery whose acknowledgement was lost can drop the repeat.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
import orjson
import structlog

from router.model import Channel
from router.ports import Clock
from storage.accounts import Accounts
from storage.outbox import Delivery, Outbox
from tierdesk.signing import HEADER, sign

log = structlog.get_logger(__name__)


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))


class DeliveryWorker:
    def __init__(self, outbox: Outbox, accounts: Accounts, clock: Clock, *, max_attempts: int,
                 timeout: float, poll: float, base_delay: float = 1.0) -> None:
        self.outbox = outbox
        self.accounts = accounts
        self.clock = clock
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.poll = poll
        self.base_delay = base_delay
        self._wake = asyncio.Event()
        self._stopping = False
        self._channels: dict[str, tuple[float, Channel | None]] = {}
        self.sent = 0
        self.retries = 0
        self.dead = 0  # deliveries given up: dead letters, until replayed

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the deliveries in hand, then return from run()."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            while not self._stopping:
                try:
                    due = await self.outbox.due(self.clock.now())
                    if due:
                        await asyncio.gather(*(self._deliver(session, d) for d in due))
                        continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the worker must outlive a database outage
                    log.warning("delivery_poll_failed", error=repr(exc))
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll)
                except TimeoutError:
                    pass

    async def _channel(self, channel_id: str) -> Channel | None:
        hit = self._channels.get(channel_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        channel = await self.accounts.channel(channel_id)
        self._channels[channel_id] = (time.monotonic() + 30.0, channel)
        return channel

    async def _deliver(self, session: aiohttp.ClientSession, d: Delivery) -> None:
        channel = await self._channel(d.channel_id)
        if channel is None or not channel.webhook_url:
            await self.outbox.failed(d.id, error="channel has no webhook_url", retry_at=None)
            self._dead_letter(d, d.attempts, "channel has no webhook_url")
            return
        body = orjson.dumps(d.payload)
        ts = int(self.clock.now())
        headers = {"Content-Type": "application/json", "Idempotency-Key": d.idempotency_key,
                   "X-Tierdesk-Delivery": str(d.id)}
        if channel.webhook_secret:
            headers[HEADER] = sign(channel.webhook_secret, ts, body)
        error: str | None = None
        try:
            async with session.post(channel.webhook_url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    await self.outbox.delivered(d.id, self.clock.now())
                    self.sent += 1
                    return
                error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = repr(exc)
        attempts = d.attempts + 1
        dead = attempts >= self.max_attempts
        self.retries += 0 if dead else 1
        retry_at = None if dead else self.clock.now() + backoff(attempts, self.base_delay)
        await self.outbox.failed(d.id, error=error or "unknown", retry_at=retry_at)
        if dead:
            self._dead_letter(d, attempts, error or "unknown")
        else:
            log.info("delivery_failed", delivery=d.id, attempts=attempts, error=error)

    def _dead_letter(self, d: Delivery, attempts: int, error: str) -> None:
        # At warning: a reply the customer will not see until an operator
        # replays it (POST /v1/admin/deliveries/replay).
        self.dead += 1
        log.warning("delivery_dead_letter", delivery=d.id, channel=d.channel_id, kind=d.kind, attempts=attempts,
                    error=error)

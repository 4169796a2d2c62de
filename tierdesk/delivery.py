"""The delivery worker: hands outbox items to their channel's adapter
(tierdesk/channels: a signed webhook, the widget, a Matrix room).

Retries back off exponentially with equal jitter: each wait is between
half and all of min(cap, base x 2^(attempt-1)), so retries from an outage
spread out, yet a known minimum of time passes before an item is given up:
with the defaults (16 tries, 1 s base, 300 s cap) at least 19 minutes and
about 29 on average. Then it becomes a dead letter, logged at warning and
counted; it holds back the later items of its conversation (order per
conversation is kept) until an operator replays it.

Each item carries its idempotency key to the adapter, so a receiver that got
a delivery whose acknowledgement was lost can drop the repeat. Items are
claimed before they are sent (storage/outbox.py), so several workers or
instances on one database do not send the same one.
"""

from __future__ import annotations

import asyncio
import random
import time

import structlog

from router.model import Channel
from router.ports import Clock
from storage.accounts import Accounts
from storage.outbox import Delivery, Outbox
from tierdesk.channels.hub import ChannelHub
from tierdesk.channels.port import Undeliverable

log = structlog.get_logger(__name__)


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def least_retry_time(max_attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """The shortest time from the first try to the last one (every wait at
    its minimum): how long a receiver outage is ridden out for sure."""
    return sum(min(cap, base * 2 ** (a - 1)) / 2 for a in range(1, max_attempts))


# How long a claimed delivery is held beyond the request's own timeout
# before another worker may try it (this one having died meanwhile).
LEASE_MARGIN_SECONDS = 30.0


class DeliveryWorker:
    def __init__(self, outbox: Outbox, accounts: Accounts, clock: Clock, hub: ChannelHub, *, max_attempts: int,
                 timeout: float, poll: float, base_delay: float = 1.0, max_delay: float = 300.0,
                 alert_target: Channel | None = None) -> None:
        self.outbox = outbox
        self.hub = hub
        self.accounts = accounts
        self.clock = clock
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.poll = poll
        self.base_delay = base_delay
        self.max_delay = max_delay
        # The SLA monitor's webhook, addressed in the outbox as a channel of
        # its own (tierdesk/web/monitor.py).
        self.alert_target = alert_target
        self._wake = asyncio.Event()
        self._stopping = False
        self._channels: dict[str, tuple[float, Channel | None]] = {}
        self.sent = 0
        self.retries = 0
        self.dead = 0

    def wake(self) -> None:
        self._wake.set()

    def forget_channel(self, channel_id: str) -> None:
        """The channel changed (webhook URL, secret, disabled): read it anew."""
        self._channels.pop(channel_id, None)

    def stop(self) -> None:
        """Finish the deliveries in hand, then return from run()."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                due = await self.outbox.claim(self.clock.now(), self.timeout + LEASE_MARGIN_SECONDS)
                if due:
                    await asyncio.gather(*(self._deliver(d) for d in due))
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
        if self.alert_target is not None and channel_id == self.alert_target.id:
            return self.alert_target
        hit = self._channels.get(channel_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        channel = await self.accounts.channel(channel_id)
        self._channels[channel_id] = (time.monotonic() + 30.0, channel)
        return channel

    async def _deliver(self, d: Delivery) -> None:
        channel = await self._channel(d.channel_id)
        undeliverable = ("channel does not exist" if channel is None else
                         "channel is disabled" if channel.disabled_at is not None else None)
        error: str | None = None
        if undeliverable is None:
            assert channel is not None
            try:
                async with asyncio.timeout(self.timeout):
                    await self.hub.deliver(channel, d)
                await self.outbox.delivered(d.id, self.clock.now())
                self.sent += 1
                return
            except Undeliverable as exc:
                undeliverable = str(exc)
            except asyncio.CancelledError:
                raise
            except TimeoutError as exc:
                error = repr(exc)
            except Exception as exc:  # noqa: BLE001 - any failure of the adapter is retried
                error = str(exc) if type(exc).__name__ in ("DeliveryFailed", "NoAdapter") else repr(exc)
        if undeliverable is not None:
            await self.outbox.failed(d.id, error=undeliverable, retry_at=None)
            self.dead += 1
            log.warning("delivery_dead_letter", delivery=d.id, channel=d.channel_id, conversation=d.conversation_id,
                        attempts=d.attempts + 1, error=undeliverable)
            return
        attempts = d.attempts + 1
        dead = attempts >= self.max_attempts
        retry_at = None if dead else self.clock.now() + backoff(attempts, self.base_delay, self.max_delay)
        await self.outbox.failed(d.id, error=error or "unknown", retry_at=retry_at)
        if dead:
            self.dead += 1
            log.warning("delivery_dead_letter", delivery=d.id, channel=d.channel_id, conversation=d.conversation_id,
                        attempts=attempts, error=error)
        else:
            self.retries += 1
            log.info("delivery_failed", delivery=d.id, attempts=attempts, retry_at=retry_at, error=error)

"""Open-loop, constant-rate load generator for POST /v1/messages.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080 --token TOKEN \
        --mode faq --rate 800 --duration 10 --run r1 [--acked-out ids.txt]
    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8080,http://127.0.0.1:8081 \
        --token TOKEN --mode mix --handoff-share 0.3 --rate 1000 --duration 10 --run r2

Request i is *scheduled* at start + i/rate, whatever happened to the
requests before it; its latency is measured from that scheduled time to the
end of its response. A server that stalls therefore shows the stall in every
request scheduled during it, instead of the generator politely waiting and
sending fewer requests (the "coordinated omission" of closed-loop tools such
as wrk). Requests wait for a free keep-alive connection from a fixed pool
(``--connections``, default 64 like the saturated wrk run), which is how a
channel gateway in front of the service would behave. With several URLs
(instances of the service), the connections go to them in turn, as a load
balancer would spread them. ``--mode mix`` sends handoff messages as the
``--handoff-share`` of the messages, evenly interleaved with FAQ questions.

The HTTP/1.1 client is a minimal asyncio Protocol (keep-alive, Content-Length
bodies), so the generator spends as little CPU as it can: on a 2-core machine
it shares the cores with the server under test.

Prints one JSON object to stdout: scheduled/sent/completed counts, achieved
rate, latency percentiles (ms, from the scheduled time; also from the actual
send time, as ``service_*``), status and action counts, and how late the
scheduler itself ran (``sched_lag_p99_ms``: if that is large, the generator,
not the server, was short of CPU).

Message bodies have the same shape and texts as bench/message.lua: unique
ids, one conversation per message, a number after each text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

try:
    import orjson

    def _loads(b: bytes) -> object:
        return orjson.loads(b)

    def _dumps(o: object) -> bytes:
        return orjson.dumps(o)
except ImportError:  # pragma: no cover - orjson is a tierdesk dependency
    def _loads(b: bytes) -> object:
        return json.loads(b)

    def _dumps(o: object) -> bytes:
        return json.dumps(o, separators=(",", ":")).encode()


# Questions the demo model answers with any number up to 9,999 after them
# (checked 2026-12-05, 720 messages each). Before then a "(ref <run id>)"
# suffix made most FAQ questions low-confidence handoffs: the FAQ runs up to
# 73c06c7 measured mostly handoffs.
FAQ = [
    "how do I reset my password", "do you ship internationally", "how long does shipping take",
    "how do I return an item", "do you accept paypal", "how can I change my email",
]
# The number appended: each message's text differs from its neighbours', and
# the classifier's word cache meets a new word until it has seen them all, as
# it meets a desk's vocabulary.
NUMBERS = 10_000
HANDOFF = [
    "I was charged twice for my order and want my money back",
    "the app crashes every time I open it and I lost my data",
]


def is_handoff(i: int, share: float) -> bool:
    """Message i of a mix: the handoffs spread evenly, ``share`` of any run of messages."""
    return math.floor((i + 1) * share) > math.floor(i * share)


def handoff_text(i: int, share: float) -> str:
    return HANDOFF[i % len(HANDOFF)] if is_handoff(i, share) else FAQ[i % len(FAQ)]


class ConnectionClosed(Exception):
    pass


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool, float]] | None = None
        self.closed = False
        self._head_end = -1
        self._clen = -1
        self._status = 0
        self._close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed(repr(exc)))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self._head_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            lines = head.split("\r\n")
            self._status = int(lines[0].split(" ", 2)[1])
            self._clen = 0
            self._close_after = False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    self._clen = int(value.strip())
                elif name == "transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by this load generator")
                elif name == "connection" and value.strip().lower() == "close":
                    self._close_after = True
            self._head_end = end + 4
        total = self._head_end + self._clen
        if len(self.buf) < total:
            return
        body = bytes(self.buf[self._head_end:total])
        del self.buf[:total]
        self._head_end = -1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self._status, body, self._close_after, time.perf_counter()))

    async def request(self, raw: bytes) -> tuple[int, bytes, bool, float]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await self.waiter
        finally:
            self.waiter = None


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    # Not loop.time(): uvloop's clock has millisecond resolution and is cached
    # per loop iteration, which would quantise every latency.
    now_ = time.perf_counter
    addresses = []
    for url in args.url.split(","):
        u = urlsplit(url)
        addresses.append((u.hostname or "127.0.0.1", u.port or 80))
    head_prefixes = [(
        f"POST /v1/messages HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {args.token}\r\nContent-Type: application/json\r\n"
    ).encode() for host, port in addresses]

    plain = HANDOFF if args.mode == "handoff" else FAQ

    def text(i: int) -> str:
        return handoff_text(i, args.handoff_share) if args.mode == "mix" else plain[i % len(plain)]

    def build(i: int, slot: int) -> tuple[str, bytes]:
        mid = f"{args.run}-{i}"
        body = _dumps({
            "message_id": mid, "conversation_id": mid, "customer": {"id": "u" + mid},
            "text": f"{text(i)} #{i % NUMBERS}",
        })
        return mid, head_prefixes[slot % len(addresses)] + f"Content-Length: {len(body)}\r\n\r\n".encode() + body

    async def connect(slot: int) -> HttpConn:
        host, port = addresses[slot % len(addresses)]
        _, proto = await loop.create_connection(HttpConn, host, port)
        return proto

    conns = [await connect(k) for k in range(args.connections)]
    queue: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    latencies: list[float] = []      # scheduled -> response, seconds
    service: list[float] = []        # sent -> response, seconds
    lags: list[float] = []           # scheduled -> taken by a connection (waiting included)
    statuses: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    acked: list[str] = []
    sent = 0
    completed_at: list[float] = []

    async def worker(slot: int) -> None:
        nonlocal sent
        conn = conns[slot]
        while True:
            i, scheduled = await queue.get()
            mid, raw = build(i, slot)
            if conn.closed:
                try:
                    conn = conns[slot] = await connect(slot)
                except OSError as exc:
                    errors[f"connect: {type(exc).__name__}"] += 1
                    queue.task_done()
                    continue
            t_send = now_()
            lags.append(t_send - scheduled)
            sent += 1
            try:
                # t_done: when the last byte of the response was parsed.
                status, body, close_after, t_done = await conn.request(raw)
            except ConnectionClosed as exc:
                errors[f"closed: {exc}"[:80]] += 1
                queue.task_done()
                continue
            latencies.append(t_done - scheduled)
            service.append(t_done - t_send)
            completed_at.append(t_done)
            statuses[str(status)] += 1
            if 200 <= status < 300:
                acked.append(mid)
                try:
                    action = _loads(body).get("action")  # type: ignore[union-attr]
                except Exception:  # noqa: BLE001 - count it, keep going
                    action = "unparsable"
                actions[str(action)] += 1
            if close_after and conn.transport is not None:
                conn.transport.close()
            queue.task_done()

    workers = [asyncio.create_task(worker(k)) for k in range(args.connections)]
    start = now_() + 0.05
    end = start + args.duration
    interval = 1.0 / args.rate
    scheduled_n = 0
    while True:
        t = start + scheduled_n * interval
        if t >= end:
            break
        now = now_()
        if t > now:
            await asyncio.sleep(t - now)
        queue.put_nowait((scheduled_n, t))
        scheduled_n += 1
    # Let what was scheduled finish, for a bounded time.
    drained = True
    try:
        await asyncio.wait_for(queue.join(), timeout=args.drain)
    except asyncio.TimeoutError:
        drained = False
    finished = now_()
    for w in workers:
        w.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    for c in conns:
        if c.transport is not None:
            c.transport.close()

    latencies.sort()
    service.sort()
    lags.sort()
    completed = len(latencies)
    # Achieved rate: responses completed within the scheduling window, over
    # its length (undercounts by the few requests in flight at its end).
    in_window = sum(1 for t in completed_at if t <= end)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 3)

    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    if args.acked_out:
        with open(args.acked_out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(acked))
            if acked:
                fh.write("\n")
    return {
        "tool": "bench/loadgen.py (open loop)",
        "mode": args.mode,
        **({"handoff_share": args.handoff_share} if args.mode == "mix" else {}),
        "target_rate": args.rate,
        "duration_s": args.duration,
        "connections": args.connections,
        "scheduled": scheduled_n,
        "sent": sent,
        "completed": completed,
        "ok_2xx": ok,
        "non2xx": completed - ok,
        "errors": dict(errors),
        "unfinished": scheduled_n - completed - sum(errors.values()),
        "drained": drained,
        "drain_s": round(finished - end, 3),
        "achieved_rate": round(in_window / args.duration, 1),
        "p50_ms": ms(percentile(latencies, 50)),
        "p90_ms": ms(percentile(latencies, 90)),
        "p99_ms": ms(percentile(latencies, 99)),
        "p999_ms": ms(percentile(latencies, 99.9)),
        "max_ms": ms(latencies[-1] if latencies else None),
        "service_p50_ms": ms(percentile(service, 50)),
        "service_p99_ms": ms(percentile(service, 99)),
        "sched_lag_p50_ms": ms(percentile(lags, 50)),
        "sched_lag_p99_ms": ms(percentile(lags, 99)),
        "statuses": dict(statuses),
        "actions": dict(actions),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True,
                   help="base URL, e.g. http://127.0.0.1:8080; several, comma-separated: connections go to each in turn")
    p.add_argument("--token", default="", help="channel bearer token")
    p.add_argument("--mode", choices=["faq", "handoff", "mix"], default="faq")
    p.add_argument("--handoff-share", type=float, default=0.3, help="--mode mix: the share of handoff messages")
    p.add_argument("--rate", type=float, required=True, help="requests per second, scheduled at fixed intervals")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of scheduling")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connection pool size")
    p.add_argument("--run", default=f"lg{int(time.time())}", help="unique message-id prefix")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for outstanding requests")
    p.add_argument("--acked-out", help="write the message ids answered 2xx here, one a line")
    args = p.parse_args(argv)
    if args.rate <= 0:
        p.error("--rate must be positive")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

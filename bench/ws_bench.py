"""Agent WebSocket benchmark: RSS of 5,000 idle agent WebSockets in one server.

    .venv/bin/python bench/ws_bench.py                   # 5,000 sockets, ~1 minute
    .venv/bin/python bench/ws_bench.py --connections 1000

Exit status: 0 every target met, 3 some target missed (results written
anyway), 1 error, 130 interrupted. On 127.0.0.1 only, every step bounded
in time.

What it does:

1. Trains the demo FAQ model (or uses ``--models-dir``) and starts
   ``tierdesk serve`` on a fresh SQLite file with
   TIERDESK_WS_IDLE_TIMEOUT_SECONDS=600 (idle sockets are not closed during
   the run) and the rate limits off (5,000 handshakes from one address
   would otherwise meet the per-IP limit).
2. Creates one agent (status online) through POST /v1/admin/agents and
   measures the server's RSS (VmRSS).
3. Starts a client process (this script with ``--client``; aiohttp) that
   opens ``--connections`` WebSockets to /v1/agents/ws with the agent's
   token (``Authorization: Bearer …``), ``--concurrency`` handshakes at a
   time, waits for each socket's ``hello`` frame, and then holds them idle
   (each socket has a reader, so the server's heartbeat pings are answered).
4. Waits until the server's Prometheus gauge ``tierdesk_agent_websockets``
   (GET /metrics) shows them all, holds them ``--idle`` seconds, and
   measures RSS again: the difference is what the sockets cost.
5. Tells the client to close them all and checks that the gauge returns to 0.

Writes bench/results/ws.json and the section between
``<!-- metrics-bench:begin -->`` and ``<!-- metrics-bench:end -->`` in
docs/benchmarks.md (together with the last bench/metrics_bench.py results).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics_bench import (  # noqa: E402 - same directory
    DOC,
    RESULTS,
    ROOT,
    WS_JSON,
    exe_command,
    install_signal_handlers,
    loadavg,
    machine,
    server_env,
    train_model,
    write_doc,
    ws_markdown,
)
from accounting import CpuMeter, rss_mib, scrape  # noqa: E402
from common import BenchError  # noqa: E402
from machine import code_version  # noqa: E402
from servers import Server, free_port, http  # noqa: E402
from targets import discard_or_keep, stop_servers, tierdesk_argv  # noqa: E402

GAUGE = "tierdesk_agent_websockets"
TARGET_RSS_DELTA_MIB = 200.0


def log(msg: str) -> None:
    print(f"[ws-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------- client
async def client_main(url: str, token: str, n: int, concurrency: int, timeout: float) -> None:
    """Open n sockets, report, hold them until told (a line on stdin), close,
    report. Reports are JSON lines on stdout."""
    import aiohttp

    def report(**kw: Any) -> None:
        print(json.dumps(kw), flush=True)

    sockets: list[aiohttp.ClientWebSocketResponse] = []
    readers: list[asyncio.Task[None]] = []
    handshakes: list[float] = []
    failures: dict[str, int] = {}
    hello = 0
    unexpected_close = 0
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None))
    headers = {"Authorization": f"Bearer {token}"}

    async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
        # Reading is what answers the server's heartbeat pings (autoping).
        nonlocal unexpected_close
        async for _msg in ws:
            pass
        if not closing.is_set():
            unexpected_close += 1

    async def open_one() -> None:
        nonlocal hello
        async with sem:
            t0 = time.perf_counter()
            try:
                ws = await asyncio.wait_for(session.ws_connect(url, headers=headers, autoping=True), timeout)
                msg = await asyncio.wait_for(ws.receive(), timeout)
                if msg.type is not aiohttp.WSMsgType.TEXT or json.loads(msg.data).get("type") != "hello":
                    failures["no hello"] = failures.get("no hello", 0) + 1
                    await ws.close()
                    return
            except Exception as exc:  # noqa: BLE001 - counted and reported
                key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                return
            handshakes.append(time.perf_counter() - t0)
            hello += 1
            sockets.append(ws)
            readers.append(asyncio.create_task(reader(ws)))

    closing = asyncio.Event()
    t0 = time.perf_counter()
    await asyncio.gather(*(open_one() for _ in range(n)))
    opened = time.perf_counter() - t0
    hs = sorted(handshakes)

    def pct(q: float) -> float | None:
        return round(hs[min(len(hs) - 1, int(q * len(hs)))] * 1000, 1) if hs else None

    report(event="open", opened=len(sockets), hello=hello, failed=sum(failures.values()), failures=failures,
           seconds=round(opened, 2), handshake_p50_ms=pct(0.5), handshake_p99_ms=pct(0.99),
           handshake_max_ms=round(hs[-1] * 1000, 1) if hs else None)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    report(event="closing", command=line.strip(), still_open=sum(1 for ws in sockets if not ws.closed),
           unexpected_close=unexpected_close, client_rss_mib=rss_mib(os.getpid()))
    closing.set()
    t0 = time.perf_counter()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await session.close()
    report(event="closed", closed=sum(1 for ws in sockets if ws.closed), seconds=round(time.perf_counter() - t0, 2))


class ClientProc:
    """The client subprocess, read line by line on a thread."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.t = threading.Thread(target=self._read, daemon=True, name="ws-client-reader")
        self.t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            with self.cond:
                self.lines.append(rec)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for rec in self.lines:
                    if rec.get("event") == event:
                        return rec
                if self.proc.poll() is not None and not self.t.is_alive():
                    err = self.proc.stderr.read() if self.proc.stderr else ""
                    raise BenchError(f"the client exited ({self.proc.returncode}) before '{event}':\n{err[-2000:]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"no '{event}' from the client after {timeout:.0f}s")
                self.cond.wait(min(left, 1.0))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def relabel(cpu: dict[str, Any]) -> dict[str, Any]:
    """CpuMeter counts the pids it is given besides the server as "database
    backends"; here that is the client process."""
    return {k.replace("database_backends", "client_process"): v for k, v in cpu.items()}


def gauge(base: str) -> float:
    return scrape(base).get(GAUGE, -1.0)


def wait_gauge(base: str, want: float, timeout: float) -> tuple[float, float]:
    """Poll /metrics until the gauge equals want: (value, seconds waited)."""
    t0 = time.monotonic()
    v = gauge(base)
    while v != want and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        v = gauge(base)
    return v, round(time.monotonic() - t0, 2)


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace, tmp: Path, results: dict[str, Any], servers: list[Server],
        clients: list[ClientProc]) -> None:
    models = train_model(args.models_dir, tmp)
    port = free_port()
    admin = "td_admin_bench_" + secrets.token_hex(16)
    env = server_env(f"sqlite:///{tmp / 'ws.db'}", admin, models, port,
                     TIERDESK_WS_IDLE_TIMEOUT_SECONDS=f"{args.ws_idle_timeout:g}",
                     TIERDESK_RATE_LIMIT_CHANNEL_PER_SECOND="0", TIERDESK_RATE_LIMIT_IP_PER_SECOND="0")
    server = Server("tierdesk-ws", tierdesk_argv(), env, port, tmp / "server.log")
    servers.append(server)
    t0 = time.perf_counter()
    server.start("/readyz", timeout=120)
    log(f"tierdesk serve ready in {time.perf_counter() - t0:.1f} s (pid {server.pid}, fresh SQLite)")
    agent = http("POST", server.base + "/v1/admin/agents",
                 {"name": "ws bench", "skills": ["general"], "capacity": 5, "status": "online"}, token=admin)
    time.sleep(args.settle)
    results["rss_mib_before"] = rss_mib(server.pid)
    results["gauge_before"] = gauge(server.base)
    log(f"agent {agent['id']} created; server RSS {results['rss_mib_before']} MiB, gauge {results['gauge_before']:g}")

    url = f"ws://127.0.0.1:{port}/v1/agents/ws"
    argv = [sys.executable, str(Path(__file__).resolve()), "--client", "--url", url,
            "--connections", str(args.connections), "--concurrency", str(args.concurrency),
            "--open-timeout", str(args.open_timeout)]
    client = ClientProc(argv, os.environ | {"WS_BENCH_TOKEN": agent["token"]})
    clients.append(client)
    log(f"opening {args.connections:,} WebSockets ({args.concurrency} handshakes at a time) ...")
    with CpuMeter(server.pid, [client.proc.pid]) as open_cpu:
        opened = client.wait_for("open", args.open_timeout + 120)
    results["open"] = opened
    results["open_cpu"] = relabel(open_cpu.result)
    log(f"client: {opened['opened']:,} open with their hello in {opened['seconds']} s, {opened['failed']} failed "
        f"{opened['failures'] or ''}; handshake p50 {opened['handshake_p50_ms']} ms "
        f"p99 {opened['handshake_p99_ms']} ms")
    value, waited = wait_gauge(server.base, float(args.connections), 60)
    results["gauge_open"] = value
    log(f"gauge {GAUGE} = {value:g} ({waited} s after the client's report)")
    with CpuMeter(server.pid, [client.proc.pid]) as idle_cpu:
        time.sleep(args.idle)
    results["idle_s"] = args.idle
    results["idle_cpu"] = relabel(idle_cpu.result)
    results["idle_server_cpu_cores"] = round(idle_cpu.result["server_total_s"] / idle_cpu.result["wall_s"], 3)
    results["rss_mib_open"] = rss_mib(server.pid)
    results["gauge_open_after_idle"] = gauge(server.base)
    delta = round(results["rss_mib_open"] - results["rss_mib_before"], 1)
    results["rss_delta_mib"] = delta
    results["rss_per_socket_kib"] = round(delta * 1024 / max(1, opened["opened"]), 1)
    log(f"after {args.idle:g} s idle: server RSS {results['rss_mib_open']} MiB (+{delta} MiB, "
        f"{results['rss_per_socket_kib']} KiB per socket), gauge {results['gauge_open_after_idle']:g}")

    client.send("close")
    closing = client.wait_for("closing", 30)
    closed = client.wait_for("closed", 120)
    results["open"]["client_rss_mib"] = closing.get("client_rss_mib")
    results["open"]["unexpected_close_while_idle"] = closing.get("unexpected_close")
    results["close"] = closed
    value, waited = wait_gauge(server.base, 0.0, 60)
    results["gauge_closed"] = value
    results["gauge_zero_after_s"] = waited
    time.sleep(args.settle)
    results["rss_mib_closed"] = rss_mib(server.pid)
    log(f"client closed {closed['closed']:,} in {closed['seconds']} s; gauge {value:g} after {waited} s; "
        f"server RSS {results['rss_mib_closed']} MiB")
    client.stop()
    results["log_problems"] = server.log_problems()
    server.stop()


def evaluate(r: dict[str, Any]) -> list[dict[str, Any]]:
    n = r["connections"]
    o = r.get("open", {})
    checks = [
        {"check": f"{n:,} sockets opened, each with its hello frame", "value": o.get("hello"), "op": "==",
         "threshold": n, "unit": ""},
        {"check": f"gauge {GAUGE} with them open", "value": int(r.get("gauge_open", -1)), "op": "==",
         "threshold": n, "unit": ""},
        {"check": f"none closed by the server while idle ({r['idle_s']:g} s)",
         "value": o.get("unexpected_close_while_idle"), "op": "==", "threshold": 0, "unit": ""},
        {"check": f"server RSS added by {n:,} idle sockets", "value": r.get("rss_delta_mib"), "op": "<=",
         "threshold": TARGET_RSS_DELTA_MIB, "unit": "MiB"},
        {"check": f"gauge {GAUGE} after the client closed them", "value": int(r.get("gauge_closed", -1)),
         "op": "==", "threshold": 0, "unit": ""},
    ]
    for c in checks:
        v, t = c["value"], c["threshold"]
        c["pass"] = v is not None and (v <= t if c["op"] == "<=" else v == t)
    return checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=100, help="handshakes in flight at once")
    p.add_argument("--idle", type=float, default=35.0,
                   help="seconds to hold the sockets idle before measuring (35: past one 30 s server heartbeat)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before the other RSS readings")
    p.add_argument("--open-timeout", type=float, default=120.0)
    p.add_argument("--ws-idle-timeout", type=float, default=600.0, help="TIERDESK_WS_IDLE_TIMEOUT_SECONDS")
    p.add_argument("--models-dir", help="use the model in this directory (trained into it if it has none)")
    p.add_argument("--output", default=str(WS_JSON))
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    nofile = raise_nofile(max(20000, args.connections * 2 + 1000))
    if args.client:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(client_main(args.url, os.environ["WS_BENCH_TOKEN"], args.connections, args.concurrency,
                                args.open_timeout))
        return 0
    if nofile < args.connections + 1000:
        print(f"error: the open-files limit is {nofile}; {args.connections:,} sockets need more "
              "(ulimit -n)", file=sys.stderr)
        return 1

    install_signal_handlers()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": exe_command(argv),
        "connections": args.connections,
        "concurrency": args.concurrency,
        "ws_idle_timeout": args.ws_idle_timeout,
        "nofile_limit": nofile,
        "target_rss_delta_mib": TARGET_RSS_DELTA_MIB,
        "loadavg_start": loadavg(),
        "machine": machine(),
        "code": code_version(),
    }
    t_start = time.perf_counter()
    servers: list[Server] = []
    clients: list[ClientProc] = []
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-ws-bench-"))
    code = 0
    try:
        run(args, tmp, results, servers, clients)
    except KeyboardInterrupt:
        log("interrupted; stopping")
        code = 130
    except (BenchError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc!r}", file=sys.stderr)
        code = 1
    finally:
        for c in clients:
            try:
                c.stop()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                print(f"warning: could not stop the client: {exc!r}", file=sys.stderr)
        stop_servers(servers)
        discard_or_keep(tmp, code)
    if code != 0:
        return code
    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    results["loadavg_end"] = loadavg()
    results["other_processes_cores"] = [results["open_cpu"]["other_processes_cores"],
                                        results["idle_cpu"]["other_processes_cores"]]
    results["checks"] = evaluate(results)
    out = Path(args.output)
    out.write_text(json.dumps(results, indent=2) + "\n")
    doc = not args.no_doc and out.resolve() == WS_JSON.resolve()
    if doc:
        write_doc()
    print()
    print("\n".join(ws_markdown(results)))
    print()
    failed = [c for c in results["checks"] if not c["pass"]]
    log(f"results in {os.path.relpath(out, ROOT)}" + (f" and {os.path.relpath(DOC, ROOT)}" if doc else "")
        + f"; {len(results['checks']) - len(failed)} checks passed, {len(failed)} failed")
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())

"""TIERDESK_WORKERS=2 on PostgreSQL: two server processes share the port
and the work; a worker that dies is replaced while the other serves; every
acknowledged message is stored; whichever worker answers /metrics shows
both workers' series; SIGTERM stops them all. On SQLite the setting is
refused."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, func, select

from storage import tables as t
from tests.support.server import ADMIN, ROOT, Server, free_port


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(predicate, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("timed out")


def _sync(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def test_two_workers_share_the_port_survive_a_crash_and_stop_on_sigterm(
        postgres_database: str, trained_models: Path, tmp_path: Path) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(postgres_database)
    server = Server(postgres_database, trained_models, free_port(), tmp_path / "server.log", TIERDESK_WORKERS="2")
    server.start()
    assert server.proc is not None
    try:
        workers = _wait_for(lambda: len(_children(server.proc.pid)) == 2 and _children(server.proc.pid))
        # Both must be listening before the load, or one would take it all.
        time.sleep(3.0)
        before = {pid: _cpu_s(pid) for pid in workers}
        token = asyncio.run(_channel(server.url))
        acked = asyncio.run(_load(server.url, token, n=600, kill=None))
        used = {pid: _cpu_s(pid) - before[pid] for pid in workers}
        assert all(s > 0.1 for s in used.values()), used  # the kernel spread the connections over both

        # Whichever worker a scrape reaches, it shows both workers' counts
        # (published every second), and each worker's only go up.
        time.sleep(1.5)
        scrapes = [_scrape(server.url) for _ in range(8)]
        for scrape in scrapes:
            assert set(scrape["answers"]) == {"0", "1"}, scrape
            assert sum(scrape["answers"].values()) == len(acked)
            assert scrape["type_lines"] == scrape["families"]  # one header per metric
        metrics_dir = _worker_metrics_dir(workers[0])
        assert os.path.isdir(metrics_dir)

        # One worker dies mid-load: the other keeps answering, the
        # supervisor starts a replacement, nothing acknowledged is lost.
        acked += asyncio.run(_load(server.url, token, n=600, kill=workers[0], first_id=600))
        replaced = _wait_for(lambda: workers[0] not in _children(server.proc.pid)
                             and len(_children(server.proc.pid)) == 2 and _children(server.proc.pid))
        assert workers[1] in replaced
        time.sleep(1.5)
        after = _scrape(server.url)
        # The replacement took the number of the worker it replaced (on a fast
        # machine it may have come up after the load, with no answers yet).
        assert after["workers"] == {"0", "1"}
        assert after["answers"]["1"] > scrapes[-1]["answers"]["1"]
        engine = create_engine(_sync(postgres_database))
        with engine.connect() as conn:
            stored = set(conn.execute(select(t.messages.c.external_id)
                                      .where(t.messages.c.external_id.is_not(None))).scalars())
            assert conn.execute(select(func.count()).select_from(t.messages)
                                .where(t.messages.c.external_id.is_not(None))).scalar_one() == len(stored)
        engine.dispose()
        assert set(acked) <= stored, f"{len(set(acked) - stored)} acknowledged messages missing"
        assert len(acked) > 600

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(30) == 0
        assert not os.path.exists(metrics_dir)
        for pid in replaced:
            assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()
    finally:
        if server.proc.poll() is None:
            server.kill()  # its workers get SIGTERM when it dies (tierdesk/workers.py)


def _scrape(base: str) -> dict[str, Any]:
    """One /metrics scrape on a connection of its own (so any worker may
    answer): FAQ answers per worker, and the metric families' headers."""
    request = urllib.request.Request(f"{base}/metrics", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    answers: dict[str, float] = {}
    for line in text.splitlines():
        m = re.fullmatch(r'tierdesk_messages_total\{worker="(\d+)",action="answer"\} (\S+)', line)
        if m:
            answers[m.group(1)] = float(m.group(2))
    return {"answers": answers, "workers": set(re.findall(r'^tierdesk_agents_online\{worker="(\d+)"\}', text, re.M)),
            "type_lines": len(re.findall(r"^# TYPE ", text, re.M)),
            "families": len(set(re.findall(r"^# TYPE (\S+)", text, re.M)))}


def _worker_metrics_dir(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = fh.read().decode().split("\0")
    return argv[argv.index("--worker-metrics-dir") + 1]


async def _channel(base: str) -> str:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/admin/channels", json={"name": "w"},
                             headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            assert r.status == 201
            return str((await r.json())["token"])


async def _load(base: str, token: str, *, n: int, kill: int | None, first_id: int = 0) -> list[str]:
    """Sends n messages over 32 connections, retrying each until answered
    2xx; returns their ids. With ``kill``, SIGKILLs that worker a third of
    the way through."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        channel = {"Authorization": f"Bearer {token}"}
        acked: list[str] = []
        ids = iter(range(first_id, first_id + n))
        sent = 0

        async def one() -> None:
            nonlocal sent
            for i in ids:
                sent += 1
                if kill is not None and sent == n // 3:
                    os.kill(kill, signal.SIGKILL)
                body = {"message_id": f"m{i}", "conversation_id": f"c{i}", "customer": {"id": "u"},
                        "text": "how do I reset my password"}
                for _attempt in range(50):
                    try:
                        # A fresh connection each time: the kernel picks a worker per connection.
                        async with http.post(f"{base}/v1/messages", json=body,
                                             headers={**channel, "Connection": "close"}) as r:
                            await r.read()
                            if r.status == 200:
                                acked.append(f"m{i}")
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(one() for _ in range(32)))
        return acked


def test_several_workers_on_sqlite_are_refused(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tierdesk.cli", "serve"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "TIERDESK_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                                             "TIERDESK_WORKERS": "2"})
    assert result.returncode == 2
    assert "TIERDESK_WORKERS > 1 needs PostgreSQL" in result.stderr


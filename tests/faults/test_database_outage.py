"""PostgreSQL goes down under load: requests fail fast with 503 while it is
down, nothing acknowledged is lost, and the service recovers by itself.

This stops and starts the machine's PostgreSQL cluster, so it runs only in
`make faults` (which runs its tests one after another).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import create_engine, select

from storage import tables as t

from tests.support.server import ADMIN, Server, free_port

from .test_kill_durability import record

ROOT = Path(__file__).resolve().parents[2]


def _cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs a local PostgreSQL cluster managed by pg_ctlcluster")
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg(action: str, check: bool = True) -> None:
    subprocess.run([*_cluster(), action, *(["-m", "fast"] if action == "stop" else [])], check=check,
                   capture_output=True, timeout=60)


def _pg_running() -> bool:
    return subprocess.run([*_cluster(), "status"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("postgres_database")


def test_postgres_restart_under_load(pg_url: str, trained_models: Path, tmp_path: Path) -> None:
    from tests.conftest import _truncate_postgres

    _truncate_postgres(pg_url)
    server = Server(pg_url, trained_models, free_port(), tmp_path / "server.log")
    server.start()
    try:
        figures = asyncio.run(_drive(server, pg_url))
    finally:
        if not _pg_running():  # whatever happened, leave the machine's database running
            _pg("start")
        server.stop()
    record("postgres_outage", figures)


async def _drive(server: Server, db_url: str) -> dict[str, object]:
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        async with http.post(f"{base}/v1/admin/channels", json={"name": "outage"},
                             headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            token = (await r.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        acked: set[str] = set()
        during: list[tuple[int, float]] = []  # (status, seconds) while the database is down
        state = {"down": False, "n": 0}
        stop = asyncio.Event()

        async def client(worker: int) -> None:
            while not stop.is_set():
                state["n"] += 1
                mid = f"w{worker}-{state['n']}"
                body = {"message_id": mid, "conversation_id": mid, "customer": {"id": "u"},
                        "text": "how do I reset my password"}
                started = time.monotonic()
                was_down = state["down"]
                try:
                    async with http.post(f"{base}/v1/messages", json=body, headers=headers) as r:
                        await r.read()
                        status = r.status
                except aiohttp.ClientError:
                    status = 0
                if status == 200:
                    acked.add(mid)
                if was_down and state["down"]:
                    during.append((status, time.monotonic() - started))
                await asyncio.sleep(0.01)

        workers = [asyncio.create_task(client(i)) for i in range(16)]
        await asyncio.sleep(2.0)
        await asyncio.to_thread(_pg, "stop")
        state["down"] = True  # only requests sent and answered from now until the restart count
        await asyncio.sleep(4.0)
        state["down"] = False
        await asyncio.to_thread(_pg, "start")
        recovered_after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            before = len(acked)
            await asyncio.sleep(0.5)
            if len(acked) > before:
                recovered_after = time.monotonic() - t0
                break
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)

    assert during, "no request was answered while the database was down"
    statuses = {s for s, _ in during}
    assert statuses <= {503}, f"while down, expected only 503, got {statuses}"
    slowest = max(d for _, d in during)
    assert slowest < 5.0, f"a request took {slowest:.1f}s to fail while the database was down"
    assert recovered_after is not None, "the service did not recover after the database came back"
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        stored = {r[0] for r in conn.execute(select(t.messages.c.external_id).where(
            t.messages.c.external_id.is_not(None)))}
    engine.dispose()
    assert acked <= stored, f"{len(acked - stored)} acknowledged messages lost"
    return {"acknowledged": len(acked), "answered_while_down": len(during), "slowest_503_s": round(slowest, 3),
            "recovered_after_s": round(recovered_after, 2)}

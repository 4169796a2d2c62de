"""SIGTERM: stop taking requests, finish those in flight, write what the
group commit holds, exit within a bound."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
from sqlalchemy import create_engine, select

from storage import tables as t

from tests.support.server import ADMIN, Server, free_port

from .test_kill_durability import record

BOUND_SECONDS = 15.0


def test_sigterm_finishes_in_flight_requests_and_exits(db_url: str, trained_models: Path,
                                                      tmp_path: Path) -> None:
    server = Server(db_url, trained_models, free_port(), tmp_path / "server.log")
    server.start()
    try:
        figures = asyncio.run(_drive(server, db_url))
    finally:
        if server.proc and server.proc.poll() is None:
            server.kill()
    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    record(f"sigterm_{kind}", figures)


async def _drive(server: Server, db_url: str) -> dict[str, object]:
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        async with http.post(f"{base}/v1/admin/channels", json={"name": "term"},
                             headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            token = (await r.json())["token"]
        headers = {"Authorization": f"Bearer {token}"}

        results: list[tuple[str, int, float]] = []
        stop = asyncio.Event()
        counter = iter(range(10**9))

        async def one(i: int) -> tuple[str, int, float]:
            body = {"message_id": f"m{i}", "conversation_id": f"c{i}", "customer": {"id": "u"},
                    "text": "how do I reset my password"}
            try:
                async with http.post(f"{base}/v1/messages", json=body, headers=headers) as r:
                    await r.read()
                    return f"m{i}", r.status, time.monotonic()
            except aiohttp.ClientError:
                return f"m{i}", 0, time.monotonic()

        async def worker() -> None:
            while not stop.is_set():
                result = await one(next(counter))
                results.append(result)
                if result[1] == 0:
                    return

        # Keep-alive connections busy with requests, then SIGTERM mid-stream.
        workers = [asyncio.create_task(worker()) for _ in range(32)]
        await asyncio.sleep(1.0)
        assert server.proc is not None
        sent_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, BOUND_SECONDS + 5)
        exited_after = time.monotonic() - sent_at
        stop.set()
        await asyncio.gather(*workers)
        # ...and nothing new is taken once it has stopped.
        late = await one(10**9)

    assert code == 0, f"exit code {code}"
    assert exited_after < BOUND_SECONDS
    assert late[1] == 0
    acked = {mid for mid, status, _ in results if status == 200}
    statuses = {status for _, status, _ in results}
    finished_after_term = sum(1 for _, status, at in results if status == 200 and at > sent_at)
    assert statuses <= {200, 503, 0}, statuses
    engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        stored = {r[0] for r in conn.execute(select(t.messages.c.external_id).where(
            t.messages.c.external_id.is_not(None)))}
    engine.dispose()
    assert acked <= stored, f"{len(acked - stored)} acknowledged messages lost at shutdown"
    assert finished_after_term > 0, "no request in flight at SIGTERM was finished"
    return {"requests": len(results), "acknowledged": len(acked),
            "answered_after_sigterm": finished_after_term, "refused_or_reset": len(results) - len(acked),
            "exit_seconds": round(exited_after, 2)}

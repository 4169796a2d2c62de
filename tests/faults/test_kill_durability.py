"""No acknowledged message is lost when the server is killed (SIGKILL) under
load, and every unacknowledged one can be retried safely.

A real server process, a real load generator, real kills, on a SQLite file
and on the PostgreSQL at 127.0.0.1:5432. Bounded: a few kills, a few
thousand messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import aiohttp
from sqlalchemy import create_engine, func, select

from storage import tables as t
from tests.support.server import ADMIN, ROOT, Server, free_port

KILLS = int(os.environ.get("TIERDESK_FAULT_KILLS", "4"))
CONCURRENCY = 32
REPORT = ROOT / "var" / "faults-last-run.json"


async def _run(server: Server, db_url: str) -> dict[str, int]:
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(f"{base}/v1/admin/channels", json={"name": "faults"},
                             headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            channel = await r.json()
        headers = {"Authorization": f"Bearer {channel['token']}"}
        texts = ["how do I reset my password", "what are your opening hours",
                 "I was charged twice for my order and want my money back"]
        acked: set[str] = set()
        sent: list[str] = []
        stop = asyncio.Event()
        counter = iter(range(10**9))

        statuses: dict[str, int] = {}

        async def one(mid: str) -> bool:
            body = {"message_id": mid, "conversation_id": f"conv-{mid}", "customer": {"id": f"u-{mid}"},
                    "text": f"{random.choice(texts)} ({mid})"}
            try:
                async with http.post(f"{base}/v1/messages", json=body, headers=headers) as r:
                    await r.read()
                    statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
                    return r.status == 200
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                return False

        limit = asyncio.Semaphore(CONCURRENCY)

        async def bounded(mid: str) -> bool:
            async with limit:
                return await one(mid)

        async def client() -> None:
            while not stop.is_set():
                mid = f"m{next(counter)}"
                sent.append(mid)
                if await one(mid):
                    acked.add(mid)
                else:
                    await asyncio.sleep(0.05)

        workers = [asyncio.create_task(client()) for _ in range(CONCURRENCY)]
        for _ in range(KILLS):
            await asyncio.sleep(random.uniform(0.8, 2.0))
            server.kill()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(server.start)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*workers)

        # Every acknowledged message is stored exactly once.
        engine = create_engine(db_url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            stored = {r[0] for r in conn.execute(select(t.messages.c.external_id).where(
                t.messages.c.external_id.is_not(None)))}
            dupes = conn.execute(select(func.count()).select_from(
                select(t.messages.c.external_id).where(t.messages.c.external_id.is_not(None))
                .group_by(t.messages.c.channel_id, t.messages.c.external_id)
                .having(func.count() > 1).subquery())).scalar_one()
        lost = acked - stored
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {sorted(lost)[:5]}"
        assert dupes == 0

        # Every message that got no answer can be retried safely.
        unacked = [m for m in sent if m not in acked]
        statuses.clear()
        retried = await asyncio.gather(*(bounded(m) for m in unacked))
        assert all(retried), f"{retried.count(False)} retries failed: {statuses}"
        again = await asyncio.gather(*(bounded(m) for m in random.sample(sent, min(200, len(sent)))))
        assert all(again)
        with engine.connect() as conn:
            inbound = conn.execute(select(func.count()).select_from(t.messages).where(
                t.messages.c.external_id.is_not(None))).scalar_one()
        engine.dispose()
        assert inbound == len(set(sent))
        return {"sent": len(sent), "acknowledged": len(acked), "found_after_kills": len(acked & stored),
                "stored_unacknowledged": len(stored - acked), "retried": len(unacked), "kills": KILLS}


def test_sigkill_under_load_loses_no_acknowledged_message(db_url: str, trained_models: Path,
                                                         tmp_path: Path) -> None:
    server = Server(db_url, trained_models, free_port(), tmp_path / "server.log")
    server.start()
    try:
        figures = asyncio.run(_run(server, db_url))
    finally:
        server.stop()
    assert figures["acknowledged"] > 100, figures
    kind = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    record(f"kill_{kind}", figures)


def record(name: str, figures: dict) -> None:
    """Keep the figures of the last run for docs/reliability.md."""
    REPORT.parent.mkdir(exist_ok=True)
    report = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    report[name] = figures
    REPORT.write_text(json.dumps(report, indent=2))
    print(name, figures)

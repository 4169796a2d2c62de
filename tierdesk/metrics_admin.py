"""`tierdesk metrics rebuild` and `tierdesk metrics seed`.

rebuild: recompute the hourly rollups from the event log (after changing an
SLA, or to repair rollups written by several instances touching one
conversation). seed: fill a database with synthetic traffic, for the
metrics benchmark (a week of a busy help desk is about a million messages).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select

from router.changes import Changes
from router.ids import new_id
from router.metrics import SLA
from router.rollups import Deltas, tally_events
from router.tracker import EventKind, TrackerEvent
from storage import tables as t
from storage.engine import create_engines
from storage.store import SqlStore, event_from, event_row

Progress = Callable[[str], None]


async def rebuild(database_url: str, sla: SLA, progress: Progress = print, chunk: int = 2000) -> int:
    """Replace every rollup row with what the event log says. Returns the
    number of conversations replayed. Run it with the service stopped (or
    accept that increments written meanwhile are recomputed too)."""
    engines = create_engines(database_url)
    store = SqlStore(engines)
    try:
        async with engines.reading() as conn:
            ids = list((await conn.execute(select(t.events.c.conversation_id).distinct())).scalars())
        async with engines.writing() as conn:
            await conn.execute(delete(t.metric_rollups))
            await conn.execute(delete(t.metric_histograms))
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            async with engines.reading() as conn:
                rows = (await conn.execute(
                    select(t.events).where(t.events.c.conversation_id.in_(part))
                    .order_by(t.events.c.conversation_id, t.events.c.at, t.events.c.seq)
                )).mappings().all()
            _, deltas = tally_events((event_from(r) for r in rows), sla)
            await _write_rollups(store, deltas)
            progress(f"rebuilt {min(i + chunk, len(ids))}/{len(ids)} conversations")
        return len(ids)
    finally:
        await store.close()
        await engines.dispose()


async def _write_rollups(store: SqlStore, deltas: Deltas) -> None:
    changes = Changes(generation=store.committer.generation_floor)
    changes.rollup = deltas
    await store.commit(changes)


def _synthetic(n_messages: int, days: float, end: float, seed: int) -> Any:
    """Conversations of 1–4 customer messages: 70% answered by the bot, the
    rest handed off, queued for a while, answered by one of 40 agents."""
    rng = random.Random(seed)
    start = end - days * 86400
    channels = ["web", "app", "wechat"]
    agents = [f"agt_seed_{i:02d}" for i in range(40)]
    reasons = ["low_confidence", "needs_human", "customer_asked", "repeated_miss"]
    made = 0
    while made < n_messages:
        cid, ch = new_id("conv"), rng.choice(channels)
        t0 = rng.uniform(start, end - 3600)
        k = min(rng.choice((1, 1, 2, 2, 3, 4)), n_messages - made)
        events: list[TrackerEvent] = []
        messages: list[dict[str, Any]] = []
        at = t0
        handoff = rng.random() < 0.3
        hid: str | None = None
        agent: str | None = None
        for j in range(k):
            mid = new_id("msg")
            human = handoff and j == k - 1
            tier = "human" if human else "bot"
            events.append(TrackerEvent(EventKind.MESSAGE_RECEIVED, at, ch, cid, message_id=mid, data={"tier": tier}))
            messages.append({"id": mid, "channel_id": ch, "conversation_id": cid, "sender": "customer",
                             "text": f"synthetic question {made + j}", "at": at, "external_id": mid,
                             "tier": tier, "outcome": "answer" if tier == "bot" else "queued",
                             "replied_at": None})
            if tier == "bot":
                reply = at + rng.uniform(0.01, 0.4)
                events.append(TrackerEvent(EventKind.BOT_ANSWERED, reply, ch, cid, message_id=new_id("msg"),
                                           data={"in_reply_to": mid, "faq_id": "faq", "confidence": 0.9}))
                messages[-1]["replied_at"] = reply
                at = reply + rng.expovariate(1 / 30)
            else:
                hid, agent = new_id("ho"), rng.choice(agents)
                events.append(TrackerEvent(EventKind.HANDOFF_REQUESTED, at, ch, cid, handoff_id=hid,
                                           data={"reason": rng.choice(reasons), "skill": "general"}))
                assigned = at + rng.expovariate(1 / 20)
                events.append(TrackerEvent(EventKind.ASSIGNED, assigned, ch, cid, handoff_id=hid, agent_id=agent))
                replied = assigned + rng.expovariate(1 / 25)
                events.append(TrackerEvent(EventKind.AGENT_REPLIED, replied, ch, cid, handoff_id=hid,
                                           agent_id=agent, message_id=new_id("msg")))
                messages[-1]["replied_at"] = replied
                at = replied + rng.expovariate(1 / 40)
                break
        # The bot's conversations end idle; an agent resolves the handed-off ones.
        ended = {"by": "agent", "abandoned": False} if hid else {"by": "idle"}
        events.append(TrackerEvent(EventKind.RESOLVED, at + 60, ch, cid, handoff_id=hid, agent_id=agent,
                                   data=ended))
        made += len(messages)
        yield events, messages


async def seed(database_url: str, n_messages: int, days: float, sla: SLA, progress: Progress = print,
               seed_value: int = 1) -> dict[str, Any]:
    engines = create_engines(database_url)
    store = SqlStore(engines)
    started = time.monotonic()
    try:
        batch_events: list[TrackerEvent] = []
        batch_messages: list[dict[str, Any]] = []
        done = 0

        async def flush() -> None:
            nonlocal batch_events, batch_messages
            _, deltas = tally_events(batch_events, sla)
            async with engines.writing() as conn:
                await conn.execute(t.messages.insert(), batch_messages)
                await conn.execute(t.events.insert(), [event_row(e) for e in batch_events])
            await _write_rollups(store, deltas)
            batch_events, batch_messages = [], []

        for events, messages in _synthetic(n_messages, days, time.time(), seed_value):
            batch_events += events
            batch_messages += messages
            if len(batch_messages) >= 20_000:
                done += len(batch_messages)
                await flush()
                progress(f"seeded {done}/{n_messages} messages ({time.monotonic() - started:.0f} s)")
        if batch_messages:
            done += len(batch_messages)
            await flush()
        if engines.dialect == "postgresql":
            # Fresh bulk data has no planner statistics yet.
            async with engines.writing() as conn:
                await conn.exec_driver_sql("ANALYZE")
        async with engines.reading() as conn:
            total = (await conn.execute(select(func.count()).select_from(t.messages))).scalar_one()
        progress(f"seeded {done} messages; the database now holds {total}")
        return {"seeded": done, "messages": total, "seconds": round(time.monotonic() - started, 1)}
    finally:
        await store.close()
        await engines.dispose()

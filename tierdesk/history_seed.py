"""`tierdesk metrics seed --history`: weeks of synthetic human-tier history
for the demo, so that `tierdesk simulate --from-db` and `tierdesk staffing`
have something to read on a fresh install.

The history is itself simulated with the real router (router/simulation.py):
a contact-centre week (a morning and an afternoon peak, quieter Fridays,
thin weekends, some noise from day to day) for the demo's three skills, on a
roster planned the way many desks plan: each hour staffed for its nominal
load at 80 % occupancy, one agent fewer over lunch. Each handoff is stored
as the service would have stored it: conversation, handoff, the customer's
message and the agent's reply, the tracker's events and the metric rollups.
Its channel is `history-seed`; seeding twice is refused.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import func, select

from router.history import SLOT_SECONDS
from router.metrics import SLA
from router.model import Handoff
from router.rollups import tally_events
from router.simulation import (
    AgentSpec,
    Exponential,
    LogNormal,
    SkillTraffic,
    Simulation,
    day_shape,
    poisson_arrivals,
)
from router.tracker import EventKind, TrackerEvent
from storage import tables as t
from storage.engine import create_engines
from storage.store import SqlStore, event_row

from .metrics_admin import _write_rollups

CHANNEL = "history-seed"
CONCURRENCY = 3
DAY = 86400.0
# Handoffs an hour at the morning peak of a Monday–Thursday, handling time
# (lognormal: mean, cv) and mean patience, per skill.
SKILLS = {
    "billing": (40.0, (420.0, 1.0), 300.0),
    "tech": (28.0, (600.0, 0.8), 420.0),
    "general": (55.0, (300.0, 1.2), 240.0),
}
WEEKDAY = (1.0, 1.0, 1.0, 0.95, 0.85, 0.4, 0.3)  # Monday first
REASONS = ("low_confidence", "needs_human", "customer_asked", "repeated_miss")

Progress = Callable[[str], None]


def plan_history(start: float, days: int, seed: int) -> tuple[list[SkillTraffic], list[AgentSpec]]:
    rng = random.Random(seed)
    per_day = int(DAY // SLOT_SECONDS)
    traffic, roster = [], []
    for skill, (peak, (handle, cv), patience) in SKILLS.items():
        rates: list[float] = []
        staffed: list[int] = []  # agents per slot over the whole span
        for d in range(days):
            weekday = int(((start + d * DAY) // DAY + 3) % 7)  # 1970-01-01 was a Thursday
            nominal = [peak / 3600 * WEEKDAY[weekday] * day_shape(i) for i in range(per_day)]
            noise = max(0.5, rng.gauss(1.0, 0.08))
            rates += [r * noise for r in nominal]
            for hour in range(24):
                load = sum(nominal[hour * 4:(hour + 1) * 4]) / 4 * handle
                n = max(1, math.ceil(load / (CONCURRENCY * 0.8)))
                if hour == 12 and weekday < 5:
                    n = max(1, n - 1)
                staffed += [n] * 4
        traffic.append(SkillTraffic(skill, rates, LogNormal(handle, cv), Exponential(patience), vip_share=0.05))
        for i in range(max(staffed)):
            spans: list[list[float]] = []
            for s, n in enumerate(staffed):
                if n > i:
                    a = start + s * SLOT_SECONDS
                    if spans and spans[-1][1] == a:
                        spans[-1][1] = a + SLOT_SECONDS
                    else:
                        spans.append([a, a + SLOT_SECONDS])
            roster.append(AgentSpec(f"agt_hist_{skill}_{i:02d}", frozenset({skill}), CONCURRENCY,
                                    tuple((a, b) for a, b in spans)))
    return traffic, roster


def _rows(h: Handoff, rng: random.Random, n: int) -> tuple[dict, dict, list[dict], list[TrackerEvent]]:
    cid, mid = f"conv_hist_{n:07d}", f"msg_hist_{n:07d}"
    reason = rng.choice(REASONS)
    events = [
        TrackerEvent(EventKind.MESSAGE_RECEIVED, h.requested_at, CHANNEL, cid, message_id=mid, data={"tier": "human"}),
        TrackerEvent(EventKind.HANDOFF_REQUESTED, h.requested_at, CHANNEL, cid, handoff_id=h.id,
                     data={"reason": reason, "skill": h.skill}),
    ]
    messages = [{"id": mid, "channel_id": CHANNEL, "conversation_id": cid, "sender": "customer",
                 "text": f"a question for a person ({h.skill})", "at": h.requested_at, "external_id": mid,
                 "agent_id": None, "tier": "human", "outcome": reason, "replied_at": None}]
    if h.assigned_at is None or h.assigned_at > h.requested_at:
        events.append(TrackerEvent(EventKind.QUEUED, h.requested_at, CHANNEL, cid, handoff_id=h.id,
                                   data={"skill": h.skill}))
    first_reply = None
    if h.assigned_at is not None:
        assert h.resolved_at is not None
        events.append(TrackerEvent(EventKind.ASSIGNED, h.assigned_at, CHANNEL, cid, handoff_id=h.id,
                                   agent_id=h.agent_id, data={"skill": h.skill}))
        handle = h.resolved_at - h.assigned_at
        first_reply = h.assigned_at + min(0.8 * handle, rng.expovariate(1 / 25))
        reply = f"{mid}_r"
        events.append(TrackerEvent(EventKind.AGENT_REPLIED, first_reply, CHANNEL, cid, message_id=reply,
                                   handoff_id=h.id, agent_id=h.agent_id))
        messages.append({"id": reply, "channel_id": CHANNEL, "conversation_id": cid, "sender": "agent",
                         "text": "Let me look into that.", "at": first_reply, "external_id": None,
                         "agent_id": h.agent_id, "tier": "human", "outcome": None, "replied_at": None})
        messages[0]["replied_at"] = first_reply
    by, abandoned = ("agent", False) if h.assigned_at is not None else ("customer", True)
    end = h.resolved_at if h.resolved_at is not None else h.requested_at
    events.append(TrackerEvent(EventKind.RESOLVED, end, CHANNEL, cid, handoff_id=h.id, agent_id=h.agent_id,
                               data={"by": by, "abandoned": abandoned}))
    conversation = {"id": cid, "channel_id": CHANNEL, "external_id": cid, "customer_id": f"cust_hist_{n:07d}",
                    "customer_name": None, "customer_vip": h.vip, "status": "resolved", "created_at": h.requested_at,
                    "updated_at": end, "bot_streak": 0, "handoff_count": 1, "handoff_id": h.id, "agent_id": None,
                    "version": 1}
    handoff = {"id": h.id, "conversation_id": cid, "channel_id": CHANNEL, "seq": 1, "reason": reason,
               "skill": h.skill, "requested_at": h.requested_at, "vip": h.vip, "agent_id": h.agent_id,
               "assigned_at": h.assigned_at, "first_reply_at": first_reply, "resolved_at": end}
    return conversation, handoff, messages, events


async def seed_history(database_url: str, weeks: int, sla: SLA, *, seed: int = 1, end: float | None = None,
                       progress: Progress = print) -> dict[str, Any]:
    """``weeks`` of history ending at ``end`` (default: the start of today, UTC)."""
    end = math.floor((end if end is not None else time.time()) / DAY) * DAY
    start = end - weeks * 7 * DAY
    engines = create_engines(database_url)
    store = SqlStore(engines)
    try:
        async with engines.reading() as conn:
            already = (await conn.execute(select(func.count()).select_from(t.handoffs)
                                          .where(t.handoffs.c.channel_id == CHANNEL))).scalar_one()
        if already:
            progress(f"history already seeded ({already} handoffs of channel {CHANNEL}); nothing done")
            return {"seeded": 0, "already": already}
        traffic, roster = plan_history(start, weeks * 7, seed)
        progress(f"simulating {weeks} weeks of handoffs on a roster of {len(roster)} agents")
        result = Simulation(roster, seed=seed, keep=True).run(
            poisson_arrivals(traffic, seed=seed, start=start, until=end, slot_seconds=SLOT_SECONDS))
        rng = random.Random(seed)
        batch: tuple[list, list, list, list] = ([], [], [], [])
        done = 0

        async def flush() -> None:
            conversations, handoffs, messages, events = batch
            tallies, deltas = tally_events(events, sla)
            for c in conversations:
                c["tally"] = orjson.dumps(tallies[c["id"]].snapshot()).decode()
            async with engines.writing() as conn:
                await conn.execute(t.conversations.insert(), conversations)
                await conn.execute(t.handoffs.insert(), handoffs)
                await conn.execute(t.messages.insert(), messages)
                await conn.execute(t.events.insert(), [event_row(e) for e in events])
            await _write_rollups(store, deltas)
            for part in batch:
                part.clear()

        for n, h in enumerate(result.handoffs):
            h.id = f"ho_hist_{n:07d}"
            if h.resolved_at is None:  # still waiting at the end: never answered
                h.resolved_at = end
            conversation, handoff, messages, events = _rows(h, rng, n)
            batch[0].append(conversation)
            batch[1].append(handoff)
            batch[2].extend(messages)
            batch[3].extend(events)
            if len(batch[0]) >= 5000:
                done += len(batch[0])
                await flush()
                progress(f"stored {done}/{len(result.handoffs)} handoffs")
        if batch[0]:
            done += len(batch[0])
            await flush()
        if engines.dialect == "postgresql":
            async with engines.writing() as conn:
                await conn.exec_driver_sql("ANALYZE")
        summary = result.summary(samples=False, per_agent=False)
        progress(f"stored {done} handoffs from {_day(start)} to {_day(end)}")
        return {"seeded": done, "from": _day(start), "to": _day(end), "agents": len(roster),
                "service_level": summary["service_level"], "abandonment": summary["abandonment"]}
    finally:
        await store.close()
        await engines.dispose()


def _day(t: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))

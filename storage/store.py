"""The SQL adapter of the Store port: reads, and batches of Changes written
with a handful of statements each."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from router.changes import Changes, MessageRecord
from router.model import (
    Agent,
    AgentStatus,
    Conversation,
    ConversationStatus,
    Handoff,
    Sender,
    Tier,
)
from router.metrics import SLA
from router import rollup_report
from router.rollups import ConversationTally, hour_of, tally_events
from router.tracker import EventKind, TrackerEvent
from router.errors import CapacityExceeded, Conflict

from . import tables as t
from .batch_loader import BatchLoader
from .engine import Engines
from .errors import SomeRefused, Unstorable
from .group_commit import GroupCommitter
from .lease import SweepLease
from .lookup import PostgresConversationKeys, conversation_keys
from .pg_writer import PgWriter
from .rows import CapacityRefused, ChangesRefused, ConversationChanged, conversation_from_rows, handoff_from_row
from .sqlite_writer import SqliteWriter
from .statements import Statements


def _refusal(why: CapacityRefused | ConversationChanged) -> Conflict:
    if isinstance(why, CapacityRefused):
        return CapacityExceeded(f"agent {why.agent_id!r} would exceed capacity")
    return Conflict(f"conversation {why.conversation_id!r} was changed by another instance",
                    code="conversation_changed")


class SqlStore:
    def __init__(self, engines: Engines, *, max_batch: int = 1000, origin: str | None = None,
                 commit_linger: float = 0.0) -> None:
        """``origin``: this instance's name on the PostgreSQL relay; when set,
        each commit tells the other instances what it changed
        (storage/notify.py). ``commit_linger``: seconds a batch may wait for
        more (storage/group_commit.py)."""
        self.engines = engines
        self.origin = origin
        self._sql = Statements(engines.write.dialect)
        self.committer = GroupCommitter(self._write_batch, max_batch=max_batch, linger=commit_linger)
        self._sqlite = (SqliteWriter(engines.sqlite_path, engines.sqlite_synchronous, self._sql.sqlite_texts())
                        if engines.sqlite_path is not None else None)
        self._postgresql = None if self._sqlite is not None else PgWriter(engines, self._sql, origin=origin)
        self._conversation_loader: BatchLoader[tuple[str, str], Conversation] = BatchLoader(
            self._load_conversations
        )
        self._conversation_keys = conversation_keys(engines)
        self._sweep_lease = SweepLease(engines)

    async def prepare(self) -> None:
        """What is worth doing before serving: on SQLite, the writer's
        process and the filter of the stored conversation keys
        (storage/key_filter.py)."""
        if self._sqlite is not None:
            await self._sqlite.start()
        await self._conversation_keys.prepare()

    def relay_listening(self) -> None:
        """PostgreSQL: the relay listens (again), and passes on, through
        stored_elsewhere, every key other instances store from now on: the
        filter of stored keys is built (again; conversation_keys_built)."""
        if isinstance(self._conversation_keys, PostgresConversationKeys):
            self._conversation_keys.listening()

    async def conversation_keys_built(self) -> None:
        """Waits for the filter of stored keys a relay_listening started."""
        if isinstance(self._conversation_keys, PostgresConversationKeys):
            await self._conversation_keys.built()

    def stored_elsewhere(self, keys: Iterable[tuple[str, str]]) -> None:
        """Conversation keys another instance stored (storage/notify.py, created_keys)."""
        self._conversation_keys.note(keys)

    async def close(self) -> None:
        await self.committer.close()
        if self._sqlite is not None:
            await self._sqlite.close()
        if self._postgresql is not None:
            await self._postgresql.close()
        await self._conversation_keys.close()
        await self._sweep_lease.close()

    @property
    def stepwise_batches(self) -> int:
        """PostgreSQL batches that were not written as one statement."""
        return self._postgresql.stepwise_batches if self._postgresql is not None else 0

    # ------------------------------------------------------------------ write
    async def commit(self, changes: Changes) -> None:
        await self.committer.commit(changes)

    async def _write_batch(self, batch: Sequence[Changes]) -> list[bool]:
        try:
            try:
                if self._sqlite is not None:
                    return await self._sqlite.write(batch)
                assert self._postgresql is not None
                return await self._postgresql.write(batch)
            finally:
                # New conversations, written or refused (then they may exist
                # all the same): either way the look-up asks the database
                # about them from now on. Older ones were stored before.
                self._conversation_keys.note(
                    (s.channel_id, s.external_id) for c in batch for s in c.conversations.values() if s.version == 1)
        except ChangesRefused as e:
            if len(batch) == 1:
                raise _refusal(e.refused[0]) from e
            raise SomeRefused({i: _refusal(why) for i, why in e.refused.items()}) from e
        except (CapacityRefused, ConversationChanged) as e:
            raise _refusal(e) from e
        except sqlite3.IntegrityError as e:  # PostgreSQL's become a Conflict in engine.writing()
            raise Conflict("that would clash with existing data") from e
        except (UnicodeError, sqlite3.DataError, sqlite3.InterfaceError, OverflowError) as e:
            # A value the driver could not bind (a lone surrogate, an integer
            # past 64 bits): about the change, not the database.
            raise Unstorable(f"the database cannot store a value of this change ({type(e).__name__})") from e

    # ------------------------------------------------------------------- read
    async def load_agents(self, ids: Collection[str] | None = None) -> list[Agent]:
        q = select(t.agents).order_by(t.agents.c.id)
        if ids is not None:
            q = q.where(t.agents.c.id.in_(list(ids)))
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [
            Agent(id=r["id"], name=r["name"], skills=frozenset(r["skills"]), capacity=r["capacity"],
                  status=AgentStatus(r["status"]), open_count=r["open_count"], idle_since=r["idle_since"],
                  disabled_at=r["disabled_at"], presence_lost_at=r["presence_lost_at"],
                  missed_reservations=r["missed_reservations"], levels=r["skill_levels"] or {})
            for r in rows
        ]

    async def load_open_conversations(self) -> list[Conversation]:
        async with self.engines.reading() as conn:
            q = (
                select(t.conversations, t.handoffs)
                .join(t.handoffs, t.handoffs.c.id == t.conversations.c.handoff_id)
                .where(t.handoffs.c.resolved_at.is_(None))
            )
            rows = (await conn.execute(q)).all()
            convs = [conversation_from_rows(r[: len(t.conversations.c)], r[len(t.conversations.c):]) for r in rows]
            await self._hydrate(conn, convs)
        return convs

    async def load_conversation(self, channel_id: str, external_id: str) -> Conversation | None:
        # Concurrent requests' look-ups share one query: under load, most
        # messages start a conversation the database has never seen, and a
        # round trip each would cap the service at the read pool's pace.
        key = (channel_id, external_id)
        if self._conversation_keys.surely_absent(key):
            return None
        return await self._conversation_loader.get(key)

    async def _load_conversations(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], Conversation]:
        # Mostly new conversations: ask cheaply which exist, load only those.
        keys = list(await self._conversation_keys.existing(keys))
        if not keys:
            return {}
        key = tuple_(t.conversations.c.channel_id, t.conversations.c.external_id)
        found = await self._load_where(key.in_(keys[i : i + 400]) for i in range(0, len(keys), 400))
        return {(c.channel_id, c.external_id): c for c in found}

    async def load_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        found = await self._load_where([t.conversations.c.id == conversation_id], answers=False)
        return found[0] if found else None

    async def load_conversations_by_id(self, ids: Collection[str]) -> list[Conversation]:
        ids = list(ids)
        if not ids:
            return []
        return await self._load_where((t.conversations.c.id.in_(ids[i : i + 400]) for i in range(0, len(ids), 400)),
                                      answers=False)

    async def _load_where(self, conditions: Iterable[Any], answers: bool = True) -> list[Conversation]:
        """The conversations each condition selects, with their handoffs (and
        the answers given in them, if ``answers``)."""
        found: list[Conversation] = []
        n = len(t.conversations.c)
        async with self.engines.reading() as conn:
            for where in conditions:
                q = (
                    select(t.conversations, t.handoffs)
                    .outerjoin(t.handoffs, t.handoffs.c.id == t.conversations.c.handoff_id)
                    .where(where)
                )
                found += [conversation_from_rows(row[:n], row[n:] if row[n] is not None else None)
                          for row in (await conn.execute(q)).all()]
            await self._hydrate(conn, found, answers)
        return found

    async def _hydrate(self, conn: AsyncConnection, convs: list[Conversation], answers: bool = True) -> None:
        """Give loaded conversations what lives only in memory while they are
        in play: the answers already given (for retries; a retry of one not
        read here is recognised by the database, more slowly) and, where the
        row holds no tally (written before migration 0022), the metric tally
        rebuilt from their events."""
        if not convs:
            return
        by_id = {c.id: c for c in convs}
        ids = list(by_id) if answers else []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = select(t.messages.c.conversation_id, t.messages.c.external_id, t.messages.c.response).where(
                t.messages.c.conversation_id.in_(chunk),
                t.messages.c.external_id.is_not(None),
            ).order_by(t.messages.c.conversation_id, t.messages.c.at)
            for cid, ext, response in (await conn.execute(q)).all():
                if response is not None:
                    by_id[cid].remember_answer(ext, response)
        untallied = [c.id for c in convs if c.tally is None]
        for i in range(0, len(untallied), 500):
            chunk = untallied[i : i + 500]
            events = [event_from(r) for r in (await conn.execute(
                select(t.events).where(t.events.c.conversation_id.in_(chunk))
                .order_by(t.events.c.conversation_id, t.events.c.at, t.events.c.seq)
            )).mappings().all()]
            tallies, _ = tally_events(events, SLA())
            for cid in chunk:
                by_id[cid].tally = tallies.get(cid) or ConversationTally(by_id[cid].channel_id)

    async def stored_answer(self, channel_id: str, external_id: str) -> dict[str, Any] | None:
        async with self.engines.reading() as conn:
            q = select(t.messages.c.response).where(
                t.messages.c.channel_id == channel_id, t.messages.c.external_id == external_id
            )
            return (await conn.execute(q)).scalar_one_or_none()

    async def history(self, conversation_id: str, limit: int) -> list[MessageRecord]:
        async with self.engines.reading() as conn:
            q = (
                select(t.messages)
                .where(t.messages.c.conversation_id == conversation_id)
                .order_by(t.messages.c.at.desc(), t.messages.c.id.desc())
                .limit(limit)
            )
            rows = (await conn.execute(q)).mappings().all()
        out = [
            MessageRecord(
                id=r["id"], channel_id=r["channel_id"], conversation_id=r["conversation_id"],
                sender=Sender(r["sender"]), text=r["text"], at=r["at"], external_id=r["external_id"],
                agent_id=r["agent_id"], tier=Tier(r["tier"]) if r["tier"] else None, intent=r["intent"],
                confidence=r["confidence"], in_reply_to=r["in_reply_to"],
            )
            for r in rows
        ]
        # Newest first to apply the limit, then oldest first to read. Ids
        # are creation-ordered, so a bot answer stamped with the same instant
        # as its question still follows it.
        out.reverse()
        return out

    async def customer_handoffs(self, channel_id: str, customer_id: str, limit: int) -> list[Handoff]:
        """The customer's handoffs on this channel (every conversation of
        theirs), newest first."""
        c, h = t.conversations, t.handoffs
        async with self.engines.reading() as conn:
            q = (
                select(h)
                .join(c, c.c.id == h.c.conversation_id)
                .where(c.c.channel_id == channel_id, c.c.customer_id == customer_id)
                .order_by(h.c.requested_at.desc(), h.c.id.desc())
                .limit(limit)
            )
            rows = (await conn.execute(q)).all()
        return [handoff_from_row(r) for r in rows]

    async def leads_idle_sweep(self) -> bool:
        return await self._sweep_lease.held()

    async def keep_present(self, agent_ids: Collection[str], until: float) -> None:
        """These agents have a connection to this instance: their presence
        holds until ``until`` unless renewed (by this or another instance)."""
        if not agent_ids:
            return
        a = t.agents
        async with self.engines.writing() as conn:
            # Never shorten what another instance holding a connection set.
            await conn.execute(update(a).where(a.c.id.in_(sorted(agent_ids)),
                                               (a.c.present_until.is_(None)) | (a.c.present_until < until))
                               .values(present_until=until))

    async def containment_since(self, start: float) -> tuple[int, int]:
        """(conversations the bot kept, conversations started) in the rollup
        hours from ``start`` on."""
        r = t.metric_rollups
        q = (select(r.c.name, func.sum(r.c.value)).where(r.c.hour >= start,
                                                         r.c.name.in_(("bot.contained", "episodes.started")))
             .group_by(r.c.name))
        async with self.engines.reading() as conn:
            sums = {name: int(v or 0) for name, v in (await conn.execute(q)).all()}
        return sums.get("bot.contained", 0), sums.get("episodes.started", 0)

    async def presence_lapsed(self, now: float) -> list[str]:
        """Agents whose presence ran out and who are not yet marked gone."""
        a = t.agents
        q = select(a.c.id).where(a.c.present_until < now, a.c.presence_lost_at.is_(None),
                                 a.c.disabled_at.is_(None)).order_by(a.c.id)
        async with self.engines.reading() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    async def idle_conversations(self, before: float, limit: int) -> list[str]:
        h = t.handoffs
        # A message left for a full queue waits for its reply however long
        # (router/services.py): not idle, so never among the first found.
        left_waiting = (select(h.c.id).where(h.c.id == t.conversations.c.handoff_id, h.c.left_message,
                                             h.c.first_reply_at.is_(None), h.c.resolved_at.is_(None)).exists())
        async with self.engines.reading() as conn:
            q = (
                select(t.conversations.c.id)
                .where(t.conversations.c.status != ConversationStatus.RESOLVED.value,
                       t.conversations.c.updated_at < before, ~left_waiting)
                .order_by(t.conversations.c.updated_at)
                .limit(limit)
            )
            return list((await conn.execute(q)).scalars().all())

    async def events_between(self, start: float, end: float) -> list[TrackerEvent]:
        """Every event of each conversation that has an event in [start, end),
        so replies after the range still count for messages inside it."""
        async with self.engines.reading() as conn:
            touched = (
                select(t.events.c.conversation_id)
                .where(t.events.c.at >= start, t.events.c.at < end)
                .distinct()
                .scalar_subquery()
            )
            q = select(t.events).where(t.events.c.conversation_id.in_(touched)).order_by(
                t.events.c.at, t.events.c.seq
            )
            rows = (await conn.execute(q)).mappings().all()
        return [event_from(r) for r in rows]

    async def rollup_rows(self, start: float, end: float) -> tuple[list[tuple[float, str, str, float]],
                                                                   list[tuple[float, str, str, np.ndarray]]]:
        r, h = t.metric_rollups, t.metric_histograms
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(r.c.hour, r.c.channel_id, r.c.name, r.c.value)
                                       .where(r.c.hour >= start, r.c.hour < end))).all()
            hists = (await conn.execute(select(h.c.hour, h.c.channel_id, h.c.stat, h.c.counts)
                                        .where(h.c.hour >= start, h.c.hour < end))).all()
        return ([tuple(row) for row in rows],  # type: ignore[misc]
                [(hour, ch, stat, rollup_report.decode(blob)) for hour, ch, stat, blob in hists])

    async def pending(self, now: float, sla: SLA, start: float, end: float) -> dict[tuple[float, str], dict[str, int]]:
        """Messages and first responses still inside their SLA with no reply:
        left out of the rates until due. Only the last SLA window can hold
        them, so this reads a handful of rows through partial indexes."""
        out: dict[tuple[float, str], dict[str, int]] = {}

        def bump(at: float, channel: str, kind: str) -> None:
            slot = out.setdefault((hour_of(at), channel), {})
            slot[kind] = slot.get(kind, 0) + 1

        m, h = t.messages, t.handoffs
        since = max(start, now - max(sla.bot_seconds, sla.human_seconds))
        first_since = max(start, now - sla.human_first_response_seconds)
        if sla.hours:
            # Business hours stop the human tier's clocks: a handoff left
            # unanswered overnight may still be inside its SLA, so the whole
            # range is looked at (a report's range is at most 31 days).
            since = first_since = start
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(m.c.at, m.c.channel_id, m.c.tier, m.c.conversation_id, m.c.outcome).where(
                m.c.replied_at.is_(None), m.c.external_id.is_not(None), m.c.at >= since, m.c.at < end,
            ))).all()
            skills = await self._handoff_skills(conn, {r[3] for r in rows if r[2] == "human"}) if sla.hours else {}
            for at, channel, tier, conversation_id, outcome in rows:
                if tier not in ("bot", "human"):
                    continue
                skill = _skill_of(skills.get(conversation_id, []), at, caused=outcome not in ("forwarded", "queued"))
                if sla.elapsed(Tier(tier), skill, at, now) <= sla.for_tier(Tier(tier)):
                    bump(at, channel, tier)
            rows = (await conn.execute(select(h.c.requested_at, h.c.channel_id, h.c.skill).where(
                h.c.first_reply_at.is_(None), h.c.requested_at >= first_since, h.c.requested_at < end,
            ))).all()
            for at, channel, skill in rows:
                if sla.elapsed(Tier.HUMAN, skill, at, now) <= sla.human_first_response_seconds:
                    bump(at, channel, "first")
        return out

    @staticmethod
    async def _handoff_skills(conn: Any, conversation_ids: set[str]) -> dict[str, list[tuple[float, str]]]:
        """Per conversation, its handoffs' (request time, skill) in order."""
        h = t.handoffs
        out: dict[str, list[tuple[float, str]]] = {}
        ids = sorted(conversation_ids)
        for i in range(0, len(ids), 500):
            rows = (await conn.execute(select(h.c.conversation_id, h.c.requested_at, h.c.skill).where(
                h.c.conversation_id.in_(ids[i:i + 500])).order_by(h.c.requested_at))).all()
            for cid, at, skill in rows:
                out.setdefault(cid, []).append((at, skill))
        return out

    async def ping(self) -> None:
        async with self.engines.reading() as conn:
            await conn.execute(select(1))

    async def count(self, table: str) -> int:
        async with self.engines.reading() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.metadata.tables[table]))).scalar_one())


def _skill_of(handoffs: list[tuple[float, str]], at: float, *, caused: bool) -> str | None:
    """The skill of the handoff a human-tier customer message at ``at``
    belongs to: the one it caused (requested as it was decided, at or just
    after it), else the last one requested by then."""
    if caused:
        return next((s for requested_at, s in handoffs if requested_at >= at), None)
    skill = None
    for requested_at, s in handoffs:
        if requested_at > at:
            break
        skill = s
    return skill


# ------------------------------------------------------------------- mapping
def event_from(r: Any) -> TrackerEvent:
    return TrackerEvent(kind=EventKind(r["kind"]), at=r["at"], channel_id=r["channel_id"],
                        conversation_id=r["conversation_id"], message_id=r["message_id"],
                        handoff_id=r["handoff_id"], agent_id=r["agent_id"], data=r["data"] or {})


def event_row(e: TrackerEvent) -> dict[str, Any]:
    """An event as a Core insert row, for writes outside the group commit
    (the seeding command, tierdesk/metrics_admin.py)."""
    return {
        "at": e.at, "kind": e.kind.value, "channel_id": e.channel_id, "conversation_id": e.conversation_id,
        "message_id": e.message_id, "handoff_id": e.handoff_id, "agent_id": e.agent_id, "data": dict(e.data),
    }

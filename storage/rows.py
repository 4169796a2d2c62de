"""A batch's changes as the rows the group commit writes: tuples of plain
values in the order of the columns in storage/statements.py.

Both writers take them, built on the event loop: SQLite's sends them to its
own process, which runs them through a plain sqlite3 connection
(storage/sqlite_batch.py, which, like this module, imports no SQLAlchemy);
PostgreSQL's turns them into one array per column.
"""

from __future__ import annotations

import copyreg
import dataclasses
import operator
import orjson
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from router.changes import AgentProfile, Changes, ConversationState, MessageRecord, OutboxItem
from router.model import Conversation, ConversationStatus, Customer, Handoff, HandoffReason
from router.rollups import ConversationTally, HistogramDelta
from router.tracker import TrackerEvent

Row = tuple[Any, ...]
# (hour, channel id, stat or name)
RollupKey = tuple[float, str, str]


@dataclass(slots=True)
class ChangeRows:
    """One request's changes as rows (router.changes.Changes, flattened)."""

    inbound: Row | None
    new_agents: list[Row]
    agents: dict[str, Row]
    conversations: dict[str, Row]
    handoffs: dict[str, Row]
    load: dict[str, int]
    messages: list[Row]
    events: list[Row]
    outbox: list[Row]
    rollups: dict[RollupKey, float]
    histograms: dict[RollupKey, HistogramDelta]
    replied: list[tuple[float, str]]
    verdicts: list[tuple[str, str]]

    @classmethod
    def of(cls, c: Changes) -> ChangeRows:
        return cls(
            inbound=message_row(c.inbound) if c.inbound is not None else None,
            new_agents=[new_agent_row(a) for a in c.new_agents],
            agents={k: profile_row(a) for k, a in c.agents.items()},
            conversations={k: conversation_row(s, c.tallies.get(k)) for k, s in c.conversations.items()},
            handoffs={k: handoff_row(h) for k, h in c.handoffs.items()},
            load=c.load_deltas,
            messages=[message_row(m) for m in c.messages],
            events=[event_row(e) for e in c.events],
            outbox=[outbox_row(o) for o in c.outbox],
            rollups=dict(c.rollup.values),
            histograms=c.rollup.hist,
            replied=[(at, mid) for mid, at in c.rollup.replied],
            verdicts=[(v, mid) for mid, v in c.verdicts],
        )

    def __reduce__(self) -> tuple[type[ChangeRows], tuple[Any, ...]]:
        return ChangeRows, _CHANGE_ROWS_FIELDS(self)


# Pickled (to SQLite's writer process) as the class and its fields' values in
# order: pickle's default for a slotted instance writes and reads a dict of
# its slots per instance. -4 us to pickle and -4.5 us to unpickle a FAQ
# message's rows (timeit, a batch of 22, 2026-12-05).
_CHANGE_ROWS_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(ChangeRows)))
_HISTOGRAM_FIELDS = operator.attrgetter(*(f.name for f in dataclasses.fields(HistogramDelta)))
copyreg.pickle(HistogramDelta, lambda h: (HistogramDelta, _HISTOGRAM_FIELDS(h)))


@dataclass(slots=True)
class BatchRows:
    """What a batch's live changes write after their inbound messages and
    agents, merged across the batch as the statements take it."""

    conversations: list[Row]
    # Per conversation row, the version the database must hold for it to be
    # written: the one its first change in the batch was decided on (0: a
    # new conversation, inserted).
    conversation_bases: list[int]
    # Closed ones first: a conversation's next handoff may be opened in the
    # same batch, and only one may be open at a time.
    handoffs: list[Row]
    # (agent id, net delta), none zero, removals first.
    load: list[tuple[str, int]]
    messages: list[Row]
    events: list[Row]
    outbox: list[Row]
    histograms: dict[RollupKey, HistogramDelta]
    rollups: list[tuple[float, str, str, float]]
    replied: list[tuple[float, str]]
    verdicts: list[tuple[str, str]]

    @classmethod
    def of(cls, live: Sequence[ChangeRows]) -> BatchRows:
        conversations: dict[str, Row] = {}
        bases: dict[str, int] = {}
        handoffs: dict[str, Row] = {}
        net: dict[str, int] = {}
        rollup: dict[RollupKey, float] = {}
        hist: dict[RollupKey, HistogramDelta] = {}
        for c in live:
            for cid, row in c.conversations.items():
                conversations[cid] = row
                bases.setdefault(cid, row[CONVERSATION_VERSION] - 1)
            handoffs.update(c.handoffs)
            for agent_id, d in c.load.items():
                net[agent_id] = net.get(agent_id, 0) + d
            for key, value in c.rollups.items():
                rollup[key] = rollup.get(key, 0.0) + value
            for key, delta in c.histograms.items():
                mine = hist.get(key)
                if mine is None:
                    mine = hist[key] = HistogramDelta()
                mine.merge(delta)
        return cls(
            conversations=list(conversations.values()),
            conversation_bases=[bases[cid] for cid in conversations],
            handoffs=sorted(handoffs.values(), key=lambda h: h[HANDOFF_RESOLVED_AT] is None),
            # By agent id: every writer locks agents' rows in one order, so two
            # instances' batches cannot deadlock on them.
            load=[(a, d) for a, d in sorted(net.items()) if d != 0],
            messages=[m for c in live for m in c.messages],
            events=[e for c in live for e in c.events],
            outbox=[o for c in live for o in c.outbox],
            histograms=hist,
            rollups=[(h, ch, n, v) for (h, ch, n), v in sorted(rollup.items())],
            replied=[r for c in live for r in c.replied],
            verdicts=[v for c in live for v in c.verdicts],
        )

    def held(self) -> list[str]:
        """The conversations the human tier holds after the batch."""
        return [r[0] for r in self.conversations if r[CONVERSATION_STATUS] in HELD_STATUSES]

    def marks(self) -> list[tuple[str, float | None, str | None]]:
        """Replies and verdicts as one row per message, (id, replied_at,
        verdict) with None for "leave as is": one UPDATE may not change a row
        twice. The last of each wins, as when they were run one by one."""
        out: dict[str, list[Any]] = {}
        for at, mid in self.replied:
            out.setdefault(mid, [None, None])[0] = at
        for v, mid in self.verdicts:
            out.setdefault(mid, [None, None])[1] = v
        return [(mid, at, v) for mid, (at, v) in out.items()]


class ConversationChanged(Exception):
    """A conversation was changed (or created) by another writer since this
    batch's changes to it were decided; the batch is rolled back."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(conversation_id)
        self.conversation_id = conversation_id


def check_conversations(rows: BatchRows, written: set[str]) -> None:
    """Raises ConversationChanged unless every conversation row was written."""
    for row in rows.conversations:
        if row[0] not in written:
            raise ConversationChanged(row[0])


class CapacityRefused(Exception):
    """An agent's load would have gone over capacity; the batch is rolled back."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(agent_id)
        self.agent_id = agent_id


class ChangesRefused(Exception):
    """Some of a batch's changes were refused, each named by its place in the
    batch with why; the batch is rolled back, and the others would go in
    without them."""

    def __init__(self, refused: dict[int, ConversationChanged | CapacityRefused]) -> None:
        super().__init__(refused)
        self.refused = refused


def refused_changes(batch: Sequence[ChangeRows], rows: BatchRows, written: set[str], moved: set[str],
                    loads: Callable[[list[str]], dict[str, tuple[int, int]]]
                    ) -> dict[int, ConversationChanged | CapacityRefused]:
    """The changes of a batch (``rows``, of which ``written`` conversations
    and the load of ``moved`` agents went in) that writing them one by one,
    in order, would refuse: each touching a conversation another writer
    changed, and each addition to an agent's load that does not fit over
    what ``loads`` reads as stored (agent → open count, capacity). Empty
    when all of them fit after all (the stored loads moved meanwhile)."""
    refused: dict[int, ConversationChanged | CapacityRefused] = {}
    changed = {row[0] for row in rows.conversations} - written
    for i, c in enumerate(batch):
        hit = next((cid for cid in c.conversations if cid in changed), None)
        if hit is not None:
            refused[i] = ConversationChanged(hit)
    full = sorted({agent_id for agent_id, d in rows.load if d > 0} - moved)
    stored = loads(full) if full else {}
    for agent_id in full:
        count, capacity = stored.get(agent_id, (0, -1))  # no such agent: nothing fits
        for i, c in enumerate(batch):
            d = c.load.get(agent_id, 0)
            if d == 0 or i in refused:
                continue
            if d > 0 and count + d > capacity:
                refused[i] = CapacityRefused(agent_id)
            else:
                count = max(count + d, 0)
    return refused


def live_changes(batch: Sequence[ChangeRows], stored: set[str]) -> tuple[list[bool], list[ChangeRows]]:
    """Per change, whether its inbound message was stored before (it is not
    among the ids the inbound insert returned); and the changes that were not."""
    duplicates = [c.inbound is not None and c.inbound[0] not in stored for c in batch]
    return duplicates, [c for c, dup in zip(batch, duplicates, strict=True) if not dup]


def agent_rows(live: Sequence[ChangeRows]) -> tuple[list[Row], list[Row]]:
    """New agents' rows, and the latest settings of the others."""
    profiles: dict[str, Row] = {}
    for c in live:
        profiles.update(c.agents)
    return [a for c in live for a in c.new_agents], list(profiles.values())


def touched_agents(new_agents: Sequence[Row], profiles: Sequence[Row], load: Sequence[tuple[str, int]]) -> list[str]:
    """The agents a batch created, re-set or moved the load of (agent_rows'
    rows: the id first in a new agent's, last in a profile's)."""
    return list({*(a[0] for a in new_agents), *(a[-1] for a in profiles), *(a for a, _ in load)})


def check_capacity(load: Sequence[tuple[str, int]], moved: set[str]) -> None:
    """Raises CapacityRefused if an addition to an agent's load was refused
    (it would have gone over capacity): the database, not only the
    dispatcher, is the guard that holds across instances."""
    for agent_id, d in load:
        if d > 0 and agent_id not in moved:
            raise CapacityRefused(agent_id)


def _json(value: Any) -> str:
    # orjson: rows are built on the event loop, and json.dumps was 3.8 % of
    # its samples on the PostgreSQL FAQ path (py-spy, before 2479648).
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def message_row(m: MessageRecord) -> Row:
    return (m.id, m.channel_id, m.conversation_id, m.sender.value, m.text, m.at, m.external_id, m.agent_id,
            m.tier.value if m.tier else None, m.intent, m.confidence, m.in_reply_to, _json(m.response), m.outcome,
            m.replied_at)


# The position of replied_at in message_row's rows.
MESSAGE_REPLIED_AT = 14


def event_row(e: TrackerEvent) -> Row:
    return (e.at, e.kind.value, e.channel_id, e.conversation_id, e.message_id, e.handoff_id, e.agent_id,
            _json(e.data))


def outbox_row(o: OutboxItem) -> Row:
    return (o.idempotency_key, o.channel_id, o.conversation_id, o.kind, _json(o.payload), o.at, "pending", 0, o.at)


def new_agent_row(a: AgentProfile) -> Row:
    return (a.id, a.name, _json(sorted(a.skills)), a.capacity, _status(a), 0, a.idle_since, a.idle_since,
            a.disabled_at, a.presence_lost_at, a.missed_reservations, _json(dict(sorted(a.levels.items()))))


def profile_row(a: AgentProfile) -> Row:
    return (a.name, _json(sorted(a.skills)), a.capacity, _status(a), a.idle_since, a.disabled_at,
            a.presence_lost_at, a.missed_reservations, _json(dict(sorted(a.levels.items()))), a.id)


def _status(a: Any) -> str:
    return a.status if isinstance(a.status, str) else a.status.value


def conversation_row(s: ConversationState, tally: list[Any] | None) -> Row:
    return (s.id, s.channel_id, s.external_id, s.customer.id, s.customer.name, s.customer.vip, s.status.value,
            s.created_at, s.updated_at, s.bot_streak, s.handoff_count, s.handoff_id, s.agent_id, s.version, s.rating,
            s.message_offer, None if tally is None else _json(tally))


CONVERSATION_STATUS = 6
HELD_STATUSES = (ConversationStatus.QUEUED.value, ConversationStatus.ASSIGNED.value)
CONVERSATION_HANDOFF_ID = 11
CONVERSATION_VERSION = 13
CONVERSATION_TALLY = 16


def conversation_from_rows(c: Sequence[Any], h: Sequence[Any] | None) -> Conversation:
    """The conversation a conversation row and its handoff's row (None: not
    given) describe, as written (conversation_row, handoff_row) or as read
    (their tables' columns are in the same order). The tally may come as
    its JSON text or already parsed."""
    (cid, channel_id, external_id, customer_id, customer_name, customer_vip, status, created_at, updated_at,
     bot_streak, handoff_count, _handoff_id, _agent_id, version, rating, message_offer, tally) = c
    if isinstance(tally, str):
        tally = orjson.loads(tally)
    return Conversation(
        id=cid, channel_id=channel_id, external_id=external_id,
        customer=Customer(customer_id, customer_name, bool(customer_vip)), created_at=created_at,
        status=ConversationStatus(status), updated_at=updated_at, bot_streak=bot_streak,
        handoff_count=handoff_count, handoff=None if h is None else handoff_from_row(h), version=version,
        rating=rating, message_offer=message_offer,
        tally=None if tally is None else ConversationTally.restore(channel_id, tally),
    )


def handoff_from_row(h: Sequence[Any]) -> Handoff:
    (hid, conversation_id, channel_id, seq, reason, skill, requested_at, vip, agent_id, assigned_at,
     first_reply_at, resolved_at, weight, slots, left_message) = h
    return Handoff(hid, conversation_id, channel_id, seq, HandoffReason(reason), skill, requested_at, bool(vip),
                   agent_id, assigned_at, first_reply_at, resolved_at, weight, slots, bool(left_message))


HANDOFF_RESOLVED_AT = 11


def handoff_row(h: Handoff) -> Row:
    return (h.id, h.conversation_id, h.channel_id, h.seq, h.reason.value, h.skill, h.requested_at, h.vip,
            h.agent_id, h.assigned_at, h.first_reply_at, h.resolved_at, h.weight, h.slots, h.left_message)

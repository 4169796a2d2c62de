"""In-memory fakes of the Desk's ports: the Store and the Classifier.

FakeStore keeps what a commit wrote the way the SQL store does (tables of
rows, copies rather than the Desk's live objects) and enforces the same
guarantees: a commit is all or nothing, an inbound message id is stored once
(DuplicateMessage), an agent's open count never goes over capacity and a
conversation has at most one open handoff; a change over a stale copy of a
conversation is refused too. Refusals raise ChangeRefused, as the group
committer reports a change the database refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from router.changes import AgentProfile, Changes, ConversationState, MessageRecord, OutboxItem
from router.model import Agent, AgentStatus, Conversation, ConversationStatus, Handoff
from router.ports import DuplicateMessage
from router.rollups import ConversationTally
from router.tracker import EventKind, TrackerEvent
from tierdesk.errors import ChangeRefused, Unavailable


# ---------------------------------------------------------------- classifier
@dataclass(frozen=True, slots=True)
class Prediction:
    intent_id: str = "unknown"
    confidence: float = 0.1
    threshold: float = 0.5
    answer: str | None = None
    skill: str | None = None
    needs_human: bool = False
    out_of_scope: bool = False
    weight: int = 1
    language: str | None = None


UNSURE = Prediction()


def faq(intent_id: str, answer: str, *, skill: str | None = None, confidence: float = 0.9,
        language: str = "en") -> Prediction:
    return Prediction(intent_id=intent_id, confidence=confidence, answer=answer, skill=skill, language=language)


def needs_person(intent_id: str, skill: str, *, confidence: float = 0.9) -> Prediction:
    return Prediction(intent_id=intent_id, confidence=confidence, skill=skill, needs_human=True)


class FakeClassifier:
    """Scripted predictions by exact text; anything else gets ``default``.

    ``latency`` seconds pass on ``clock`` during each classification, so tests
    can tell the message's arrival from the bot's answer."""

    def __init__(self, script: dict[str, Prediction] | None = None, *, default: Prediction = UNSURE,
                 clock: Any = None, latency: float = 0.0) -> None:
        self.script = dict(script or {})
        self.default = default
        self.clock = clock
        self.latency = latency
        self.calls: list[str] = []
        self.locales: list[str | None] = []

    def says(self, text: str, prediction: Prediction) -> None:
        self.script[text] = prediction

    async def classify(self, text: str, locale: str | None = None) -> Prediction:
        self.calls.append(text)
        self.locales.append(locale)
        if self.latency and self.clock is not None:
            self.clock.advance(self.latency)
        return self.script.get(text, self.default)


# --------------------------------------------------------------------- store
@dataclass(slots=True)
class _AgentRow:
    profile: AgentProfile
    open_count: int = 0


@dataclass(slots=True)
class _Tables:
    agents: dict[str, _AgentRow] = field(default_factory=dict)
    conversations: dict[str, ConversationState] = field(default_factory=dict)
    tallies: dict[str, list[Any] | None] = field(default_factory=dict)  # stored with each conversation
    handoffs: dict[str, Handoff] = field(default_factory=dict)
    inbound: dict[tuple[str, str], MessageRecord] = field(default_factory=dict)
    messages: list[MessageRecord] = field(default_factory=list)
    events: list[TrackerEvent] = field(default_factory=list)
    outbox: list[OutboxItem] = field(default_factory=list)

    def copy(self) -> _Tables:
        return _Tables(
            agents={k: _AgentRow(r.profile, r.open_count) for k, r in self.agents.items()},
            conversations=dict(self.conversations), tallies=dict(self.tallies), handoffs=dict(self.handoffs),
            inbound=dict(self.inbound),
            messages=list(self.messages), events=list(self.events), outbox=list(self.outbox),
        )


class FakeStore:
    """The Store port in memory. ``commits`` holds every Changes it stored."""

    def __init__(self) -> None:
        self.t = _Tables()
        self.commits: list[Changes] = []
        self.attempts = 0
        self._failures: list[BaseException] = []
        self.leads_sweep = True  # False: another instance ends idle conversations

    # ---------------------------------------------------------- test helpers
    def seed_agent(self, agent_id: str, skills: Sequence[str] = ("general",), capacity: int = 2, *,
                   open_count: int = 0, status: AgentStatus = AgentStatus.ONLINE,
                   idle_since: float = 0.0) -> None:
        """An agent already in the database (created by an earlier run)."""
        profile = AgentProfile(agent_id, agent_id, frozenset(skills), capacity, status.value, idle_since)
        self.t.agents[agent_id] = _AgentRow(profile, open_count)

    def fail_next_commit(self, exc: BaseException | None = None) -> None:
        self._failures.append(exc or Unavailable("the database could not store the change; retry"))

    def open_count(self, agent_id: str) -> int:
        return self.t.agents[agent_id].open_count

    def set_open_count(self, agent_id: str, n: int) -> None:
        """Another instance took or freed a slot."""
        self.t.agents[agent_id].open_count = n

    def conversation_id(self, channel_id: str, external_id: str) -> str:
        for s in self.t.conversations.values():
            if (s.channel_id, s.external_id) == (channel_id, external_id):
                return s.id
        raise KeyError((channel_id, external_id))

    def conversation_state(self, channel_id: str, external_id: str) -> ConversationState:
        return self.t.conversations[self.conversation_id(channel_id, external_id)]

    def handoff_of(self, channel_id: str, external_id: str) -> Handoff:
        state = self.conversation_state(channel_id, external_id)
        assert state.handoff_id is not None
        return self.t.handoffs[state.handoff_id]

    @property
    def events(self) -> list[TrackerEvent]:
        return self.t.events

    def event_kinds(self, conversation_id: str | None = None) -> list[EventKind]:
        return [e.kind for e in self.t.events if conversation_id in (None, e.conversation_id)]

    # ------------------------------------------------------------------ write
    async def commit(self, changes: Changes) -> None:
        self.attempts += 1
        if self._failures:
            raise self._failures.pop(0)
        if changes.inbound is not None:
            key = (changes.inbound.channel_id, changes.inbound.external_id or "")
            if key in self.t.inbound:
                raise DuplicateMessage()
        new = self.t.copy()
        for p in changes.new_agents:
            new.agents[p.id] = _AgentRow(p, 0)
        for p in changes.agents.values():
            new.agents[p.id].profile = p
        for s in changes.conversations.values():
            stored = new.conversations.get(s.id)
            if stored is None and any((o.channel_id, o.external_id) == (s.channel_id, s.external_id)
                                      for o in new.conversations.values()):
                raise ChangeRefused("that would clash with existing data; retry")
            if (stored.version if stored else 0) != s.version - 1:
                raise ChangeRefused(f"conversation {s.id!r} was changed by another instance; retry")
            new.conversations[s.id] = s
            new.tallies[s.id] = changes.tallies.get(s.id)
        new.handoffs.update({h.id: dataclasses.replace(h) for h in changes.handoffs.values()})
        for agent_id, d in changes.load_deltas.items():
            row = new.agents[agent_id]
            if d > 0 and row.open_count + d > row.profile.capacity:
                raise ChangeRefused(f"agent {agent_id!r} would exceed capacity; retry")
            row.open_count = max(0, row.open_count + d)
        open_per_conversation: dict[str, int] = {}
        for h in new.handoffs.values():
            if h.resolved_at is None:
                open_per_conversation[h.conversation_id] = open_per_conversation.get(h.conversation_id, 0) + 1
        if any(n > 1 for n in open_per_conversation.values()):
            raise ChangeRefused("a conversation would have two open handoffs; retry")
        if changes.inbound is not None:
            new.inbound[(changes.inbound.channel_id, changes.inbound.external_id or "")] = changes.inbound
            new.messages.append(changes.inbound)
        new.messages.extend(changes.messages)
        new.events.extend(changes.events)
        new.outbox.extend(changes.outbox)
        self.t = new
        self.commits.append(changes)

    # ------------------------------------------------------------------- read
    async def load_agents(self, ids: Collection[str] | None = None) -> list[Agent]:
        return [
            Agent(id=r.profile.id, name=r.profile.name, skills=r.profile.skills, capacity=r.profile.capacity,
                  status=AgentStatus(r.profile.status), open_count=r.open_count, idle_since=r.profile.idle_since,
                  disabled_at=r.profile.disabled_at, presence_lost_at=r.profile.presence_lost_at,
                  missed_reservations=r.profile.missed_reservations, levels=dict(r.profile.levels))
            for k, r in sorted(self.t.agents.items()) if ids is None or k in ids
        ]

    def _conversation(self, s: ConversationState, answers: bool = True) -> Conversation:
        """As the SQL store gives it: by id, without the answers given in it."""
        handoff = dataclasses.replace(self.t.handoffs[s.handoff_id]) if s.handoff_id else None
        tally = self.t.tallies.get(s.id)
        given = {m.external_id: dict(m.response) for m in self.t.inbound.values()
                 if answers and m.conversation_id == s.id and m.external_id and m.response is not None}
        return Conversation(
            id=s.id, channel_id=s.channel_id, external_id=s.external_id, customer=s.customer,
            created_at=s.created_at, status=s.status, updated_at=s.updated_at, bot_streak=s.bot_streak,
            handoff_count=s.handoff_count, handoff=handoff, answers=given, version=s.version,
            tally=None if tally is None else ConversationTally.restore(s.channel_id, tally),
        )

    async def load_open_conversations(self) -> list[Conversation]:
        return [
            self._conversation(s) for s in self.t.conversations.values()
            if s.handoff_id is not None and self.t.handoffs[s.handoff_id].resolved_at is None
        ]

    async def load_conversation(self, channel_id: str, external_id: str) -> Conversation | None:
        for s in self.t.conversations.values():
            if (s.channel_id, s.external_id) == (channel_id, external_id):
                return self._conversation(s)
        return None

    async def load_conversation_by_id(self, conversation_id: str) -> Conversation | None:
        s = self.t.conversations.get(conversation_id)
        return None if s is None else self._conversation(s, answers=False)

    async def load_conversations_by_id(self, ids: Collection[str]) -> list[Conversation]:
        return [self._conversation(self.t.conversations[i], answers=False) for i in ids if i in self.t.conversations]

    async def stored_answer(self, channel_id: str, external_id: str) -> dict[str, Any] | None:
        m = self.t.inbound.get((channel_id, external_id))
        return None if m is None or m.response is None else dict(m.response)

    async def history(self, conversation_id: str, limit: int) -> list[MessageRecord]:
        mine = [m for m in self.t.messages if m.conversation_id == conversation_id]
        return mine[-limit:]

    async def customer_handoffs(self, channel_id: str, customer_id: str, limit: int) -> list[Handoff]:
        theirs = {s.id for s in self.t.conversations.values()
                  if s.channel_id == channel_id and s.customer.id == customer_id}
        found = [dataclasses.replace(h) for h in self.t.handoffs.values() if h.conversation_id in theirs]
        return sorted(found, key=lambda h: (h.requested_at, h.id), reverse=True)[:limit]

    async def leads_idle_sweep(self) -> bool:
        return self.leads_sweep

    async def idle_conversations(self, before: float, limit: int) -> list[str]:
        idle = [s for s in self.t.conversations.values()
                if s.status is not ConversationStatus.RESOLVED and s.updated_at < before]
        return [s.id for s in sorted(idle, key=lambda s: s.updated_at)[:limit]]

    async def events_between(self, start: float, end: float) -> list[TrackerEvent]:
        touched = {e.conversation_id for e in self.t.events if start <= e.at < end}
        return sorted((e for e in self.t.events if e.conversation_id in touched), key=lambda e: e.at)


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def to_agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        self.sent.append((agent_id, payload))

    def of_type(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(a, p) for a, p in self.sent if p.get("type") == kind]

"""Use cases: what happens when a customer writes, an agent acts, time passes.

The Desk owns the in-memory working set (agents, the waiting queue, the
conversations in play; its machinery is router/working_set.py) and is the
only writer of it. Each use case runs its
decision synchronously on the event loop, so no two requests interleave
inside one, records what changed in a Changes, and awaits the store's group
commit before answering. A change the database refuses (an agent's
capacity, a conversation changed by another instance) leaves memory ahead
of it for what that change touched: those are read again before the next
use case. A database failure fails every change in flight: what they
touched is read again, and the generation moves on so that nothing decided
before is committed.

With several instances on one database, each is told which conversations and
agents the others' commits changed (``changed_elsewhere``) and reads those
afresh. A decision made on a copy that was stale all the same is refused by
the database, stores nothing, and is decided again on what is stored
(``DECISIONS_PER_REQUEST``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from router.errors import ChangeRefused, Conflict, Forbidden, InvalidInput, NotFound, Unavailable

from . import policy as hp
from .attendance import AttendanceRules, lapsed_reservations, leaving_with
from .business_hours import iso_utc
from .live import live_view
from .changes import AgentProfile, Changes, MessageRecord, OutboxItem
from .ids import new_id
from .model import (
    Agent,
    AgentStatus,
    Conversation,
    ConversationStatus,
    Customer,
    Handoff,
    HandoffReason,
    Sender,
    Tier,
)
from .ports import AgentRepliesOnly, Classifier, Clock, DuplicateMessage, Notices, Notifier, Store
from .metrics import SLA
from .queue_limits import QueueFull, over_limit
from .routing import Assignment, Dispatcher, Fallback
from .tracker import EndedBy, EventKind, TrackerEvent
from .working_set import WorkingSet, _Effects

# How many times one request's use case is decided at most. A change the
# database refuses (another instance changed the conversation or took the
# agent's last slot first) stored nothing, and what it touched is read again
# before the next decision, which is then made on what is stored and almost
# always goes through: the caller need not see the refusal.
DECISIONS_PER_REQUEST = 3

P = ParamSpec("P")
T = TypeVar("T")


# Not frozen: one is made per message (router/changes.py says why).
@dataclass(slots=True)
class IncomingMessage:
    message_id: str
    conversation_id: str
    customer: Customer
    text: str
    sent_at: float | None = None
    # The customer's language as the channel knows it ("zh-CN"; None: it
    # does not), preferred over the language the text looks written in.
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class DeskConfig:
    default_skill: str = "general"
    max_bot_answers: int = 2
    vip_to_human: bool = False
    human_phrases: tuple[str, ...] = hp.DEFAULT_HUMAN_PHRASES
    conversation_cache_size: int = 20_000
    sla: SLA = SLA()
    history_limit: int = 500
    attendance: AttendanceRules = AttendanceRules()
    # Per skill, the skills a waiting handoff widens to (router/rules.py).
    fallback: Mapping[str, tuple[Fallback, ...]] = field(default_factory=dict)
    # How much of an agent's capacity a VIP's conversation takes (the
    # rules file's ``vip_weight``); a heavy intent may weigh more.
    vip_weight: int = 1
    # Per skill, customers waiting live at most (router/queue_limits.py).
    queue_limits: Mapping[str, int] = field(default_factory=dict)


def _decided_again_if_refused(
    use_case: Callable[Concatenate[Desk, P], Awaitable[T]],
) -> Callable[Concatenate[Desk, P], Awaitable[T]]:
    @functools.wraps(use_case)
    async def decide(desk: Desk, /, *args: P.args, **kwargs: P.kwargs) -> T:
        decisions = 1
        while True:
            try:
                return await use_case(desk, *args, **kwargs)
            except ChangeRefused:
                if decisions >= DECISIONS_PER_REQUEST:
                    raise
                decisions += 1
                desk.decided_again += 1

    return decide


def _message_awaits_reply(conv: Conversation) -> bool:
    """A message left for a full queue that no agent has answered yet: it
    waits for its turn however long that takes, so neither the customer
    leaving nor the idle timeout ends it."""
    h = conv.handoff
    return h is not None and h.is_open and h.left_message and h.first_reply_at is None


class NullNotifier:
    def to_agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        pass


class Desk(WorkingSet):
    def __init__(
        self,
        store: Store,
        classifier: Classifier,
        clock: Clock,
        config: DeskConfig = DeskConfig(),
        notifier: Notifier | None = None,
        notices: Notices | None = None,
    ) -> None:
        self.store = store
        self.notices: Notices = notices or AgentRepliesOnly()
        self.classifier = classifier
        self.clock = clock
        self.config = config
        self.notifier: Notifier = notifier or NullNotifier()
        self.policy = hp.HandoffPolicy(
            default_skill=config.default_skill,
            human_phrases=config.human_phrases,
            max_bot_answers=config.max_bot_answers,
            vip_to_human=config.vip_to_human,
        )
        self.dispatcher = Dispatcher(fallback=config.fallback)
        self._init_working_set()
        self.decided_again = 0  # use cases decided anew after a refusal
        # Customer messages decided here, by action; a re-sent message that
        # gets its stored answer again is not counted twice.
        self.messages_decided: dict[str, int] = {}

    async def _rebalance(self) -> None:
        """Assign what waits while agents have free slots: after a reload
        (a failed commit, a restart) nothing else would trigger it."""
        made = self.dispatcher.drain(self.clock.now())
        if made:
            changes, effects = Changes(generation=self.generation), _Effects()
            touched = self._record_assignments(made, changes, effects)
            await self._commit(changes, touched, effects)

    # ------------------------------------------------------------- customers
    @_decided_again_if_refused
    async def receive_message(self, channel_id: str, msg: IncomingMessage) -> dict[str, Any]:
        received_at = self.clock.now()
        key = (channel_id, msg.message_id)
        conv = await self._conversation(channel_id, msg.conversation_id, msg.customer)
        gen = self.generation
        answered = conv.answers.get(msg.message_id)
        if answered is not None:
            return answered
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        # Kept in memory while the message is decided on it.
        self._in_use[conv.id] = self._in_use.get(conv.id, 0) + 1
        try:
            response = await self._process_customer_message(gen, conv, msg, received_at)
            action = response["action"]
            self.messages_decided[action] = self.messages_decided.get(action, 0) + 1
            fut.set_result(response)
            return response
        except DuplicateMessage:
            await self._ensure_ready()  # the commit invalidated memory: reload it now
            stored = await self.store.stored_answer(channel_id, msg.message_id)
            if stored is None:  # pragma: no cover - the insert said it exists
                raise Unavailable("message is being processed; retry") from None
            conv.remember_answer(msg.message_id, stored)
            fut.set_result(stored)
            return stored
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._pending.pop(key, None)
            n = self._in_use[conv.id] - 1
            if n:
                self._in_use[conv.id] = n
            else:
                del self._in_use[conv.id]

    async def _process_customer_message(
        self, gen: int, conv: Conversation, msg: IncomingMessage, received_at: float
    ) -> dict[str, Any]:
        prediction: hp.Prediction | None = None
        while True:
            # A message left for a full queue goes to a person as it is.
            while conv.tier is Tier.BOT and prediction is None and conv.message_offer is None:
                # Loop: the conversation may have moved on while we waited.
                prediction = await self.classifier.classify(msg.text, msg.locale)
            if gen != self.generation:
                raise Unavailable("state was reloaded; retry")  # nothing was changed yet
            if not self._ready:
                await self._ensure_ready()  # a refused change left something to read again
                continue
            current = self._by_id.get(conv.id)
            if current is None:
                raise Unavailable("state was reloaded; retry")
            if current is conv:
                break
            conv = current  # changed meanwhile (another instance, a refusal): decide on the new copy
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        response = self._apply_customer_message(conv, msg, prediction, received_at, now, changes, effects)
        touched = {conv.id: conv}
        await self._commit(changes, touched.values(), effects)
        conv.remember_answer(msg.message_id, response)
        return response

    def _apply_customer_message(
        self,
        conv: Conversation,
        msg: IncomingMessage,
        prediction: hp.Prediction | None,
        received_at: float,
        now: float,
        changes: Changes,
        effects: _Effects,
    ) -> dict[str, Any]:
        """``received_at``: when the message arrived; ``now``: when it was
        decided (after classification), which is when the bot answers."""
        if msg.customer != conv.customer:
            conv.customer = msg.customer
        base = dict(channel_id=conv.channel_id, conversation_id=conv.id)
        if conv.status is ConversationStatus.RESOLVED:
            conv.status = ConversationStatus.BOT
            conv.bot_streak = 0
            conv.rating = None  # a new episode, to be rated on its own
            changes.event(TrackerEvent(EventKind.REOPENED, received_at, **base))
        message_id = new_id("msg")
        conv.updated_at = now
        response: dict[str, Any]
        intent = confidence = None
        if conv.tier is Tier.HUMAN:
            h = conv.handoff
            assert h is not None
            tier = Tier.HUMAN
            changes.event(TrackerEvent(EventKind.MESSAGE_RECEIVED, received_at, **base, message_id=message_id,
                                       handoff_id=h.id, agent_id=h.agent_id, data={"tier": tier.value}))
            outcome = "forwarded" if h.agent_id is not None else "queued"
            if h.agent_id is not None:
                response = {"action": "forwarded", "agent_id": h.agent_id}
                effects.to_agent(h.agent_id, {
                    "type": "customer_message", "conversation_id": conv.id,
                    "message": {"id": message_id, "text": msg.text, "at": received_at},
                })
            else:
                response = self._handoff_response(h, now)
        elif conv.message_offer is not None:
            tier = Tier.HUMAN
            changes.event(TrackerEvent(EventKind.MESSAGE_RECEIVED, received_at, **base, message_id=message_id,
                                       data={"tier": tier.value}))
            h = self._leave_message(conv, message_id, now, changes, effects)
            response = self._handoff_response(h, now)
            outcome = h.reason.value
            self._handoff_notice(conv, h, msg.message_id, response, now, changes)
        else:
            assert prediction is not None
            intent, confidence = prediction.intent_id, prediction.confidence
            decision = self.policy.decide(msg.text, prediction, bot_streak=conv.bot_streak,
                                          vip=conv.customer.vip)
            if isinstance(decision, hp.Answer):
                tier = Tier.BOT
                conv.bot_streak += 1
                reply_id = new_id("msg")
                changes.event(TrackerEvent(EventKind.MESSAGE_RECEIVED, received_at, **base, message_id=message_id,
                                           data={"tier": tier.value}))
                changes.message(MessageRecord(reply_id, conv.channel_id, conv.id, Sender.BOT, decision.text,
                                              now, intent=decision.faq_id, confidence=decision.confidence,
                                              in_reply_to=message_id))
                changes.event(TrackerEvent(EventKind.BOT_ANSWERED, now, **base, message_id=reply_id,
                                           data={"in_reply_to": message_id, "faq_id": decision.faq_id,
                                                 "confidence": round(decision.confidence, 6)}))
                response = {"action": "answer", "text": decision.text, "faq_id": decision.faq_id,
                            "confidence": round(decision.confidence, 4), "language": decision.language}
                outcome = "answer"
                if self.notices.wanted(conv.channel_id, "bot_answer"):
                    changes.outbox.append(OutboxItem(
                        idempotency_key=reply_id, channel_id=conv.channel_id, conversation_id=conv.id,
                        kind="bot_answer", at=now,
                        payload={"type": "bot_answer", "message_id": reply_id, "conversation_id": conv.external_id,
                                 "customer_id": conv.customer.id, "in_reply_to": msg.message_id,
                                 "faq_id": decision.faq_id, "text": decision.text, "language": decision.language,
                                 "sent_at": now}))
            else:
                tier = Tier.HUMAN
                changes.event(TrackerEvent(EventKind.MESSAGE_RECEIVED, received_at, **base, message_id=message_id,
                                           data={"tier": tier.value}))
                if decision.reason is HandoffReason.CUSTOMER_ASKED:
                    self._mark_miss(conv, "asked_for_person", now, changes)
                weight = self._weight(conv, prediction.weight)
                full = over_limit(self.dispatcher, decision.skill, weight, self.config.queue_limits)
                if full is not None:
                    response = self._offer_message(conv, full, decision.reason, msg.message_id, now, changes)
                    outcome = "queue_full"
                else:
                    h = self._open_handoff(conv, decision.reason, decision.skill, now, changes, effects, weight)
                    response = self._handoff_response(h, now)
                    outcome = decision.reason.value
                    self._handoff_notice(conv, h, msg.message_id, response, now, changes)
        changes.inbound = MessageRecord(
            message_id, conv.channel_id, conv.id, Sender.CUSTOMER, msg.text, received_at,
            external_id=msg.message_id, tier=tier, intent=intent, confidence=confidence, response=response,
            outcome=outcome, replied_at=now if outcome == "answer" else None,
        )
        conv.last_bot_answered = message_id if outcome == "answer" else None
        changes.conversation(conv)
        return response

    def _weight(self, conv: Conversation, intent_weight: int) -> int:
        return max(intent_weight, self.config.vip_weight if conv.customer.vip else 1)

    def _handoff_notice(self, conv: Conversation, h: Handoff, in_reply_to: str, response: dict[str, Any],
                        now: float, changes: Changes) -> None:
        opens_at = self._opens_at(h, now)
        if opens_at is not None and self.notices.wanted(conv.channel_id, "out_of_hours"):
            changes.outbox.append(OutboxItem(
                idempotency_key=h.id, channel_id=conv.channel_id, conversation_id=conv.id,
                kind="out_of_hours", at=now,
                payload={"type": "out_of_hours", "handoff_id": h.id, "conversation_id": conv.external_id,
                         "customer_id": conv.customer.id, "in_reply_to": in_reply_to,
                         "skill": h.skill, "opens_at": opens_at,
                         "timezone": self.config.sla.hours.timezone(h.skill), "sent_at": now}))
        elif self.notices.wanted(conv.channel_id, "handoff"):
            # The queue position and expected wait are the channel's
            # to tell when it delivers (they move meanwhile).
            changes.outbox.append(OutboxItem(
                idempotency_key=h.id, channel_id=conv.channel_id, conversation_id=conv.id,
                kind="handoff", at=now,
                payload={"type": "handoff", "handoff_id": h.id, "conversation_id": conv.external_id,
                         "customer_id": conv.customer.id, "in_reply_to": in_reply_to,
                         "reason": h.reason.value, "skill": h.skill, "agent_id": h.agent_id,
                         "queue_position": response["queue_position"], "sent_at": now}))

    def _offer_message(self, conv: Conversation, full: QueueFull, reason: HandoffReason, in_reply_to: str,
                       now: float, changes: Changes) -> dict[str, Any]:
        """The skill's queue is full: no handoff; the customer is offered to
        leave a message, which their next message will be."""
        conv.message_offer = full.skill
        conv.bot_streak = 0
        changes.event(TrackerEvent(EventKind.QUEUE_FULL, now, conv.channel_id, conv.id,
                                   data={**full.as_dict(), "reason": reason.value}))
        if self.notices.wanted(conv.channel_id, "queue_full"):
            # The expected wait is the channel's to tell when it delivers.
            changes.outbox.append(OutboxItem(
                idempotency_key=f"qf_{conv.id}_{in_reply_to}"[:200], channel_id=conv.channel_id,
                conversation_id=conv.id, kind="queue_full", at=now,
                payload={"type": "queue_full", "conversation_id": conv.external_id,
                         "customer_id": conv.customer.id, "in_reply_to": in_reply_to, **full.as_dict(),
                         "sent_at": now}))
        return {"action": "queue_full", "reason": reason.value, **full.as_dict()}

    def _leave_message(self, conv: Conversation, message_id: str, now: float, changes: Changes,
                       effects: _Effects) -> Handoff:
        """The customer's message after a full-queue offer: a message left
        for the skill, queued behind the customers waiting live."""
        skill, conv.message_offer = conv.message_offer, None
        assert skill is not None
        changes.event(TrackerEvent(EventKind.MESSAGE_LEFT, now, conv.channel_id, conv.id, message_id=message_id,
                                   data={"skill": skill}))
        return self._open_handoff(conv, HandoffReason.LEFT_MESSAGE, skill, now, changes, effects,
                                  self._weight(conv, 1), left_message=True)

    def _mark_miss(self, conv: Conversation, why: str, now: float, changes: Changes) -> None:
        if conv.last_bot_answered is None:
            return
        changes.verdicts.append((conv.last_bot_answered, why))
        changes.event(TrackerEvent(EventKind.BOT_MISS, now, conv.channel_id, conv.id,
                                   message_id=conv.last_bot_answered, data={"why": why}))
        conv.last_bot_answered = None

    def _handoff_response(self, h: Handoff, now: float) -> dict[str, Any]:
        response = {
            "action": "handoff",
            "reason": h.reason.value,
            "skill": h.skill,
            "agent_id": h.agent_id,
            "queue_position": self.dispatcher.queue_position(h),
        }
        opens_at = self._opens_at(h, now)
        if opens_at is not None:
            response["opens_at"] = iso_utc(opens_at)
        return response

    def opens_at(self, h: Handoff) -> float | None:
        """When a waiting handoff's skill opens, if it is closed now (business
        hours); None when it is open, or someone holds the handoff already."""
        return self._opens_at(h, self.clock.now())

    def _opens_at(self, h: Handoff, now: float) -> float | None:
        hours = self.config.sla.hours
        if h.agent_id is not None or hours.is_open(h.skill, now):
            return None
        return hours.next_opening(h.skill, now)

    def _open_handoff(
        self, conv: Conversation, reason: HandoffReason, skill: str, now: float,
        changes: Changes, effects: _Effects, weight: int = 1, left_message: bool = False,
    ) -> Handoff:
        conv.handoff_count += 1
        conv.bot_streak = 0
        h = Handoff(id=new_id("ho"), conversation_id=conv.id, channel_id=conv.channel_id,
                    seq=conv.handoff_count, reason=reason, skill=skill, requested_at=now,
                    vip=conv.customer.vip, weight=weight, left_message=left_message)
        conv.handoff = h
        conv.status = ConversationStatus.QUEUED
        changes.event(TrackerEvent(EventKind.HANDOFF_REQUESTED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                   data={"reason": reason.value, "skill": skill}))
        assignment = self.dispatcher.request(h, now)
        if assignment is None:
            changes.event(TrackerEvent(EventKind.QUEUED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                       data={"skill": skill}))
            changes.handoff(h)
        else:
            self._record_assignment(assignment, changes, effects)
        return h

    def _record_assignment(self, a: Assignment, changes: Changes, effects: _Effects) -> None:
        h = a.handoff
        conv = self._by_id[h.conversation_id]
        conv.status = ConversationStatus.ASSIGNED
        changes.conversation(conv)
        changes.handoff(h)
        changes.load(a.agent.id, +h.slots)
        changes.agent(a.agent)
        changes.event(TrackerEvent(EventKind.ASSIGNED, a.at, conv.channel_id, conv.id, handoff_id=h.id,
                                   agent_id=a.agent.id, data={"skill": h.skill}))
        effects.to_agent(a.agent.id, {"type": "assignment", "conversation": self.conversation_view(conv)})

    def _record_assignments(self, made: Iterable[Assignment], changes: Changes, effects: _Effects) -> list[Conversation]:
        touched = []
        for a in made:
            self._record_assignment(a, changes, effects)
            touched.append(self._by_id[a.handoff.conversation_id])
        return touched

    @_decided_again_if_refused
    async def feedback(self, channel_id: str, external_id: str, rating: int | None, resolved: bool,
                       comment: str | None = None) -> None:
        """The customer rated the conversation and/or said it is resolved.

        One rating per episode: the same rating sent again (a retry, a
        replayed request) records nothing, and a different one replaces the
        episode's rating (its event says which it replaces), so the
        satisfaction figure cannot be inflated by repetition."""
        gen = await self._begin()
        conv = await self._existing_conversation(channel_id, external_id)
        new_rating = rating if rating is not None and rating != conv.rating else None
        ends = resolved and conv.status is not ConversationStatus.RESOLVED
        if new_rating is None and not ends:
            return  # nothing new: the episode already has this rating (or ended)
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        base = dict(channel_id=conv.channel_id, conversation_id=conv.id)
        open_handoff = conv.handoff if conv.handoff is not None and conv.handoff.is_open else None
        data: dict[str, Any] = {"rating": new_rating, "resolved": resolved}
        if comment is not None and new_rating is not None:
            data["comment"] = comment
        if new_rating is not None and conv.rating is not None:
            data["replaces"] = conv.rating
        changes.event(TrackerEvent(EventKind.FEEDBACK, now, **base, handoff_id=open_handoff.id if open_handoff else None,
                                   data=data))
        if new_rating is not None:
            conv.rating = new_rating
            if new_rating <= 2:
                self._mark_miss(conv, "thumbs_down", now, changes)
            elif conv.last_bot_answered is not None and new_rating >= 4:
                # The customer is content with the bot's last answer: a labelled
                # example for judging the next model (shadow evaluation).
                changes.verdicts.append((conv.last_bot_answered, "confirmed"))
        elif conv.last_bot_answered is not None and resolved and (conv.rating is None or conv.rating >= 4):
            changes.verdicts.append((conv.last_bot_answered, "confirmed"))
        touched = [conv]
        if ends:
            touched += self._end(conv, EndedBy.FEEDBACK, now, changes, effects)
        changes.conversation(conv)
        await self._commit(changes, touched, effects)

    @_decided_again_if_refused
    async def close(self, channel_id: str, external_id: str) -> None:
        """The channel reports the customer left."""
        gen = await self._begin()
        conv = await self._existing_conversation(channel_id, external_id)
        if conv.status is ConversationStatus.RESOLVED or _message_awaits_reply(conv):
            return  # a message left is answered though its writer has gone
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        touched = [conv, *self._end(conv, EndedBy.CUSTOMER, now, changes, effects)]
        await self._commit(changes, touched, effects)

    async def close_idle(self, idle_for: float, limit: int = 500) -> int:
        """End conversations nobody wrote in for ``idle_for`` seconds (when
        this instance is the one that does)."""
        if not await self.store.leads_idle_sweep():
            return 0
        await self._ensure_ready()
        now = self.clock.now()
        ids = await self.store.idle_conversations(now - idle_for, limit)
        closed = 0
        for cid in ids:
            try:
                conv = await self._conversation_by_id(cid)
            except NotFound:
                continue
            if (conv.status is ConversationStatus.RESOLVED or conv.updated_at > now - idle_for
                    or _message_awaits_reply(conv)):
                continue
            changes, effects = Changes(generation=self.generation), _Effects()
            touched = [conv, *self._end(conv, EndedBy.IDLE, self.clock.now(), changes, effects)]
            await self._commit(changes, touched, effects)
            closed += 1
        return closed

    async def customer_conversation(self, channel_id: str, external_id: str) -> Conversation | None:
        """The channel's conversation as it stands (None if the customer
        never wrote): for a channel telling its customer where they are."""
        try:
            return await self._existing_conversation(channel_id, external_id)
        except NotFound:
            return None

    async def _existing_conversation(self, channel_id: str, external_id: str) -> Conversation:
        await self._ensure_ready()
        c = self._conversations.get((channel_id, external_id))
        if c is None:
            c = await self.store.load_conversation(channel_id, external_id)
            if c is None:
                raise NotFound(f"conversation {external_id!r} does not exist")
            c = self._conversations.get((channel_id, external_id)) or c
            self._remember(c)
        return c

    def _end(self, conv: Conversation, by: EndedBy, now: float, changes: Changes, effects: _Effects) -> list[Conversation]:
        """Resolve the conversation in whichever tier holds it."""
        h = conv.handoff if conv.handoff is not None and conv.handoff.is_open else None
        data: dict[str, Any] = {"by": by.value}
        touched: list[Conversation] = []
        if h is not None:
            # A customer who left a message did not give up on it.
            data["abandoned"] = (h.first_reply_at is None and by in (EndedBy.CUSTOMER, EndedBy.IDLE)
                                 and not h.left_message)
            agent_id = h.agent_id
            h.resolved_at = now
            changes.handoff(h)
            if agent_id is not None:
                changes.load(agent_id, -h.slots)
                effects.to_agent(agent_id, {"type": "conversation_ended", "conversation_id": conv.id,
                                            "by": by.value})
            made = self.dispatcher.release(h, now)
            touched = self._record_assignments(made, changes, effects)
        conv.status = ConversationStatus.RESOLVED
        conv.bot_streak = 0
        conv.message_offer = None
        conv.updated_at = now
        changes.conversation(conv)
        changes.event(TrackerEvent(EventKind.RESOLVED, now, conv.channel_id, conv.id,
                                   handoff_id=h.id if h else None,
                                   agent_id=h.agent_id if h else None, data=data))
        return touched

    # ---------------------------------------------------------------- agents
    def agents(self) -> list[Agent]:
        return sorted(self.dispatcher.agents.values(), key=lambda a: a.id)

    @_decided_again_if_refused
    async def create_agent(self, name: str, skills: Iterable[str], capacity: int, status: AgentStatus,
                           agent_id: str | None = None, levels: Mapping[str, int] | None = None) -> Agent:
        gen = await self._begin()
        now = self.clock.now()
        agent = Agent(id=agent_id or new_id("agt"), name=name, skills=frozenset(skills), capacity=capacity,
                      status=status, idle_since=now, levels=dict(levels or {}))
        changes, effects = Changes(generation=gen), _Effects()
        changes.new_agents.append(AgentProfile.of(agent))
        made = self.dispatcher.add_agent(agent, now)
        touched = self._record_assignments(made, changes, effects)
        await self._commit(changes, touched, effects)
        return agent

    @_decided_again_if_refused
    async def update_agent(self, agent_id: str, *, status: AgentStatus | None = None,
                           skills: Iterable[str] | None = None, capacity: int | None = None,
                           name: str | None = None, levels: Mapping[str, int] | None = None) -> Agent:
        gen = await self._begin()
        current = self.dispatcher.agent(agent_id)
        if current.disabled_at is not None:
            raise Conflict(f"agent {agent_id!r} is disabled", code="agent_disabled")
        held = set(skills) if skills is not None else set(current.skills)
        if levels is not None and set(levels) - held:
            raise InvalidInput(f"levels name skills the agent does not hold: {sorted(set(levels) - held)}",
                               code="validation_failed")
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        made = []
        if skills is not None or capacity is not None or name is not None or levels is not None:
            made += self.dispatcher.update_agent(agent_id, now, skills=skills, capacity=capacity, name=name,
                                                 levels=levels)
        was = self.dispatcher.agent(agent_id).status
        if status is not None:
            made += self.dispatcher.set_status(agent_id, status, now)
        agent = self.dispatcher.agent(agent_id)
        changes.agent(agent)
        touched = self._record_assignments(made, changes, effects)
        if status is AgentStatus.OFFLINE and was is not AgentStatus.OFFLINE:
            for conv in leaving_with(agent_id, self._held_conversations(agent_id), self.config.attendance):
                touched += self._requeue(conv, "agent_offline", now, changes, effects)
        await self._commit(changes, touched, effects)
        return agent

    # ------------------------------------------------------------ attendance
    @_decided_again_if_refused
    async def presence_lost(self, agent_id: str) -> int:
        """The agent's last connection has been gone for the grace period:
        nothing more is assigned to them, and what they never answered goes
        back to the queue. Returns how many conversations were requeued."""
        gen = await self._begin()
        agent = self.dispatcher.agents.get(agent_id)
        if agent is None or agent.presence_lost_at is not None or agent.disabled_at is not None:
            return 0
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        agent.presence_lost_at = now
        touched: list[Conversation] = []
        leaving = leaving_with(agent_id, self._held_conversations(agent_id), self.config.attendance)
        for conv in leaving:
            touched += self._requeue(conv, "presence_lost", now, changes, effects)
        changes.agent(agent)
        await self._commit(changes, touched, effects)
        return len(leaving)

    @_decided_again_if_refused
    async def presence_back(self, agent_id: str) -> None:
        """One of the agent's clients connected again: they can be assigned."""
        gen = await self._begin()
        agent = self.dispatcher.agents.get(agent_id)
        if agent is None or agent.presence_lost_at is None:
            return
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        agent.presence_lost_at = None
        made = self.dispatcher.drain(now)
        changes.agent(agent)
        touched = self._record_assignments(made, changes, effects)
        await self._commit(changes, touched, effects)

    async def widen(self) -> int:
        """Assign what waits to whoever can take it now, fallback skills
        included once a handoff has waited past their delay (the timekeeper
        calls this: time alone widens a handoff). Returns how many moved."""
        await self._ensure_ready()
        made = self.dispatcher.drain(self.clock.now())
        if made:
            changes, effects = Changes(generation=self.generation), _Effects()
            touched = self._record_assignments(made, changes, effects)
            await self._commit(changes, touched, effects)
        return len(made)

    async def expire_reservations(self) -> int:
        """Offer every assignment nobody answered in time to the next
        eligible agent; an agent who let ``misses_before_away`` lapse in a
        row is set away. Returns how many moved."""
        await self._ensure_ready()
        rules = self.config.attendance
        moved = 0
        for conv in lapsed_reservations(self._held_conversations(), self.clock.now(), rules):
            try:
                moved += await self._expire_reservation(conv.id)
            except (NotFound, Unavailable):
                continue  # changed meanwhile, or the database is away: the next round sees it
        return moved

    @_decided_again_if_refused
    async def _expire_reservation(self, conversation_id: str) -> int:
        gen = await self._begin()
        conv = self._by_id.get(conversation_id)
        now = self.clock.now()
        rules = self.config.attendance
        if conv is None or conv not in lapsed_reservations([conv], now, rules):
            return 0  # answered, ended or moved since
        changes, effects = Changes(generation=gen), _Effects()
        h = conv.handoff
        assert h is not None and h.agent_id is not None
        agent = self.dispatcher.agents.get(h.agent_id)
        set_away = False
        if agent is not None:
            agent.missed_reservations += 1
            if agent.missed_reservations >= rules.misses_before_away and agent.status is AgentStatus.ONLINE:
                # Away before the requeue, so the freed slot is not refilled with them.
                self.dispatcher.set_status(agent.id, AgentStatus.AWAY, now)
                set_away = True
            changes.agent(agent)
        if not set_away and self.dispatcher.chooses(h.skill, h.agent_id, h.weight) is None:
            # Nobody else could take it now: it stays offered to the same
            # agent, on a new clock, rather than wait beside their free slot.
            h.assigned_at = now
            changes.handoff(h)
            changes.conversation(conv)
            await self._commit(changes, [conv], effects)
            return 0
        touched = self._requeue(conv, "reservation_timeout", now, changes, effects,
                                data={"missed_in_a_row": agent.missed_reservations if agent else None,
                                      "agent_set_away": set_away})
        if set_away and agent is not None:
            effects.to_agent(agent.id, {"type": "status_changed", "status": AgentStatus.AWAY.value,
                                        "reason": "missed_reservations"})
        await self._commit(changes, touched, effects)
        return 1

    @_decided_again_if_refused
    async def disable_agent(self, agent_id: str) -> tuple[Agent, int]:
        """The agent leaves for good: offline, never assigned again, and
        every conversation they hold goes back to the queue (keeping its
        place by when the customer asked). Returns the agent and how many
        conversations were requeued."""
        gen = await self._begin()
        agent = self.dispatcher.agent(agent_id)
        if agent.disabled_at is not None:
            return agent, 0
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        agent.disabled_at = now
        made = self.dispatcher.set_status(agent_id, AgentStatus.OFFLINE, now)
        touched = self._record_assignments(made, changes, effects)
        held = self._held_conversations(agent_id)
        for conv in sorted(held, key=lambda c: c.handoff.requested_at):  # type: ignore[union-attr]
            touched += self._requeue(conv, "agent_disabled", now, changes, effects)
        changes.agent(agent)
        await self._commit(changes, touched, effects)
        return agent, len(held)

    def _requeue(self, conv: Conversation, reason: str, now: float, changes: Changes,
                 effects: _Effects, data: dict[str, Any] | None = None) -> list[Conversation]:
        """Take a conversation from its agent and route it again (another
        agent now, or the queue, in its place by request time)."""
        h = conv.handoff
        assert h is not None and h.agent_id is not None
        from_agent = h.agent_id
        changes.load(from_agent, -h.slots)
        effects.to_agent(from_agent, {"type": "conversation_requeued", "conversation_id": conv.id, "reason": reason})
        changes.event(TrackerEvent(EventKind.REQUEUED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                   agent_id=from_agent, data={"reason": reason, "skill": h.skill, **(data or {})}))
        made = self.dispatcher.release(h, now)
        h.agent_id = None
        conv.status = ConversationStatus.QUEUED
        touched = [conv, *self._record_assignments(made, changes, effects)]
        assignment = self.dispatcher.request(h, now, exclude=from_agent)
        if assignment is not None:
            self._record_assignment(assignment, changes, effects)
        else:
            changes.event(TrackerEvent(EventKind.QUEUED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                       data={"skill": h.skill}))
            changes.handoff(h)
        conv.updated_at = now
        changes.conversation(conv)
        return touched

    def agent(self, agent_id: str) -> Agent:
        return self.dispatcher.agent(agent_id)

    async def open_conversations(self, agent_id: str) -> list[Conversation]:
        await self._ensure_ready()
        self.dispatcher.agent(agent_id)
        found = self._held_conversations(agent_id)
        return sorted(found, key=lambda c: c.handoff.assigned_at or 0.0)  # type: ignore[union-attr]

    async def _agents_conversation(self, agent_id: str, conversation_id: str) -> Conversation:
        conv = await self._conversation_by_id(conversation_id)
        if conv.agent_id != agent_id or conv.handoff is None or not conv.handoff.is_open:
            raise Forbidden(f"conversation {conversation_id!r} is not assigned to you",
                            code="not_your_conversation")
        return conv

    async def agents_conversation(self, agent_id: str, conversation_id: str) -> Conversation:
        """The agent's own open conversation (Forbidden for anyone else's)."""
        await self._ensure_ready()
        return await self._agents_conversation(agent_id, conversation_id)

    async def history(self, agent_id: str | None, conversation_id: str) -> tuple[Conversation, list[MessageRecord]]:
        if agent_id is None:
            conv = await self._conversation_by_id(conversation_id)
        else:
            conv = await self._agents_conversation(agent_id, conversation_id)
        messages = await self.store.history(conv.id, self.config.history_limit)
        return conv, messages

    async def earlier(self, agent_id: str | None, conversation_id: str, limit: int = 20) -> list[Handoff]:
        """The customer's other passages to a person on this channel (in this
        conversation before, or in another of theirs), newest first: what an
        agent wants to know before answering. ``agent_id`` None: a supervisor."""
        if agent_id is None:
            conv = await self._conversation_by_id(conversation_id)
        else:
            conv = await self._agents_conversation(agent_id, conversation_id)
        current = conv.handoff.id if conv.handoff is not None else None
        found = await self.store.customer_handoffs(conv.channel_id, conv.customer.id, limit + 1)
        return [h for h in found if h.id != current][:limit]

    @_decided_again_if_refused
    async def agent_reply(self, agent_id: str, conversation_id: str, text: str) -> MessageRecord:
        gen = await self._begin()
        conv = await self._agents_conversation(agent_id, conversation_id)
        h = conv.handoff
        assert h is not None
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        message = MessageRecord(new_id("msg"), conv.channel_id, conv.id, Sender.AGENT, text, now,
                                agent_id=agent_id, tier=Tier.HUMAN)
        changes.message(message)
        changes.event(TrackerEvent(EventKind.AGENT_REPLIED, now, conv.channel_id, conv.id, message_id=message.id,
                                   handoff_id=h.id, agent_id=agent_id))
        if h.first_reply_at is None:
            h.first_reply_at = now
            changes.handoff(h)
            agent = self.dispatcher.agents.get(agent_id)
            if agent is not None and agent.missed_reservations:
                agent.missed_reservations = 0  # took one up: the count is of misses in a row
                changes.agent(agent)
        conv.updated_at = now
        changes.conversation(conv)
        changes.outbox.append(OutboxItem(
            idempotency_key=message.id, channel_id=conv.channel_id, conversation_id=conv.id,
            kind="agent_message", at=now,
            payload={"type": "agent_message", "message_id": message.id, "conversation_id": conv.external_id,
                     "customer_id": conv.customer.id, "agent_id": agent_id,
                     "agent_name": self.dispatcher.agent(agent_id).name, "text": text, "sent_at": now},
        ))
        await self._commit(changes, [conv], effects)
        return message

    @_decided_again_if_refused
    async def resolve(self, agent_id: str, conversation_id: str) -> None:
        gen = await self._begin()
        conv = await self._agents_conversation(agent_id, conversation_id)
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        h = conv.handoff
        assert h is not None
        touched = [conv, *self._end(conv, EndedBy.AGENT, now, changes, effects)]
        if self.notices.wanted(conv.channel_id, "rating_request"):
            changes.outbox.append(OutboxItem(
                idempotency_key=f"{h.id}:rating", channel_id=conv.channel_id, conversation_id=conv.id,
                kind="rating_request", at=now,
                payload={"type": "rating_request", "handoff_id": h.id, "conversation_id": conv.external_id,
                         "customer_id": conv.customer.id, "agent_id": agent_id, "sent_at": now}))
        await self._commit(changes, touched, effects)

    @_decided_again_if_refused
    async def transfer(self, agent_id: str, conversation_id: str, *, skill: str | None = None,
                       to_agent: str | None = None) -> Conversation:
        if (skill is None) == (to_agent is None):
            raise InvalidInput("give exactly one of skill or agent_id")
        gen = await self._begin()
        conv = await self._agents_conversation(agent_id, conversation_id)
        h = conv.handoff
        assert h is not None
        target = None
        if to_agent is not None:
            target = self.dispatcher.agent(to_agent)
            if to_agent == agent_id:
                raise Conflict("the conversation is already yours")
            if not (target.has_free_slot() and target.fits(h.weight)):
                raise Conflict(f"agent {to_agent!r} is not online with room for the conversation",
                               code="agent_unavailable")
        now = self.clock.now()
        changes, effects = Changes(generation=gen), _Effects()
        changes.load(agent_id, -h.slots)
        effects.to_agent(agent_id, {"type": "conversation_transferred", "conversation_id": conv.id})
        new_skill = skill if skill is not None else h.skill
        changes.event(TrackerEvent(EventKind.TRANSFERRED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                   agent_id=agent_id, data={"skill": new_skill, "to_agent": to_agent}))
        # Free the old slot first (it may go to the oldest waiting handoff),
        # then route this handoff again, keeping its place by request time.
        made = self.dispatcher.release(h, now)
        h.agent_id = None
        h.skill = new_skill
        conv.status = ConversationStatus.QUEUED
        if target is not None:
            assignment = self.dispatcher.assign_to(h, target, now)
        else:
            assignment = self.dispatcher.request(h, now, exclude=agent_id)
        touched = [conv, *self._record_assignments(made, changes, effects)]
        if assignment is not None:
            self._record_assignment(assignment, changes, effects)
        else:
            changes.event(TrackerEvent(EventKind.QUEUED, now, conv.channel_id, conv.id, handoff_id=h.id,
                                       data={"skill": new_skill}))
            changes.handoff(h)
        conv.updated_at = now
        changes.conversation(conv)
        await self._commit(changes, touched, effects)
        return conv

    # ----------------------------------------------------------------- views
    def conversation_view(self, conv: Conversation) -> dict[str, Any]:
        h = conv.handoff
        return {
            "id": conv.id,
            "channel_id": conv.channel_id,
            "external_id": conv.external_id,
            "customer": {"id": conv.customer.id, "name": conv.customer.name, "vip": conv.customer.vip},
            "status": conv.status.value,
            "tier": conv.tier.value,
            "created_at": conv.created_at,
            "updated_at": conv.updated_at,
            "handoff": None if h is None else {
                "id": h.id, "seq": h.seq, "reason": h.reason.value, "skill": h.skill,
                "requested_at": h.requested_at, "agent_id": h.agent_id, "assigned_at": h.assigned_at,
                "first_reply_at": h.first_reply_at, "resolved_at": h.resolved_at,
                "queue_position": self.dispatcher.queue_position(h), "weight": h.weight,
            },
        }

    def _held_conversations(self, agent_id: str | None = None) -> list[Conversation]:
        """The open conversations the agent holds (every agent's if None):
        from the dispatcher's count of them, so a long queue is not walked
        to find the few that agents hold."""
        held = []
        for h in self.dispatcher.held(agent_id):
            conv = self._by_id.get(h.conversation_id)
            if conv is not None and conv.handoff is h and conv.agent_id is not None:
                held.append(conv)
        return held

    def conversations_held(self) -> dict[str, int]:
        """Per agent, how many conversations they hold (their load counts
        slots, which a heavy conversation takes several of)."""
        held: dict[str, int] = {}
        for conv in self._held_conversations():
            agent_id = conv.agent_id
            if agent_id is not None:
                held[agent_id] = held.get(agent_id, 0) + 1
        return held

    def live(self, warn_margin: float) -> dict[str, Any]:
        return live_view(self.dispatcher, [c.handoff for c in self._held_conversations() if c.handoff is not None],
                         self.clock.now(), first_response_sla=self.config.sla.human_first_response_seconds,
                         warn_margin=warn_margin, queue_limits=self.config.queue_limits, hours=self.config.sla.hours)

    def late_first_responses(self, now: float, after: float, oldest: int,
                             conversation_ids: Iterable[str] = ()) -> tuple[dict[str, int], list[Handoff]]:
        """Per skill, how many handoffs no agent has answered have waited
        ``after`` seconds of their skill's business time (customers waiting
        live and conversations held; messages left waiting are not counted);
        and the handoffs an SLA monitor round judges one by one: the oldest
        ``oldest`` of those waiting in each skill and priority class, every
        handoff agents hold, and the open handoffs of ``conversation_ids``
        (those with an alert open). Never a walk of the queue."""
        hours = self.config.sla.hours
        late: dict[str, int] = {}
        judged: dict[str, Handoff] = {}
        for skill in self.dispatcher.waiting_by_skill():
            n, first = self.dispatcher.unanswered_waiting(
                skill, lambda r, s=skill: hours.elapsed(s, r, now) >= after, oldest)
            if n:
                late[skill] = n
            judged.update((h.id, h) for h in first)
        for conv in self._held_conversations():
            h = conv.handoff
            assert h is not None
            judged[h.id] = h
            if h.first_reply_at is None and not h.left_message and hours.elapsed(h.skill, h.requested_at, now) >= after:
                late[h.skill] = late.get(h.skill, 0) + 1
        for cid in conversation_ids:
            conv = self._by_id.get(cid)
            if conv is not None and conv.handoff is not None and conv.handoff.is_open:
                judged[conv.handoff.id] = conv.handoff
        return late, list(judged.values())

    def queue(self, limit: int | None = None) -> list[Handoff]:
        return self.dispatcher.waiting(limit)

    def queue_length(self) -> int:
        return self.dispatcher.waiting_count()

    def queue_by_skill(self) -> dict[str, tuple[int, float]]:
        return self.dispatcher.waiting_by_skill()

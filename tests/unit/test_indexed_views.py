"""The Desk answers what agents hold, the live view and the SLA monitor's
inputs from the dispatcher's indexes (the handoffs held per agent, the
queue sorted per skill) instead of walking every cached conversation. Here
random operations on the fake clock (handoffs, messages left for a full
queue, assignments, replies, ends, requeues, transfers, agents leaving,
presence lost, reservations lapsing, business hours opening and closing,
failed commits, restarts, a second instance changing things) are checked,
after every step, against the walk the indexes replace, kept here."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from router.alerts import Alert, AlertRules, evaluate
from router.attendance import AttendanceRules, lapsed_reservations, leaving_with
from router.business_hours import Schedule, parse_hours
from router.errors import TierdeskError
from router.metrics import SLA
from router.model import Agent, AgentStatus, Conversation, ConversationStatus, Customer, Handoff, HandoffReason
from router.ports import FakeClock
from router.routing import Fallback
from router.services import Desk, DeskConfig, IncomingMessage
from tests.unit.fakes import FakeClassifier, FakeStore, Prediction, faq, needs_person
from tests.unit.test_alerts import late_by_walking
from tests.unit.test_instances import RelayedStore, settled

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, a Thursday
WEB = "web"
FIRST_RESPONSE = 60.0
TECH = parse_hours({"timezone": "Europe/Berlin", "weekly": {"mon-fri": "09:00-17:00"}})
HOURS = Schedule({"tech": TECH})
TEXTS = {
    "refund my order": needs_person("refund", "billing"),
    "my dispute": Prediction("dispute", 0.9, 0.5, None, "billing", True, False, weight=2),
    "the app crashes": needs_person("crash", "tech"),
    "a person please": needs_person("other", "general"),
    "opening hours?": faq("hours", "9 to 5"),
}
AGENTS = {"a0": ["billing"], "a1": ["billing", "general"], "a2": ["tech"], "a3": ["tech", "general", "billing"]}


def live_by_walking(agents: Iterable[Agent], conversations: Iterable[Conversation], now: float, *,
                    first_response_sla: float, warn_margin: float, queue_limits: Mapping[str, int] | None = None,
                    hours: Schedule | None = None) -> dict[str, Any]:
    """router/live.py's view as it was computed before (at a124718): by
    looking at every open conversation."""
    hours = hours or Schedule()
    agents = [a for a in agents if a.disabled_at is None]
    open_handoffs = [c.handoff for c in conversations if c.handoff is not None and c.handoff.is_open]
    skills = sorted({s for a in agents for s in a.skills} | {h.skill for h in open_handoffs})
    per_skill: dict[str, dict[str, Any]] = {
        s: {"skill": s, "waiting": 0, "oldest_wait_seconds": None, "at_risk": 0, "breached": 0,
            "left_messages": 0, "queue_limit": (queue_limits or {}).get(s), "agents_online": 0,
            "agents_with_free_slot": 0} for s in skills}
    warn_after = first_response_sla * (1 - warn_margin)
    held: dict[str, list[Any]] = {}
    for h in open_handoffs:
        row = per_skill[h.skill]
        waited = now - h.requested_at
        if h.agent_id is None and h.left_message:
            row["left_messages"] += 1
            continue
        if h.agent_id is None:
            row["waiting"] += 1
            if row["oldest_wait_seconds"] is None or waited > row["oldest_wait_seconds"]:
                row["oldest_wait_seconds"] = round(waited, 3)
        else:
            held.setdefault(h.agent_id, []).append(h)
        if h.first_reply_at is None:
            on_clock = hours.elapsed(h.skill, h.requested_at, now)
            if on_clock >= first_response_sla:
                row["breached"] += 1
            elif on_clock >= warn_after and hours.is_open(h.skill, now):
                row["at_risk"] += 1
    for a in agents:
        present = a.presence_lost_at is None
        for s in a.skills:
            if a.status is AgentStatus.ONLINE and present:
                per_skill[s]["agents_online"] += 1
                if a.has_free_slot():
                    per_skill[s]["agents_with_free_slot"] += 1
    return {
        "skills": list(per_skill.values()),
        "agents": [
            {"id": a.id, "name": a.name, "status": a.status.value, "present": a.presence_lost_at is None,
             "skills": sorted(a.skills), "load": a.open_count, "capacity": a.capacity,
             "conversations": len(held.get(a.id, [])),
             "unanswered": sum(1 for h in held.get(a.id, []) if h.first_reply_at is None),
             "oldest_unanswered_seconds": max((round(now - h.requested_at, 3) for h in held.get(a.id, [])
                                               if h.first_reply_at is None), default=None),
             "missed_reservations": a.missed_reservations}
            for a in sorted(agents, key=lambda a: (a.name, a.id))
        ],
    }


def ids(conversations: Iterable[Conversation]) -> list[str]:
    return sorted(c.id for c in conversations)


class Run:
    """One random run: the desks, the SLA monitor's open alerts, and the
    checks after every step."""

    def __init__(self, seed: int, two_instances: bool, carrying: bool = False) -> None:
        self.rng = random.Random(seed)
        self.clock = FakeClock(T0)
        self.shared = FakeStore()
        self.views = [RelayedStore(self.shared, carrying) for _ in range(2 if two_instances else 1)]
        self.config = DeskConfig(
            sla=SLA(human_first_response_seconds=FIRST_RESPONSE, hours=HOURS), vip_weight=2,
            queue_limits={"general": 2}, fallback={"billing": (Fallback("general", 30.0),)},
            attendance=AttendanceRules(reservation_timeout_seconds=20.0, misses_before_away=2,
                                       requeue_answered_on_leave=self.rng.random() < 0.5))
        self.classifier = FakeClassifier(TEXTS)
        self.desks: list[Desk] = []
        self.alerts: dict[str, Alert] = {}
        self.messages = 0
        # How often a check saw what the indexes must get right.
        self.seen: dict[str, int] = {}

    async def start(self) -> None:
        self.desks = [self._desk(view) for view in self.views]
        for desk in self.desks:
            await desk.start()
        self._wire()

    def _desk(self, view: RelayedStore) -> Desk:
        return Desk(view, self.classifier, self.clock, self.config)  # type: ignore[arg-type]

    def _wire(self) -> None:
        for view, desk in zip(self.views, self.desks, strict=True):
            view.peers[:] = [d for d in self.desks if d is not desk]

    # ------------------------------------------------------------ operations
    async def step(self) -> None:
        rng = self.rng
        desk = rng.choice(self.desks)
        op = rng.choices(
            ["message", "agent", "status", "reply", "resolve", "close", "transfer", "presence", "timekeeper",
             "time", "disable", "fail", "restart", "capacity"],
            [30, 4, 6, 10, 6, 4, 5, 4, 6, 12, 1, 2, 1, 2])[0]
        try:
            await getattr(self, op)(desk)
        except TierdeskError:
            pass  # refused, gone meanwhile, or the failure injected: what memory holds is checked all the same
        await settled(*self.desks)
        self.check()  # a failed commit may have left memory ahead of the store: still consistent
        for d in self.desks:
            await d.ensure_ready()
        await settled(*self.desks)
        self.check()

    def _held(self, desk: Desk) -> list[Conversation]:
        return sorted((c for c in desk._by_id.values() if c.agent_id is not None), key=lambda c: c.id)

    async def message(self, desk: Desk) -> None:
        self.messages += 1
        conversation = f"c{self.rng.randrange(40)}"
        customer = Customer(f"cust-{conversation}", vip=self.rng.random() < 0.2)
        text = self.rng.choice([*TEXTS, "something else"])
        await desk.receive_message(WEB, IncomingMessage(f"m{self.messages}", conversation, customer, text))

    async def agent(self, desk: Desk) -> None:
        agent_id = self.rng.choice(list(AGENTS))
        if agent_id not in desk.dispatcher.agents:
            await desk.create_agent(agent_id, AGENTS[agent_id], self.rng.randint(1, 3), AgentStatus.ONLINE,
                                    agent_id=agent_id)

    def _some_agent(self, desk: Desk) -> str | None:
        agents = sorted(desk.dispatcher.agents)
        return self.rng.choice(agents) if agents else None

    async def status(self, desk: Desk) -> None:
        agent_id = self._some_agent(desk)
        if agent_id is not None:
            await desk.update_agent(agent_id, status=self.rng.choice(list(AgentStatus)))

    async def capacity(self, desk: Desk) -> None:
        agent_id = self._some_agent(desk)
        if agent_id is not None:
            await desk.update_agent(agent_id, capacity=self.rng.randint(1, 3))

    async def reply(self, desk: Desk) -> None:
        held = self._held(desk)
        if held:
            conv = self.rng.choice(held)
            await desk.agent_reply(conv.agent_id or "", conv.id, "on it")

    async def resolve(self, desk: Desk) -> None:
        held = self._held(desk)
        if held:
            conv = self.rng.choice(held)
            await desk.resolve(conv.agent_id or "", conv.id)

    async def close(self, desk: Desk) -> None:
        conversation = f"c{self.rng.randrange(40)}"
        if self.rng.random() < 0.5:
            await desk.close(WEB, conversation)
        else:
            await desk.feedback(WEB, conversation, None, True)

    async def transfer(self, desk: Desk) -> None:
        held = self._held(desk)
        if not held:
            return
        conv = self.rng.choice(held)
        if self.rng.random() < 0.6:
            await desk.transfer(conv.agent_id or "", conv.id, skill=self.rng.choice(["billing", "tech", "general"]))
        elif (to := self._some_agent(desk)) is not None:
            await desk.transfer(conv.agent_id or "", conv.id, to_agent=to)

    async def presence(self, desk: Desk) -> None:
        agent_id = self._some_agent(desk)
        if agent_id is None:
            return
        if self.rng.random() < 0.5:
            await desk.presence_lost(agent_id)
        else:
            await desk.presence_back(agent_id)

    async def timekeeper(self, desk: Desk) -> None:
        await desk.expire_reservations()
        await desk.widen()
        if self.rng.random() < 0.2:
            await desk.close_idle(600.0)

    async def time(self, desk: Desk) -> None:
        r = self.rng.random()
        # Mostly seconds (reservations lapse, SLAs near), now and then hours
        # (the tech skill opens and closes), or over the tech skill's closing
        # time with a handoff requested just before it (its SLA clock stops
        # part way, inside the warning).
        if r < 0.85:
            self.clock.advance(self.rng.uniform(0, 30))
        elif r < 0.95:
            self.clock.advance(self.rng.uniform(1800, 4 * 3600))
        else:
            now = self.clock.now()
            closing = next(end for day in range(8)
                           for _, end in TECH.opening_ranges(datetime.fromtimestamp(now + day * 86400, UTC).date())
                           if end > now + 60)
            self.clock.set(closing - self.rng.uniform(48, 59.9))
            self.messages += 1
            await desk.receive_message(WEB, IncomingMessage(f"m{self.messages}", f"t{self.messages}",
                                                            Customer("late"), "the app crashes"))
            self.clock.set(closing + self.rng.uniform(0, 100))

    async def disable(self, desk: Desk) -> None:
        agent_id = self._some_agent(desk)
        if agent_id is not None:
            await desk.disable_agent(agent_id)

    async def fail(self, desk: Desk) -> None:
        self.shared.fail_next_commit()
        await self.message(desk)

    async def restart(self, desk: Desk) -> None:
        i = self.desks.index(desk)
        self.desks[i] = self._desk(self.views[i])
        self._wire()
        await self.desks[i].start()

    # ---------------------------------------------------------------- checks
    def check(self) -> None:
        for desk in self.desks:
            self._check(desk)

    def _saw(self, what: str, happened: bool = True) -> None:
        if happened:
            self.seen[what] = self.seen.get(what, 0) + 1

    def _check(self, desk: Desk) -> None:
        now = self.clock.now()
        conversations = list(desk._by_id.values())
        open_handoffs = [c.handoff for c in conversations if c.handoff is not None and c.handoff.is_open]
        # The indexes themselves: exactly the open handoffs in memory.
        held_by_walking: dict[str, set[str]] = {}
        for h in open_handoffs:
            if h.agent_id is not None:
                held_by_walking.setdefault(h.agent_id, set()).add(h.id)
        assert {h.id for h in desk.dispatcher.held()} == set().union(*held_by_walking.values())
        for agent_id in {*held_by_walking, *desk.dispatcher.agents}:
            held = desk.dispatcher.held(agent_id)
            assert {h.id for h in held} == held_by_walking.get(agent_id, set())
            assert all(desk._by_id[h.conversation_id].handoff is h for h in held)
            assert ids(desk._held_conversations(agent_id)) == ids(
                c for c in conversations if c.agent_id == agent_id)
            assert ids(leaving_with(agent_id, desk._held_conversations(agent_id), self.config.attendance)) == ids(
                leaving_with(agent_id, conversations, self.config.attendance))
        assert set(desk.dispatcher._waiting) == {h.id for h in open_handoffs if h.agent_id is None}
        waiting = [h for h in open_handoffs if h.agent_id is None]
        self._saw("held", bool(held_by_walking))
        self._saw("answered and waiting again", any(h.first_reply_at is not None for h in waiting))
        self._saw("message left waiting", any(h.left_message for h in waiting))
        self._saw("vip waiting", any(h.vip for h in waiting))
        self._saw("waiting while its skill is closed", any(not HOURS.is_open(h.skill, now) for h in waiting))
        self._saw("late while its skill is closed", any(
            not HOURS.is_open(h.skill, now) and h.first_reply_at is None
            and 48.0 <= HOURS.elapsed(h.skill, h.requested_at, now) < FIRST_RESPONSE for h in open_handoffs))
        self._saw("lapsed reservation", bool(lapsed_reservations(conversations, now, self.config.attendance)))
        assert desk.conversations_held() == {a: len(hs) for a, hs in held_by_walking.items()}
        assert ids(lapsed_reservations(desk._held_conversations(), now, self.config.attendance)) == ids(
            lapsed_reservations(conversations, now, self.config.attendance))
        for margin in (0.2, 0.5):
            assert desk.live(margin) == live_by_walking(
                desk.dispatcher.agents.values(), conversations, now, first_response_sla=FIRST_RESPONSE,
                warn_margin=margin, queue_limits=self.config.queue_limits, hours=HOURS)
        self._check_alerts(desk, now, open_handoffs)

    def _check_alerts(self, desk: Desk, now: float, open_handoffs: list[Any]) -> None:
        # A cap that moves between rounds: over it, open alerts are cleared.
        rules = AlertRules(first_response_alerts_per_skill=self.rng.choice([0, 1, 2, 3, 20]))
        after = rules.first_response_warning(FIRST_RESPONSE)
        alerted = [a.subject["conversation_id"] for a in self.alerts.values() if a.kind == "first_response"]
        late, judged = desk.late_first_responses(now, after, rules.first_response_alerts_per_skill, alerted)
        late_walked = late_by_walking(open_handoffs, now, FIRST_RESPONSE, rules, HOURS)
        assert late == late_walked
        common = dict(queues=desk.dispatcher.waiting_by_skill(), containment=None,
                      first_response_sla=FIRST_RESPONSE, rules=rules, hours=HOURS)
        decisions = evaluate(self.alerts, now, handoffs=judged, late=late, **common)  # type: ignore[arg-type]
        assert decisions == evaluate(self.alerts, now, handoffs=open_handoffs, late=late_walked,
                                     **common)  # type: ignore[arg-type]
        self._saw("backlog alert raised", any(a.kind == "first_response_backlog" for a in decisions.raise_))
        self._saw("alert cleared", bool(decisions.clear))
        self._saw("breached", any(s["breached"] for s in desk.live(0.2)["skills"]))
        for a in decisions.raise_:
            self.alerts[a.key] = a
        for k in decisions.clear:
            del self.alerts[k]
        # After the round no skill open now has more alerts of its own than the cap.
        by_id = {h.id: h for h in open_handoffs}
        own: dict[str, int] = {}
        for a in self.alerts.values():
            h = by_id.get(a.subject.get("handoff_id", ""))
            if a.kind == "first_response" and h is not None and HOURS.is_open(h.skill, now):
                own[h.skill] = own.get(h.skill, 0) + 1
        assert all(n <= rules.first_response_alerts_per_skill for n in own.values()), own


@pytest.mark.parametrize(("two_instances", "carrying"), [(False, False), (True, False), (True, True)],
                         ids=["one instance", "two instances", "two instances, notices carrying the conversations"])
async def test_the_indexed_answers_equal_the_walk(two_instances: bool, carrying: bool) -> None:
    seen: dict[str, int] = {}
    for seed in range(6):
        run = Run(seed, two_instances, carrying)
        await run.start()
        for _ in range(250):
            await run.step()
        for what, n in run.seen.items():
            seen[what] = seen.get(what, 0) + n
    # The runs reached every case the indexes must get right.
    assert set(seen) == {"held", "answered and waiting again", "message left waiting", "vip waiting",
                         "waiting while its skill is closed", "late while its skill is closed", "lapsed reservation", "backlog alert raised",
                         "alert cleared", "breached"}, seen


def test_the_walk_kept_here_sees_what_it_counts() -> None:
    """The brute-force view is itself checked on a hand-made case, so the
    equivalence above cannot pass by both sides being empty."""
    ann = Agent("ann", "Ann", frozenset({"billing"}), 2, AgentStatus.ONLINE, open_count=1)
    waiting = Handoff("h1", "c1", WEB, 1, HandoffReason.NEEDS_HUMAN, "billing", T0 - 55)
    held = Handoff("h2", "c2", WEB, 1, HandoffReason.NEEDS_HUMAN, "billing", T0 - 70, agent_id="ann",
                   assigned_at=T0 - 60)
    convs = [Conversation(f"c{i}", WEB, f"x{i}", Customer("u"), T0, status=ConversationStatus.QUEUED, handoff=h)
             for i, h in ((1, waiting), (2, held))]
    view = live_by_walking([ann], convs, T0, first_response_sla=60.0, warn_margin=0.2)
    assert [(s["waiting"], s["at_risk"], s["breached"]) for s in view["skills"]] == [(1, 1, 1)]
    assert view["agents"][0]["conversations"] == 1


async def test_a_long_queue_is_not_walked_for_the_views(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 waiting and 3 held: the views and the monitor's inputs look at
    the held ones and a few per skill, counted by how often a handoff's
    business time is asked for (a walk asks it of every one)."""
    clock = FakeClock(T0)
    store = FakeStore()
    store.seed_agent("ann", ["billing"], capacity=3)
    desk = Desk(store, FakeClassifier(TEXTS), clock, DeskConfig(sla=SLA(human_first_response_seconds=60.0)))
    await desk.start()
    for i in range(3):
        await desk.receive_message(WEB, IncomingMessage(f"m{i}", f"c{i}", Customer(f"u{i}"), "refund my order"))
    # Straight into the dispatcher: 20,000 commits through the fake store would take minutes.
    for i in range(20_000):
        conv = Conversation(f"q{i}", WEB, f"q{i}", Customer(f"v{i}", vip=i % 7 == 0), T0,
                            status=ConversationStatus.QUEUED)
        conv.handoff = Handoff(f"hq{i}", conv.id, WEB, 1, HandoffReason.NEEDS_HUMAN, "billing", T0 + i * 0.001,
                               vip=conv.customer.vip)
        desk._remember(conv)
    assert desk.queue_length() == 20_000
    clock.advance(100.0)
    asked = 0
    elapsed = Schedule.elapsed

    def counting(self: Schedule, skill: str | None, a: float, b: float) -> float:
        nonlocal asked
        asked += 1
        return elapsed(self, skill, a, b)

    monkeypatch.setattr(Schedule, "elapsed", counting)
    view = desk.live(0.2)
    late, judged = desk.late_first_responses(clock.now(), 48.0, 20)
    assert [s["waiting"] for s in view["skills"]] == [20_000] and late == {"billing": 20_003}
    assert len(judged) == 3 + 2 * 20
    await desk.expire_reservations()
    assert asked < 300, asked

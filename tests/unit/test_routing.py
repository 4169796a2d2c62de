"""Skill-based routing: who takes a handoff, who waits, in which order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from router.model import Agent, AgentStatus, Handoff, HandoffReason
from router.routing import Dispatcher, choose_agent
from tierdesk.errors import Conflict, NotFound

ONLINE, AWAY, OFFLINE = AgentStatus.ONLINE, AgentStatus.AWAY, AgentStatus.OFFLINE
_ids = itertools.count(1)


def agent(aid: str, skills: str = "general", capacity: int = 2, *, open_count: int = 0,
          status: AgentStatus = ONLINE, idle_since: float = 0.0) -> Agent:
    return Agent(id=aid, name=aid, skills=frozenset(skills.split()), capacity=capacity, status=status,
                 open_count=open_count, idle_since=idle_since)


def handoff(at: float, skill: str = "general", *, vip: bool = False, hid: str | None = None) -> Handoff:
    n = next(_ids)
    return Handoff(id=hid or f"ho_{n:04d}", conversation_id=f"conv_{n}", channel_id="web", seq=1,
                   reason=HandoffReason.CUSTOMER_ASKED, skill=skill, requested_at=at, vip=vip)


# ------------------------------------------------------------- choose_agent
def test_least_loaded_by_open_over_capacity() -> None:
    a = agent("a", capacity=4, open_count=1)  # 0.25
    b = agent("b", capacity=2, open_count=1)  # 0.5
    assert choose_agent([b, a], "general") is a
    # Fewer open conversations is not what counts: the share of capacity is.
    c = agent("c", capacity=1, open_count=0)
    d = agent("d", capacity=10, open_count=1)  # 0.1 but 1 open
    assert choose_agent([d, c], "general") is c


def test_equal_loads_go_to_the_agent_idle_longest() -> None:
    early = agent("zed", capacity=2, open_count=1, idle_since=100.0)
    late = agent("amy", capacity=4, open_count=2, idle_since=200.0)
    assert choose_agent([late, early], "general") is early
    assert choose_agent([early, late], "general") is early


def test_only_online_agents_with_the_skill_and_a_free_slot_are_eligible() -> None:
    away = agent("away", "billing", status=AWAY)
    offline = agent("off", "billing", status=OFFLINE)
    unskilled = agent("tech", "tech")
    full = agent("full", "billing", capacity=1, open_count=1)
    assert choose_agent([away, offline, unskilled, full], "billing") is None
    busy_but_free = agent("busy", "billing tech", capacity=3, open_count=2)
    assert choose_agent([away, offline, unskilled, full, busy_but_free], "billing") is busy_but_free


def test_capacity_zero_or_over_the_limit_takes_nothing() -> None:
    assert choose_agent([agent("z", capacity=0)], "general") is None
    assert choose_agent([agent("o", capacity=1, open_count=3)], "general") is None


# ------------------------------------------------------------------ request
def test_request_assigns_and_counts_the_slot() -> None:
    a = agent("a", capacity=4, open_count=1)
    b = agent("b", capacity=2, open_count=1)
    d = Dispatcher([a, b])
    h = handoff(10.0)
    made = d.request(h, 10.0)
    assert made is not None and made.agent is a and made.at == 10.0
    assert (h.agent_id, h.assigned_at) == ("a", 10.0)
    assert a.open_count == 2 and b.open_count == 1
    assert a.idle_since == 10.0  # it just took one
    assert d.waiting() == []
    assert d.queue_position(h) is None


def test_taking_a_conversation_resets_idle_so_equal_agents_alternate() -> None:
    d = Dispatcher([agent("a", capacity=3, idle_since=5.0), agent("b", capacity=3, idle_since=1.0)])
    order = [d.request(handoff(t), t).agent.id for t in (10.0, 11.0, 12.0, 13.0)]  # type: ignore[union-attr]
    assert order == ["b", "a", "b", "a"]


def test_capacity_is_never_exceeded_the_rest_waits() -> None:
    a = agent("a", capacity=2)
    d = Dispatcher([a])
    hs = [handoff(float(t)) for t in range(4)]
    made = [d.request(h, h.requested_at) for h in hs]
    assert [m is not None for m in made] == [True, True, False, False]
    assert a.open_count == 2
    assert [h.id for h in d.waiting()] == [hs[2].id, hs[3].id]
    assert hs[2].agent_id is None and hs[3].agent_id is None


def test_queue_is_vip_first_then_oldest_first() -> None:
    d = Dispatcher([agent("a", capacity=1)])
    held = handoff(0.0)
    d.request(held, 0.0)
    old = handoff(1.0)
    new = handoff(2.0)
    vip_late = handoff(3.0, vip=True)
    vip_later = handoff(4.0, vip=True)
    for h in (new, vip_later, old, vip_late):  # request order does not matter
        assert d.request(h, h.requested_at) is None
    assert [h.id for h in d.waiting()] == [vip_late.id, vip_later.id, old.id, new.id]
    assert [h.id for h in d.waiting(limit=3)] == [vip_late.id, vip_later.id, old.id]
    assert d.waiting_count() == 4
    # Each freed slot goes to the head of the queue.
    served = []
    current = held
    for t in (5.0, 6.0, 7.0, 8.0):
        (m,) = d.release(current, t)
        served.append(m.handoff.id)
        current = m.handoff
    assert served == [vip_late.id, vip_later.id, old.id, new.id]


def test_exact_time_ties_are_broken_by_id() -> None:
    d = Dispatcher([agent("a", capacity=1, open_count=1)])
    second = handoff(1.0, hid="ho_b")
    first = handoff(1.0, hid="ho_a")
    d.request(second, 1.0)
    d.request(first, 1.0)
    assert [h.id for h in d.waiting()] == ["ho_a", "ho_b"]


def test_queue_position_is_per_skill() -> None:
    d = Dispatcher([agent("a", "billing tech", capacity=1, open_count=1)])
    b1, t1, b2 = handoff(1.0, "billing"), handoff(2.0, "tech"), handoff(3.0, "billing")
    for h in (b1, t1, b2):
        d.request(h, h.requested_at)
    assert (d.queue_position(b1), d.queue_position(t1), d.queue_position(b2)) == (1, 1, 2)
    vip = handoff(4.0, "billing", vip=True)
    d.request(vip, 4.0)
    assert (d.queue_position(vip), d.queue_position(b1), d.queue_position(b2)) == (1, 2, 3)
    assert d.queue_position(t1) == 1
    d.release(b1, 5.0)  # the customer left while waiting
    assert d.queue_position(b1) is None
    assert d.queue_position(b2) == 2


# -------------------------------------------------------------------- drain
def full_agent_with_queue(skill: str = "general") -> tuple[Dispatcher, Agent, Handoff, list[Handoff]]:
    a = agent("a", skill, capacity=1)
    d = Dispatcher([a])
    held = handoff(0.0, skill)
    d.request(held, 0.0)
    waiting = [handoff(float(t), skill) for t in (1, 2, 3)]
    for h in waiting:
        assert d.request(h, h.requested_at) is None
    return d, a, held, waiting


def test_freed_slot_goes_to_the_oldest_waiting() -> None:
    d, a, held, waiting = full_agent_with_queue()
    made = d.release(held, 10.0)
    assert [(m.handoff.id, m.agent.id, m.at) for m in made] == [(waiting[0].id, "a", 10.0)]
    assert waiting[0].assigned_at == 10.0
    assert a.open_count == 1
    assert [h.id for h in d.waiting()] == [w.id for w in waiting[1:]]


def test_agent_coming_online_drains_and_starts_idle_now() -> None:
    b = agent("b", capacity=2, status=OFFLINE, idle_since=0.0)
    d, a, held, waiting = full_agent_with_queue()
    d.add_agent(b, 5.0)  # offline: takes nothing
    assert len(d.waiting()) == 3
    assert d.set_status("b", AWAY, 6.0) == []
    made = d.set_status("b", ONLINE, 7.0)
    assert [m.handoff.id for m in made] == [waiting[0].id, waiting[1].id]
    assert all(m.agent is b for m in made)
    assert b.open_count == 2
    assert [h.id for h in d.waiting()] == [waiting[2].id]


def test_added_online_agent_drains() -> None:
    d, _, _, waiting = full_agent_with_queue()
    made = d.add_agent(agent("b", capacity=5), 5.0)
    assert [m.handoff.id for m in made] == [h.id for h in waiting]
    assert d.waiting() == []
    with pytest.raises(Conflict):
        d.add_agent(agent("b"), 6.0)


def test_gaining_a_skill_drains_that_skill_only() -> None:
    b = agent("b", "tech", capacity=3)
    d = Dispatcher([agent("a", "billing tech", capacity=1, open_count=1), b])
    billing = handoff(1.0, "billing")
    assert d.request(billing, 1.0) is None
    assert d.update_agent("b", 2.0, name="Bea") == []
    made = d.update_agent("b", 3.0, skills=["tech", "billing"])
    assert [(m.handoff.id, m.agent.id) for m in made] == [(billing.id, "b")]
    assert b.name == "Bea"


def test_raising_capacity_drains_and_lowering_keeps_open_conversations() -> None:
    d, a, held, waiting = full_agent_with_queue()
    made = d.update_agent("a", 5.0, capacity=3)
    assert [m.handoff.id for m in made] == [waiting[0].id, waiting[1].id]
    assert a.open_count == 3
    # Lowered below the load: nothing is taken away, nothing new comes in.
    assert d.update_agent("a", 6.0, capacity=1) == []
    assert a.open_count == 3
    assert d.release(held, 7.0) == []  # 2 open, capacity 1: still full
    assert a.open_count == 2
    assert d.release(waiting[0], 8.0) == []
    made = d.release(waiting[1], 9.0)  # 0 open: takes the last waiting one
    assert [m.handoff.id for m in made] == [waiting[2].id]
    assert a.open_count == 1


def test_drain_skips_handoffs_nobody_can_take_without_blocking_the_rest() -> None:
    a = agent("a", "billing", capacity=1)
    d = Dispatcher([a, agent("t", "tech", capacity=1, status=AWAY)])
    held = handoff(0.0, "billing")
    d.request(held, 0.0)
    tech = handoff(1.0, "tech")  # older, but nobody online with tech
    billing = handoff(2.0, "billing")
    d.request(tech, 1.0)
    d.request(billing, 2.0)
    made = d.release(held, 3.0)
    assert [m.handoff.id for m in made] == [billing.id]
    assert [h.id for h in d.waiting()] == [tech.id]


def test_drain_spreads_over_free_agents_by_load() -> None:
    a = agent("a", capacity=4, open_count=2, status=OFFLINE)
    b = agent("b", capacity=2, open_count=0, status=OFFLINE)
    d = Dispatcher([a, b])
    hs = [handoff(float(t)) for t in range(4)]
    for h in hs:
        d.request(h, h.requested_at)
    d.set_status("a", ONLINE, 10.0)  # takes two, up to 4/4
    assert a.open_count == 4 and len(d.waiting()) == 2
    d.set_status("b", ONLINE, 11.0)
    assert b.open_count == 2 and d.waiting() == []


def test_release_of_a_waiting_handoff_frees_no_slot() -> None:
    d, a, held, waiting = full_agent_with_queue()
    assert d.release(waiting[1], 5.0) == []
    assert a.open_count == 1
    assert [h.id for h in d.waiting()] == [waiting[0].id, waiting[2].id]


def test_constructor_queues_only_handoffs_still_waiting() -> None:
    waiting = handoff(1.0)
    assigned = handoff(2.0)
    assigned.agent_id = "a"
    ended = handoff(3.0)
    ended.resolved_at = 4.0
    d = Dispatcher([agent("a", capacity=1, open_count=1)], [waiting, assigned, ended])
    assert [h.id for h in d.waiting()] == [waiting.id]


def test_unknown_agent_is_not_found() -> None:
    d = Dispatcher()
    with pytest.raises(NotFound):
        d.set_status("ghost", ONLINE, 0.0)
    with pytest.raises(NotFound):
        d.update_agent("ghost", 0.0, capacity=3)


# ------------------------------------------------------------------ assign_to
def test_transfer_to_a_named_agent_ignores_skills_but_not_capacity() -> None:
    tech = agent("tech", "tech", capacity=1)
    d = Dispatcher([tech])
    h = handoff(1.0, "billing")
    made = d.assign_to(h, tech, 2.0)
    assert made.agent is tech and h.agent_id == "tech" and tech.open_count == 1
    with pytest.raises(Conflict) as exc:
        d.assign_to(handoff(3.0, "billing"), tech, 3.0)
    assert exc.value.code == "agent_unavailable"
    assert tech.open_count == 1


def test_transfer_to_an_agent_who_is_away_is_refused() -> None:
    away = agent("away", capacity=5, status=AWAY)
    d = Dispatcher([away])
    h = handoff(1.0)
    with pytest.raises(Conflict):
        d.assign_to(h, away, 2.0)
    assert h.agent_id is None and away.open_count == 0


# ----------------------------------------------------------- property check
SKILLS = ("billing", "tech", "general")


class RoutingMachine(RuleBasedStateMachine):
    """Random requests, releases, status, skill and capacity changes."""

    def __init__(self) -> None:
        super().__init__()
        self.d = Dispatcher()
        self.now = 0.0
        self.n = 0
        self.open: dict[str, Handoff] = {}  # requested, not yet released
        self.held: dict[str, set[str]] = {}  # agent id -> handoffs it holds
        self.assigned_once: set[str] = set()

    def _record(self, made: list, before: dict[str, int]) -> None:  # type: ignore[type-arg]
        for m in made:
            hid = m.handoff.id
            assert hid not in self.assigned_once, f"{hid} assigned twice"
            assert hid in self.open, f"{hid} was released yet assigned"
            self.assigned_once.add(hid)
            self.held.setdefault(m.agent.id, set()).add(hid)
            assert m.handoff.agent_id == m.agent.id and m.handoff.assigned_at == self.now
        for aid in {m.agent.id for m in made}:
            a = self.d.agents[aid]
            # Each assignment needed a free slot: never over capacity because of one.
            assert a.open_count <= a.capacity, (aid, a.open_count, a.capacity)
            assert a.status is ONLINE
            assert a.open_count == before.get(aid, 0) + sum(1 for m in made if m.agent.id == aid)

    def _tick(self, dt: float) -> None:
        self.now += dt

    def _loads(self) -> dict[str, int]:
        return {a.id: a.open_count for a in self.d.agents.values()}

    @rule(skills=st.sets(st.sampled_from(SKILLS), min_size=1), capacity=st.integers(0, 3),
          status=st.sampled_from(list(AgentStatus)))
    @precondition(lambda self: len(self.d.agents) < 5)
    def add_agent(self, skills: set[str], capacity: int, status: AgentStatus) -> None:
        self._tick(1.0)
        aid = f"a{len(self.d.agents)}"
        before = self._loads()
        made = self.d.add_agent(Agent(aid, aid, frozenset(skills), capacity, status, idle_since=self.now), self.now)
        self._record(made, before)

    @rule(skill=st.sampled_from(SKILLS), vip=st.booleans(), dt=st.sampled_from([0.0, 0.5, 2.0]))
    def request(self, skill: str, vip: bool, dt: float) -> None:
        self._tick(dt)
        self.n += 1
        h = Handoff(f"h{self.n:04d}", f"c{self.n}", "web", 1, HandoffReason.OTHER, skill, self.now, vip=vip)
        self.open[h.id] = h
        before = self._loads()
        made = self.d.request(h, self.now)
        self._record([] if made is None else [made], before)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.open))
    def release(self, data: st.DataObject) -> None:
        self._tick(1.0)
        hid = data.draw(st.sampled_from(sorted(self.open)))
        h = self.open.pop(hid)
        if h.agent_id is not None:
            self.held[h.agent_id].discard(hid)
        before = self._loads()
        made = self.d.release(h, self.now)
        h.resolved_at = self.now
        if h.agent_id is not None:
            before[h.agent_id] -= 1
        self._record(made, before)

    @rule(data=st.data(), status=st.sampled_from(list(AgentStatus)))
    @precondition(lambda self: bool(self.d.agents))
    def set_status(self, data: st.DataObject, status: AgentStatus) -> None:
        self._tick(1.0)
        aid = data.draw(st.sampled_from(sorted(self.d.agents)))
        before = self._loads()
        self._record(self.d.set_status(aid, status, self.now), before)

    @rule(data=st.data(), skills=st.none() | st.sets(st.sampled_from(SKILLS)),
          capacity=st.none() | st.integers(0, 4))
    @precondition(lambda self: bool(self.d.agents))
    def update_agent(self, data: st.DataObject, skills: set[str] | None, capacity: int | None) -> None:
        self._tick(1.0)
        aid = data.draw(st.sampled_from(sorted(self.d.agents)))
        before = self._loads()
        self._record(self.d.update_agent(aid, self.now, skills=skills, capacity=capacity), before)

    @invariant()
    def loads_match_what_agents_hold(self) -> None:
        for aid, a in self.d.agents.items():
            assert a.open_count == len(self.held.get(aid, ())), aid

    @invariant()
    def no_handoff_waits_while_an_eligible_agent_has_a_free_slot(self) -> None:
        for h in self.d.waiting():
            assert h.agent_id is None
            eligible = [a.id for a in self.d.agents.values() if a.can_take(h.skill)]
            assert not eligible, f"{h.id} ({h.skill}) waits while {eligible} are free"

    @invariant()
    def waiting_is_exactly_the_open_unassigned_handoffs(self) -> None:
        waiting = {h.id for h in self.d.waiting()}
        assert waiting == {hid for hid, h in self.open.items() if h.agent_id is None}

    @invariant()
    def queue_is_ordered_vip_then_oldest(self) -> None:
        keys = [(not h.vip, h.requested_at, h.id) for h in self.d.waiting()]
        assert keys == sorted(keys)


RoutingMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRoutingProperties = RoutingMachine.TestCase

"""The simulator (router/simulation.py) drives the real Dispatcher on a
virtual clock: checked against Erlang C and Erlang A, and for the invariant
that no handoff waits while an eligible agent has a free slot.

Tolerances. A simulated mean wait at 85 % load is noisy: over 16 seeds the
standard deviation of the mean wait of a 250,000-conversation run of the
M/M/10 below was 4.6 % of it, and of its service level 0.65 points (Erlang A,
patience 10 min, 100,000 conversations: 2.6 % and 0.58 points). For the
target tolerances (mean wait ±5 %, service level ±1.5 points) to be several
standard errors wide takes millions of conversations: `bench/simulate_bench.py`
runs them (16 seeds each; its output is in docs/routing.md). The runs here
are 200,000 conversations (about 2 s of CPU each) with tolerances of four
standard deviations at that length, which a slot left idle, a queue served
out of order or a lost customer still breaks.
"""

from __future__ import annotations

import math
import random

import pytest

from router.model import Agent
from router.queueing import erlang_a, erlang_c_performance
from router.simulation import (
    CHOOSERS,
    AgentSpec,
    Arrival,
    Exponential,
    Fixed,
    LogNormal,
    SkillTraffic,
    Simulation,
    gini,
    percentile,
    poisson_arrivals,
)

HANDLE = 300.0  # seconds
C = 10
LAM = 0.85 * C / HANDLE  # 85 % load
N = 200_000
WARMUP = 100 * HANDLE


def one_skill_desk(n: int = C) -> list[AgentSpec]:
    return [AgentSpec(f"a{i:02d}", frozenset({"general"}), 1) for i in range(n)]


def run_mmc(seed: int, patience: float | None = None, n: int = N) -> dict:
    traffic = [SkillTraffic("general", LAM, Exponential(HANDLE), Exponential(patience) if patience else None)]
    result = Simulation(one_skill_desk(), seed=seed, warmup=WARMUP).run(poisson_arrivals(traffic, seed=seed, count=n))
    return result.summary(samples=False)


def test_erlang_c_one_skill_ten_agents_at_85_percent() -> None:
    theory = erlang_c_performance(C, LAM, 1 / HANDLE, 20.0)
    s = run_mmc(seed=1)
    assert s["abandoned"] == 0 and s["unanswered"] == 0
    assert s["mean_wait"] == pytest.approx(theory.mean_wait, rel=0.20)  # 4 sd at 200,000
    assert s["service_level"] == pytest.approx(theory.service_level, abs=0.03)
    assert s["occupancy"]["mean"] == pytest.approx(0.85, abs=0.02)


def test_erlang_a_with_exponential_patience() -> None:
    patience = 600.0
    theory = erlang_a(C, LAM, 1 / HANDLE, 1 / patience, 20.0)
    s = run_mmc(seed=2, patience=patience)
    # Time in queue of every customer (answered or gone) and abandonment: 4 sd.
    assert s["mean_time_in_queue"] == pytest.approx(theory.mean_wait, rel=0.08)
    assert s["abandonment"] == pytest.approx(theory.abandonment, rel=0.08)
    assert s["mean_wait"] == pytest.approx(theory.mean_answer_wait, rel=0.09)
    assert s["service_level"] == pytest.approx(theory.service_level, abs=0.02)


def test_a_run_is_reproducible_and_choosers_see_the_same_customers() -> None:
    def run(chooser: str, seed: int) -> dict:
        traffic = [SkillTraffic("billing", 0.01, LogNormal(200, 1.5), Exponential(120), vip_share=0.2),
                   SkillTraffic("tech", [0.002, 0.01], Exponential(400))]
        agents = [AgentSpec("a", frozenset({"billing", "tech"}), 2), AgentSpec("b", frozenset({"billing"}), 3)]
        return Simulation(agents, chooser=chooser, seed=seed).run(
            poisson_arrivals(traffic, seed=seed, count=3000)).summary()

    assert run("least-loaded", 5) == run("least-loaded", 5)
    assert run("random", 5) == run("random", 5)
    assert run("least-loaded", 5) != run("least-loaded", 6)
    offered = {c: (run(c, 5)["offered"], run(c, 5)["skills"]["billing"]["offered"]) for c in CHOOSERS}
    assert len(set(offered.values())) == 1


def mixed_desk() -> tuple[list[AgentSpec], list[SkillTraffic]]:
    skills = ["billing", "tech", "general"]
    agents = []
    for i in range(12):
        held = {skills[i % 3], skills[(i + 1) % 3]} if i % 4 else {skills[i % 3]}
        # Half the desk works two shifts a day; agents leave with conversations open.
        shifts = None if i < 6 else ((3600.0 * (i - 5), 3600.0 * (i + 3)), (3600.0 * (i + 5), 3600.0 * (i + 9)))
        agents.append(AgentSpec(f"a{i:02d}", frozenset(held), 1 + i % 3, shifts))
    traffic = [SkillTraffic("billing", [0.004, 0.012, 0.02, 0.006], LogNormal(400, 1.2), Exponential(300), 0.1),
               SkillTraffic("tech", 0.006, Exponential(500), Exponential(900), 0.2),
               SkillTraffic("general", [0.01, 0.002], Exponential(300))]
    return agents, traffic


@pytest.mark.parametrize("chooser", CHOOSERS)
def test_no_handoff_waits_while_an_eligible_agent_has_a_free_slot(chooser: str) -> None:
    agents, traffic = mixed_desk()
    result = Simulation(agents, chooser=chooser, seed=3, check=True).run(
        poisson_arrivals(traffic, seed=3, until=2 * 86400.0))
    s = result.summary(samples=False)
    assert s["queue"]["max_length"] >= 5 and s["abandoned"] > 0  # the queue was really used
    assert result.violations == 0
    assert s["offered"] == s["answered"] + s["abandoned"] + s["unanswered"]


def test_the_check_catches_a_chooser_that_leaves_a_slot_idle() -> None:
    from router.routing import choose_agent

    coin = random.Random(1)

    def lazy(agents, skill, exclude=None, weight=1) -> Agent | None:  # type: ignore[no-untyped-def]
        return choose_agent(agents, skill, exclude, weight) if coin.random() < 0.9 else None

    agents, traffic = mixed_desk()
    result = Simulation(agents, chooser=lazy, seed=3, check=True).run(poisson_arrivals(traffic, seed=3, count=3000))
    assert result.violations > 0


def test_vip_handoffs_wait_less() -> None:
    traffic = [SkillTraffic("general", LAM, Exponential(HANDLE), vip_share=0.2)]
    s = Simulation(one_skill_desk(), seed=4, warmup=WARMUP).run(
        poisson_arrivals(traffic, seed=4, count=30_000)).summary(samples=False)
    assert s["vip"]["offered"] > 5000
    assert s["vip"]["mean_wait"] < s["mean_wait"] / 3


def test_occupancy_counts_shifts_and_the_conversations_finished_after_them() -> None:
    # One agent online for the first hour only; one conversation of 30 min
    # arrives at 50 min and is finished after the shift: staffed 80 min, busy 30.
    agents = [AgentSpec("a", frozenset({"general"}), 1, shifts=((0.0, 3600.0),))]
    arrivals = [Arrival(0.0, "general", 0.0), Arrival(3000.0, "general", 1800.0)]
    result = Simulation(agents).run(arrivals, until=7200.0)
    a = result.agents["a"]
    assert a.staffed == pytest.approx(4800.0) and a.busy == pytest.approx(1800.0)
    # A handoff arriving after the shift waits for ever (no patience): unanswered.
    late = Simulation(agents).run([Arrival(4000.0, "general", 60.0)], until=7200.0).summary()
    assert late["unanswered"] == 1 and late["service_level"] == 0.0


def test_queue_samples_stay_few_however_long_the_run() -> None:
    traffic = [SkillTraffic("general", 2 * LAM, Exponential(HANDLE))]
    result = Simulation(one_skill_desk(), sample_every=1.0).run(poisson_arrivals(traffic, seed=1, count=6000))
    assert 1000 <= len(result.samples) < 4000
    times = [t for t, _, _ in result.samples]
    assert times == sorted(times)
    # Overloaded (170 %): the queue grows, and the samples show it.
    assert result.samples[-1][1] > result.samples[len(result.samples) // 2][1] > 500


def test_slot_service_levels() -> None:
    agents = [AgentSpec("a", frozenset({"general"}), 1)]
    arrivals = [Arrival(10.0, "general", 100.0), Arrival(20.0, "general", 10.0), Arrival(1000.0, "general", 5.0)]
    result = Simulation(agents, slot_seconds=900.0).run(arrivals)
    assert result.slot_service_levels() == {(0, "general"): (2, 0.5), (1, "general"): (1, 1.0)}


def test_poisson_arrivals_follow_the_profile() -> None:
    # 96 quarter hours, busy from 09:00 to 17:00 only.
    profile = [0.05 if 36 <= i < 68 else 0.0 for i in range(96)]
    arrivals = list(poisson_arrivals([SkillTraffic("general", profile, Fixed(60))], seed=1, until=7 * 86400.0))
    hours = {int(a.at % 86400 // 3600) for a in arrivals}
    assert hours == set(range(9, 17))
    assert len(arrivals) == pytest.approx(7 * 8 * 3600 * 0.05, rel=0.03)
    assert all(a.handle == 60 and a.patience == math.inf for a in arrivals)


def test_lognormal_handle_times_have_the_mean_and_spread_asked_for() -> None:
    rng = random.Random(1)
    d = LogNormal(300.0, 1.5)
    xs = [d.sample(rng) for _ in range(200_000)]
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    assert mean == pytest.approx(300.0, rel=0.03)
    assert sd / mean == pytest.approx(1.5, rel=0.1)


def test_gini_and_percentile() -> None:
    assert gini([0.8] * 10) == pytest.approx(0.0, abs=1e-12)
    assert gini([0.0, 0.0, 0.0, 1.0]) == pytest.approx(0.75)
    assert percentile([5, 1, 4, 2, 3], 0.9) == 5
    assert percentile(list(range(1, 101)), 0.9) == 90
    assert percentile([], 0.5) is None


def test_a_starved_skill_is_served_through_its_fallback_and_not_before_the_delay() -> None:
    """The simulator applies the router's fallback rule: billing's agents
    are all away; without fallback its handoffs are never answered, with
    billing → general after 30 s every one is, without waiting out the delay
    for nobody; with a billing agent online, general takes a billing handoff
    only once it has waited 30 s for her."""
    from router.routing import Fallback
    from router.simulation import Exponential, SkillTraffic

    agents = [AgentSpec(f"g{i}", frozenset({"general"}), 1) for i in range(5)]
    traffic = [SkillTraffic("general", 0.5 * 5 / 300.0 * 0.9, Exponential(300.0)),
               SkillTraffic("billing", 0.5 * 5 / 300.0 * 0.1, Exponential(300.0))]
    fallback = {"billing": (Fallback("general", 30.0),)}

    def billing(roster, fallback):  # type: ignore[no-untyped-def]
        sim = Simulation(roster, seed=3, fallback=fallback, keep=True)
        result = sim.run(poisson_arrivals(traffic, seed=3, count=3_000))
        return [h for h in result.handoffs if h.skill == "billing"]

    starved = billing(agents, None)
    assert starved and all(h.agent_id is None for h in starved)
    served = billing(agents, fallback)
    assert [h.id for h in served] == [h.id for h in starved]
    assert all(h.agent_id is not None for h in served)
    assert any(h.assigned_at - h.requested_at < 30.0 for h in served)
    with_bea = billing([*agents, AgentSpec("bea", frozenset({"billing"}), 1)], fallback)
    by_general = [h for h in with_bea if h.agent_id != "bea"]
    assert by_general and all(h.assigned_at - h.requested_at >= 30.0 for h in by_general)

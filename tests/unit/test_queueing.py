"""The waiting queue is an M/M/c system per skill: check it against Erlang C
(router/queueing.py; the formulas' own checks are in test_queueing_formulas.py).

A discrete-event simulation drives the real Dispatcher with a FakeClock:
customers hand off at Poisson times, each conversation holds an agent slot
for an exponential time, and slots are freed with Dispatcher.release, which
drains the queue. With c slots (the sum of the agents' capacities), offered
load a = λ/μ < c, Erlang C gives the probability of waiting

    C(c, a) = (a^c / c!) · c/(c − a)  /  ( Σ_{k<c} a^k / k!  +  (a^c / c!) · c/(c − a) )

and the mean queue wait Wq = C(c, a) / (cμ − λ). With VIP handoffs served
first (non-preemptive priority, same handling time), Cobham's formula gives
each class's mean wait: W_k = (C / cμ) / ((1 − σ_{k−1})(1 − σ_k)), where σ_k is
the load of classes up to k divided by c.

The runs are seeded, so the figures are deterministic; the tolerances are
about three standard deviations of the simulated means (see below).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import pytest

from router.model import Agent, AgentStatus, Handoff, HandoffReason
from router.ports import FakeClock
from router.queueing import erlang_c, erlang_c_mean_wait
from router.routing import Dispatcher


def mean_wait(c: int, lam: float, mu: float) -> float:
    return erlang_c_mean_wait(c, lam, mu)


@dataclass
class Result:
    waits: list[float]
    vip_waits: list[float]
    regular_waits: list[float]
    max_open_over_capacity: int

    @property
    def mean(self) -> float:
        return sum(self.waits) / len(self.waits)

    @property
    def p_wait(self) -> float:
        return sum(1 for w in self.waits if w > 0) / len(self.waits)


def simulate(capacities: list[int], lam: float, mu: float, n: int, *, seed: int, vip_share: float = 0.0,
             warmup: int = 2000) -> Result:
    rng = random.Random(seed)
    clock = FakeClock(0.0)
    agents = [Agent(f"a{i}", f"a{i}", frozenset({"general"}), cap, AgentStatus.ONLINE)
              for i, cap in enumerate(capacities)]
    d = Dispatcher(agents)
    events: list[tuple[float, int, Handoff | None]] = []  # (time, seq, handoff ending) or arrival
    seq = 0
    done: list[Handoff] = []
    worst = 0

    def schedule_end(h: Handoff) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (clock.now() + rng.expovariate(mu), seq, h))

    heapq.heappush(events, (rng.expovariate(lam), 0, None))
    arrivals = 0
    while events:
        t, _, ending = heapq.heappop(events)
        clock.set(t)
        if ending is None:
            arrivals += 1
            h = Handoff(f"h{arrivals:07d}", f"c{arrivals}", "web", 1, HandoffReason.OTHER, "general",
                        requested_at=t, vip=rng.random() < vip_share)
            done.append(h)
            if d.request(h, t) is not None:
                schedule_end(h)
            if arrivals < n:
                seq += 1
                heapq.heappush(events, (t + rng.expovariate(lam), seq, None))
        else:
            ending.resolved_at = t
            for made in d.release(ending, t):
                schedule_end(made.handoff)
        worst = max(worst, max(a.open_count - a.capacity for a in agents))
    measured = done[warmup:]
    assert all(h.assigned_at is not None for h in measured)
    waits = [h.assigned_at - h.requested_at for h in measured]  # type: ignore[operator]
    return Result(
        waits=waits,
        vip_waits=[w for h, w in zip(measured, waits, strict=True) if h.vip],
        regular_waits=[w for h, w in zip(measured, waits, strict=True) if not h.vip],
        max_open_over_capacity=worst,
    )


def test_erlang_c_reference_values() -> None:
    # Textbook values: one server is M/M/1 (P(wait) = ρ, Wq = ρ/(μ − λ)).
    assert erlang_c(1, 0.5) == pytest.approx(0.5)
    assert mean_wait(1, 0.5, 1.0) == pytest.approx(1.0)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(5, 4.0) == pytest.approx(0.5541, abs=1e-4)


# Tolerances are about three standard deviations of the simulated figure over
# seeds at n = 40 000 (measured: mean wait ±5 % at ρ ≤ 0.7 and ±7 % at 0.8,
# P(wait) ±2 %), so a seed change does not break them while a routing change
# that leaves a slot idle, overfills one or serves out of order does.
N = 40_000


@pytest.mark.parametrize(("capacities", "lam", "seed"), [
    ([5], 3.5, 1),  # one agent with five slots, ρ = 0.7
    ([2, 2, 1], 3.5, 2),  # the same five slots over three agents
    ([1, 1, 1, 1], 2.4, 3),  # four single-slot agents, ρ = 0.6
])
def test_mean_queue_wait_matches_erlang_c(capacities: list[int], lam: float, seed: int) -> None:
    c, mu = sum(capacities), 1.0
    r = simulate(capacities, lam, mu, n=N, seed=seed)
    assert r.max_open_over_capacity <= 0
    assert r.p_wait == pytest.approx(erlang_c(c, lam / mu), rel=0.06)
    assert r.mean == pytest.approx(mean_wait(c, lam, mu), rel=0.15)


def test_vip_waits_follow_the_non_preemptive_priority_formula() -> None:
    c, lam, mu, share = 5, 4.0, 1.0, 0.2  # ρ = 0.8, one handoff in five is VIP
    r = simulate([5], lam, mu, n=N, seed=4, vip_share=share)
    base = erlang_c(c, lam / mu) / (c * mu)
    s1 = share * lam / (c * mu)
    s2 = lam / (c * mu)
    vip, regular = base / (1 - s1), base / ((1 - s1) * (1 - s2))  # 0.13 s and 0.66 s
    assert sum(r.vip_waits) / len(r.vip_waits) == pytest.approx(vip, rel=0.10)
    assert sum(r.regular_waits) / len(r.regular_waits) == pytest.approx(regular, rel=0.20)
    # Priority moves waiting between classes; the total stays Erlang C's.
    assert r.mean == pytest.approx(mean_wait(c, lam, mu), rel=0.20)


def test_slots_are_interchangeable_across_agents() -> None:
    # Routing by load is work-conserving: no slot idles while a handoff waits,
    # so five slots on one agent and 2 + 2 + 1 over three agents give the very
    # same waits for the same arrivals and handling times.
    one = simulate([5], 4.0, 1.0, n=10_000, seed=7, warmup=0)
    three = simulate([2, 2, 1], 4.0, 1.0, n=10_000, seed=7, warmup=0)
    assert one.waits == three.waits
    assert one.p_wait > 0.3  # the queue was really used

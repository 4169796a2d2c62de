"""The queueing formulas of router/queueing.py: textbook values, the
identities they must satisfy, and Erlang A against an independent solution
of the same Markov chain (dense matrices, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import expm

from router.queueing import (
    erlang_a,
    erlang_b,
    erlang_c,
    erlang_c_mean_wait,
    erlang_c_performance,
    erlang_c_service_level,
    performance,
)


def test_textbook_values() -> None:
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = ρ
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(5, 4.0) == pytest.approx(0.5541, abs=1e-4)
    # docs/routing.md's table: 0.8 handoffs a minute, 5 minutes each.
    lam, mu = 0.8 / 60, 1 / 300
    assert [round(erlang_c(c, 4.0), 3) for c in (5, 6, 7, 8)] == [0.554, 0.285, 0.135, 0.059]
    assert erlang_c_mean_wait(5, lam, mu) == pytest.approx(2.77 * 60, rel=1e-3)
    # M/M/1: P(W > t) = ρ e^{−(μ−λ)t}.
    assert erlang_c_service_level(1, 0.5, 1.0, 2.0) == pytest.approx(1 - 0.5 * math.exp(-1.0))


def test_large_desks_do_not_overflow() -> None:
    # The recursion stays finite where a^c / c! would not.
    p = erlang_c(400, 380.0)
    assert 0 < p < 1
    assert erlang_c_mean_wait(400, 380.0, 1.0) > 0


def test_unstable_or_empty_desks() -> None:
    assert erlang_c(3, 3.0) == 1.0
    assert erlang_c_mean_wait(3, 3.0, 1.0) == math.inf
    assert erlang_c_service_level(3, 4.0, 1.0, 20) == 0.0
    assert performance(0, 1.0, 1.0, 20).service_level == 0.0
    assert performance(0, 1.0, 1.0, 20, theta=0.5).abandonment == 1.0
    assert performance(4, 0.0, 1.0, 20).service_level == 1.0


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    c, mu, lam = 10, 1 / 300, 8.5 / 300
    base = erlang_c_performance(c, lam, mu, 20)
    near = erlang_a(c, lam, mu, 1e-9, 20)
    assert near.p_wait == pytest.approx(base.p_wait, rel=1e-5)
    assert near.mean_wait == pytest.approx(base.mean_wait, rel=1e-5)
    assert near.service_level == pytest.approx(base.service_level, rel=1e-5)


@pytest.mark.parametrize(("c", "lam", "mu", "theta"), [
    (10, 8.5 / 300, 1 / 300, 1 / 600),
    (10, 12 / 300, 1 / 300, 1 / 200),  # overloaded: abandonment keeps it stable
    (3, 0.05, 0.02, 0.01),
])
def test_erlang_a_identities(c: int, lam: float, mu: float, theta: float) -> None:
    p = erlang_a(c, lam, mu, theta, 20)
    # Little: mean time in queue = E[queue length] / λ, and those who leave
    # do so at rate θ per waiting customer: abandonment = θ·E[queue] / λ.
    assert p.abandonment == pytest.approx(theta * p.mean_wait, rel=1e-9)
    # Carried load = what is answered: occupancy · c = (1 − abandonment) · λ/μ.
    assert p.occupancy * c == pytest.approx((1 - p.abandonment) * lam / mu, rel=1e-9)
    assert p.mean_answer_wait < p.mean_wait / (1 - p.abandonment) * 2


@pytest.mark.parametrize(("c", "lam", "mu", "theta", "t"), [
    (10, 8.5 / 300, 1 / 300, 1 / 600, 20.0),
    (10, 12 / 300, 1 / 300, 1 / 200, 60.0),
    (3, 0.05, 0.02, 0.01, 30.0),
])
def test_erlang_a_service_level_against_a_dense_solution(c: int, lam: float, mu: float, theta: float,
                                                          t: float) -> None:
    n = c + 400
    q = np.zeros((n + 1, n + 1))
    for i in range(n + 1):
        if i < n:
            q[i, i + 1] = lam
        if i > 0:
            q[i, i - 1] = min(i, c) * mu + max(i - c, 0) * theta
        q[i, i] = -q[i].sum()
    a = np.vstack([q.T, np.ones(n + 1)])
    b = np.zeros(n + 2)
    b[-1] = 1
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    k = n - c
    # The tagged customer: k ahead (0..k), then served (k+1) or gone (k+2).
    g = np.zeros((k + 3, k + 3))
    for j in range(k + 1):
        g[j, k + 1 if j == 0 else j - 1] += c * mu + j * theta
        g[j, k + 2] += theta
        g[j, j] = -g[j].sum()
    start = np.zeros(k + 3)
    start[: k + 1] = pi[c:]
    dense = pi[:c].sum() + (start @ expm(g * t))[k + 1]
    assert erlang_a(c, lam, mu, theta, t).service_level == pytest.approx(dense, abs=1e-9)

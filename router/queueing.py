"""Queueing formulas: how long customers wait for a given number of slots.

**Erlang C** (M/M/c): handoffs arrive as a Poisson process at rate λ, each
holds a slot for an exponential time with mean 1/μ, there are c slots, and
nobody leaves the queue. **Erlang A** (M/M/c+M): the same, but a waiting
customer leaves after an exponential patience with mean 1/θ. docs/routing.md
("The queueing view") gives the formulas and their limits.

The staffing forecast (router/staffing.py) sizes the desk with them and the
simulator's tests (tests/unit/test_simulation.py) check the real router
against them. Rates are per second; waits in seconds.

Pure Python (math only): one evaluation costs microseconds for Erlang C and
well under a millisecond for Erlang A at the queue lengths a staffed desk
sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Performance:
    """What customers see, in the long run, for one arrival stream."""

    p_wait: float  # share of arrivals that find every slot busy
    mean_wait: float  # mean time in queue of every arrival, until answered or gone
    mean_answer_wait: float  # mean wait of those answered (assignment − request)
    abandonment: float  # share of arrivals that leave before an agent takes them
    service_level: float  # share answered within `within` s (those who left count as not)
    within: float
    occupancy: float  # busy slots ÷ slots

    def as_dict(self) -> dict[str, float]:
        return {k: _finite(getattr(self, k)) for k in self.__slots__}  # type: ignore[attr-defined]


def _finite(x: float) -> float | None:  # type: ignore[return]
    return x if math.isfinite(x) else None  # type: ignore[return-value]


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of c servers with offered load a (Erlangs), by the
    recursion B(k) = a·B(k−1) / (k + a·B(k−1)): stable for any c."""
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits (c slots, load a Erlangs); 1 when a ≥ c."""
    if a <= 0:
        return 0.0
    if c <= 0 or a >= c:
        return 1.0
    b = erlang_b(c, a)
    return c * b / (c - a * (1 - b))


def erlang_c_mean_wait(c: int, lam: float, mu: float) -> float:
    """Mean queue wait Wq = C(c, a) / (cμ − λ); infinite when unstable."""
    if lam <= 0:
        return 0.0
    if c * mu <= lam:
        return math.inf
    return erlang_c(c, lam / mu) / (c * mu - lam)


def erlang_c_service_level(c: int, lam: float, mu: float, within: float) -> float:
    """P(wait ≤ within) = 1 − C(c, a)·e^{−(cμ−λ)·within} (FIFO)."""
    if lam <= 0:
        return 1.0
    if c * mu <= lam:
        return 0.0
    return 1.0 - erlang_c(c, lam / mu) * math.exp(-(c * mu - lam) * within)


def erlang_c_performance(c: int, lam: float, mu: float, within: float) -> Performance:
    wq = erlang_c_mean_wait(c, lam, mu)
    return Performance(
        p_wait=erlang_c(c, lam / mu) if lam > 0 else 0.0, mean_wait=wq, mean_answer_wait=wq, abandonment=0.0,
        service_level=erlang_c_service_level(c, lam, mu, within), within=within,
        occupancy=min(1.0, lam / (mu * c)) if c > 0 else (1.0 if lam > 0 else 0.0),
    )


# Stationary probabilities below e^-36 of the largest are left out (1e-16).
_TAIL = 36.0


def erlang_a(c: int, lam: float, mu: float, theta: float, within: float) -> Performance:
    """M/M/c+M by its birth–death chain (states = customers present, death
    rate min(n, c)·μ + max(n − c, 0)·θ), truncated where the stationary
    probability is negligible, and a tagged customer's passage through the
    queue: with k customers ahead, the next change comes at rate
    r_k = cμ + (k+1)θ, and is the queue moving (rate cμ + kθ) or the
    customer leaving (θ). So P(answered | k) = cμ / r_k (the product
    telescopes), and the answer wait, given answered, is a sum of
    exponentials with rates r_k … r_0; its distribution at `within` comes
    from uniformisation of the tagged chain."""
    if theta <= 0:
        return erlang_c_performance(c, lam, mu, within)
    if lam <= 0:
        return Performance(0.0, 0.0, 0.0, 0.0, 1.0, within, 0.0)
    log_lam = math.log(lam)
    logw = [0.0]
    peak = 0.0
    n = 0
    while True:
        n += 1
        death = min(n, c) * mu + max(n - c, 0) * theta
        w = logw[-1] + log_lam - math.log(death)
        logw.append(w)
        peak = max(peak, w)
        if n >= c and w < peak - _TAIL:
            break
    norm = peak + math.log(sum(math.exp(x - peak) for x in logw))
    pi = [math.exp(x - norm) for x in logw]
    cmu = c * mu
    queued = pi[c:]  # an arrival finds k = 0, 1, … customers ahead
    p_wait = sum(queued)
    abandon = 0.0
    time_in_queue = 0.0
    answered_wait = 0.0
    e_prev = 0.0  # mean time in queue with k − 1 ahead
    h = 0.0  # Σ 1/r_i for i ≤ k: the mean answer wait given answered
    for k, p in enumerate(queued):
        r = cmu + (k + 1) * theta
        served = cmu / r
        e_k = 1.0 / r + (cmu + k * theta) / r * e_prev
        h += 1.0 / r
        abandon += p * (1.0 - served)
        time_in_queue += p * e_k
        answered_wait += p * served * h
        e_prev = e_k
    answered = 1.0 - abandon
    busy = sum(min(i, c) * p for i, p in enumerate(pi))
    return Performance(
        p_wait=p_wait, mean_wait=time_in_queue,
        mean_answer_wait=answered_wait / answered if answered > 0 else math.inf,
        abandonment=abandon,
        service_level=sum(pi[:c]) + _answered_within(queued, cmu, theta, within),
        within=within, occupancy=busy / c if c > 0 else 1.0,
    )


def _answered_within(start: list[float], cmu: float, theta: float, t: float) -> float:
    """P(answered by t) for a tagged customer starting with k ahead with
    probability start[k], by uniformisation: the continuous chain observed
    at the jumps of a Poisson clock of rate Λ ≥ every exit rate."""
    if not start or t <= 0:
        return 0.0
    if cmu <= 0:
        return 0.0
    size = len(start)
    big = cmu + size * theta
    x = big * t
    steps = int(x + 10.0 * math.sqrt(x) + 25)
    stay = [1.0 - (cmu + (k + 1) * theta) / big for k in range(size)]
    move = [(cmu + k * theta) / big for k in range(size)]  # k → k − 1 (k ≥ 1)
    v = list(start)
    served = 0.0
    total = 0.0
    log_weight = -x  # Poisson(j; x), j = 0
    for j in range(steps + 1):
        total += math.exp(log_weight) * served
        served += v[0] * cmu / big
        v = [v[k] * stay[k] + (v[k + 1] * move[k + 1] if k + 1 < size else 0.0) for k in range(size)]
        log_weight += math.log(x) - math.log(j + 1)
    # Mass of the Poisson clock beyond `steps` is negligible (> 10 sd out).
    return total


def performance(c: int, lam: float, mu: float, within: float, theta: float = 0.0) -> Performance:
    """Erlang A when customers leave (θ > 0), Erlang C otherwise."""
    if lam <= 0:
        return Performance(0.0, 0.0, 0.0, 0.0, 1.0, within, 0.0)
    if c <= 0:  # nobody to answer: everyone waits for ever, or leaves
        if theta > 0:
            return Performance(1.0, 1.0 / theta, math.inf, 1.0, 0.0, within, 0.0)
        return Performance(1.0, math.inf, math.inf, 0.0, 0.0, within, 0.0)
    return erlang_a(c, lam, mu, theta, within) if theta > 0 else erlang_c_performance(c, lam, mu, within)

"""A larger machine's capacity, projected from the CPU per message measured
on this one. Arithmetic only: no figure here was measured on 4, 8 or 16
cores.

The model (docs/performance.md, "Capacity on more cores"):

* A message costs ``server_ms`` of CPU in tierdesk and ``db_ms`` in
  PostgreSQL (one process, saturated: the batches as full as they get);
  ``loop_ms`` of the server's share is its event loop's thread, which can
  give at most one core per process.
* N processes (workers or instances) on one PostgreSQL cost more per
  message than one: each reads back what the others changed. The bench
  measures that factor with 2 processes against 1 at the same offered rate
  (``k_server``, ``k_db``); N processes are taken to pay it (N - 1) times
  over, ``cost(N) = cost(1) * (1 + (N - 1) * (k - 1))``, as each change is
  read back by each other process. A factor under 1 (noise) counts as 1.
* One machine of C cores running N workers and PostgreSQL: the rate is
  bounded by the CPU, ``C * 1000 / (server(N) + db(N))`` messages a second,
  and by the event loops, ``N * 1000 / loop(N)``; N is chosen to give the most.
* PostgreSQL as the limit: with tierdesk's processes spread over other
  machines, one PostgreSQL of C cores is full at ``C * 1000 / db(N)``
  messages a second; the processes it takes to send that many are where
  adding more stops helping.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

CORES = (4, 8, 16)
# What to plan at: bursts, the collector's reclaims and the neighbours need the rest.
PLAN_SHARE = 0.7
MIX = (("faq", 0.7), ("handoff", 0.3))


@dataclass(frozen=True)
class Costs:
    """CPU milliseconds per message, and the factors a second process adds."""
    server_ms: float
    loop_ms: float
    db_ms: float
    k_server: float = 1.0
    k_db: float = 1.0

    def at(self, n: int) -> tuple[float, float, float]:
        """(server, loop, db) ms per message with n processes on one PostgreSQL."""
        fs = 1 + (n - 1) * max(0.0, self.k_server - 1)
        fd = 1 + (n - 1) * max(0.0, self.k_db - 1)
        return self.server_ms * fs, self.loop_ms * fs, self.db_ms * fd


@dataclass(frozen=True)
class OneMachine:
    cores: int
    processes: int
    rate: float  # messages a second with every core busy
    plan_rate: float  # at PLAN_SHARE of it
    tierdesk_cores: float
    postgresql_cores: float
    bound: str  # "CPU" or "event loops"


def one_machine(costs: Costs, cores: int) -> OneMachine:
    best: OneMachine | None = None
    for n in range(1, cores + 1):
        s, loop, d = costs.at(n)
        cpu_rate = cores * 1000 / (s + d)
        loop_rate = n * 1000 / loop
        rate = min(cpu_rate, loop_rate)
        if best is None or rate > best.rate:
            best = OneMachine(cores, n, rate, rate * PLAN_SHARE, rate * s / 1000, rate * d / 1000,
                              "CPU" if cpu_rate <= loop_rate else "event loops")
    assert best is not None
    return best


@dataclass(frozen=True)
class PostgresLimit:
    cores: int  # PostgreSQL's, on a machine of its own
    rate: float | None  # messages a second at which they are all busy; None: never reached
    processes: int | None  # tierdesk processes it takes to send that many
    tierdesk_ceiling: float  # the most any number of processes sends (their read-backs grow with their number)


def postgres_limit(costs: Costs, cores: int, max_processes: int = 512) -> PostgresLimit:
    ceiling = 0.0
    for n in range(1, max_processes + 1):
        _, loop, d = costs.at(n)
        app_rate = n * 1000 / loop
        pg_rate = cores * 1000 / d
        ceiling = max(ceiling, min(app_rate, pg_rate))
        if app_rate >= pg_rate:
            return PostgresLimit(cores, pg_rate, n, ceiling)
    return PostgresLimit(cores, None, None, ceiling)


def mixed(parts: list[tuple[Costs, float]]) -> Costs:
    """The costs of a mix: each figure weighted by its share of the messages."""
    def w(attr: str) -> float:
        return sum(getattr(c, attr) * share for c, share in parts)

    # The factors weigh by what they multiply, so that cost(N) stays the mix of the parts' costs(N).
    server, db = w("server_ms"), w("db_ms")
    k_s = 1 + sum(c.server_ms * share * max(0.0, c.k_server - 1) for c, share in parts) / server if server else 1.0
    k_d = 1 + sum(c.db_ms * share * max(0.0, c.k_db - 1) for c, share in parts) / db if db else 1.0
    return Costs(server, w("loop_ms"), db, k_s, k_d)


def costs_from(results: dict[str, Any], path: str) -> Costs | None:
    """One path's costs in a run of bench/run.py: PostgreSQL saturated, and
    the 2-worker factors at the same open-loop rate."""
    t = results.get("targets", {})
    sat = t.get("postgresql", {}).get(path, {}).get("saturated") or {}
    if not sat.get("server_cpu_ms_per_req") or not sat.get("database_cpu_ms_per_req"):
        return None
    one = t.get("postgresql", {}).get(path, {}).get("half") or {}
    two = t.get("postgresql-workers", {}).get(path, {}).get("half") or {}

    def factor(key: str) -> float:
        a, b = one.get(key), two.get(key)
        return round(b / a, 3) if a and b else 1.0

    return Costs(sat["server_cpu_ms_per_req"], sat.get("server_main_thread_cpu_ms_per_req")
                 or sat["server_cpu_ms_per_req"], sat["database_cpu_ms_per_req"],
                 factor("server_cpu_ms_per_req"), factor("database_cpu_ms_per_req"))


def project_run(results: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Costs] = {}
    for path in ("faq", "handoff"):
        c = costs_from(results, path)
        if c is not None:
            paths[path] = c
    if len(paths) == 2:
        paths["mix"] = mixed([(paths[p], share) for p, share in MIX])
    return {
        "method": "bench/projection.py",
        "plan_share": PLAN_SHARE,
        "paths": {p: {"costs": asdict(c),
                      "one_machine": [asdict(one_machine(c, n)) for n in CORES],
                      "postgresql_limit": [asdict(postgres_limit(c, n)) for n in CORES]}
                  for p, c in paths.items()},
    }

"""The targets of the performance issue, and each run checked against them."""

from __future__ import annotations

from typing import Any

from targets import DB_TARGETS, PG_TARGETS

# Targets of the performance issue.
TARGETS = {
    "sqlite_faq_ratio": 0.30,
    "sqlite_faq_p99_ms": 25.0,
    "sqlite_faq_half_p99_ms": 10.0,
    "postgresql_faq_ratio": 0.25,
    "handoff_ratio": 0.20,
}


def failed_requests(target: dict[str, Any]) -> int:
    bad = 0
    for r in all_runs(target):
        bad += int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
        bad += int(r.get("unfinished", 0) or 0)
    return bad


def all_runs(target: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for path in ("faq", "handoff") for k in ("saturated", "half")
            if isinstance(r := target.get(path, {}).get(k), dict)]


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    t = results["targets"]
    checks: list[dict[str, Any]] = []
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")

    def add(name: str, value: Any, op: str, threshold: Any, unit: str = "") -> None:
        if value is None:
            passed = False
        elif op == ">=":
            passed = value >= threshold
        elif op == "<=":
            passed = value <= threshold
        else:
            passed = value == threshold
        checks.append({"check": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                       "pass": bool(passed)})

    def ratio(target: str, path: str) -> float | None:
        v = t.get(target, {}).get(path, {}).get("saturated", {}).get("req_s")
        return round(v / bare, 4) if v and bare else None

    if "sqlite" in t:
        s = t["sqlite"]
        add("SQLite FAQ: req/s vs bare (64 conns)", ratio("sqlite", "faq"), ">=", TARGETS["sqlite_faq_ratio"],
            "ratio")
        add("SQLite FAQ: p99 saturated (64 conns)", s["faq"]["saturated"]["p99_ms"], "<=",
            TARGETS["sqlite_faq_p99_ms"], "ms")
        add("SQLite FAQ: p99 at half the saturated rate", s["faq"]["half"]["p99_ms"], "<=",
            TARGETS["sqlite_faq_half_p99_ms"], "ms")
    for name, label in PG_TARGETS:
        if name in t:
            add(f"{label} FAQ: req/s vs bare (64 conns)", ratio(name, "faq"), ">=",
                TARGETS["postgresql_faq_ratio"], "ratio")
    for name, label in DB_TARGETS:
        if name in t:
            add(f"{label} handoff: req/s vs bare (64 conns)", ratio(name, "handoff"), ">=",
                TARGETS["handoff_ratio"], "ratio")
            add(f"{label} handoff: no agent over capacity (1 Hz during, and after)", t[name]["capacity"]["ok"],
                "==", True)
    bad = sum(failed_requests(target) for target in t.values())
    add("non-2xx + socket errors + unfinished, all runs", bad, "==", 0)
    for name, label in DB_TARGETS:
        if name in t:
            add(f"{label}: every 2xx stored (checked after SIGKILL)", t[name]["durability"]["ok"], "==", True)
    return checks


def cpu_budget(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What each throughput-ratio target would take in CPU: the required
    rate times the CPU per request measured at saturation (server, its
    database backends, and the load generator, which shares the machine).
    An extrapolation, at the batch sizes reached here; if it needs more cores
    than the machine has, no scheduling of the same work reaches the target."""
    t = results["targets"]
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")
    out: list[dict[str, Any]] = []
    if not bare:
        return out
    wanted = [("sqlite", "SQLite", "faq", TARGETS["sqlite_faq_ratio"])]
    wanted += [(name, label, "faq", TARGETS["postgresql_faq_ratio"]) for name, label in PG_TARGETS]
    wanted += [(name, label, "handoff", TARGETS["handoff_ratio"]) for name, label in DB_TARGETS]
    for name, label, path, ratio in wanted:
        r = t.get(name, {}).get(path, {}).get("saturated")
        if not r or not r.get("server_cpu_ms_per_req"):
            continue
        server, db = r["server_cpu_ms_per_req"], r.get("database_cpu_ms_per_req") or 0.0
        gen = r.get("load_generator_cpu_ms_per_req") or 0.0
        # With workers the root process is their supervisor: each worker has a loop of its own.
        loop = r.get("server_root_main_thread_cpu_ms_per_req") if t[name].get("workers", 1) == 1 else None
        rate = ratio * bare
        out.append({"target": f"{label} {path}", "ratio": ratio, "rate": round(rate), "server_ms": server,
                    "database_ms": db, "load_generator_ms": gen,
                    "cores_needed": round(rate * (server + db + gen) / 1000, 2),
                    "cores": results["machine"]["nproc"],
                    # One thread runs all of it, so it can give at most one core.
                    "loop_ms": loop, "loop_cores_needed": round(rate * loop / 1000, 2) if loop is not None else None})
    return out

"""The targets of issue 24 (performance per message), and each run checked
against them. Pure: the verdicts are read from the results of one run."""

from __future__ import annotations

from typing import Any

TARGETS: dict[str, Any] = {
    # Server CPU per message at saturation, as a multiple of bare aiohttp's per request.
    "faq_server_cpu_x_bare": 4.0,
    "handoff_server_cpu_x_bare": 5.0,
    # PostgreSQL's CPU per message at saturation, ms.
    "postgresql_faq_cpu_ms": 0.15,
    "postgresql_handoff_cpu_ms": 0.2,
    # CPU per message (server + PostgreSQL) of 2 workers, and of 2 instances,
    # as a multiple of one process's, at the same offered open-loop rate.
    "scale_out_cpu_x": 1.15,
    "faq_half_p99_ms": 10.0,
    "mix_p99_ms": 15.0,
    "mix_rate": 1000,
    "mix_handoff_share": 0.3,
    "loop_step_cpu_ms": 20.0,
    "rss_mib_per_process": 300.0,
    "queued_handoffs": 60_000,
    "stored_messages": 1_000_000,
}

DATABASES = (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"))
SCALE_OUT = (("postgresql-workers", "2 workers"), ("postgresql-instances", "2 instances"))
PATHS = (("faq", "FAQ"), ("handoff", "handoff"))


def all_runs(target: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for path in ("faq", "handoff", "mix") for k in ("saturated", "half", "share", "open")
            if isinstance(r := target.get(path, {}).get(k), dict)]


def failed_requests(target: dict[str, Any]) -> int:
    bad = int(target.get("fill", {}).get("failed", 0))
    for r in all_runs(target):
        bad += int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
        bad += int(r.get("unfinished", 0) or 0)
    return bad


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)  # type: ignore[assignment]
    return d


def total_cpu_ms(r: dict[str, Any] | None) -> float | None:
    """Server + PostgreSQL CPU per message of one measurement."""
    if not r or r.get("server_cpu_ms_per_req") is None:
        return None
    return r["server_cpu_ms_per_req"] + (r.get("database_cpu_ms_per_req") or 0.0)


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    t = results["targets"]
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, op: str, threshold: Any, unit: str = "", note: str = "",
            condition_met: bool = True) -> None:
        if value is None or not condition_met:
            passed = False
        elif op == "<=":
            passed = value <= threshold
        else:
            passed = value == threshold
        checks.append({"check": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                       "note": note, "pass": bool(passed)})

    bare = _get(t, "bare", "faq", "saturated", "server_cpu_ms_per_req")
    for name, label in DATABASES:
        if name not in t:
            continue
        for path, plabel in PATHS:
            cpu = _get(t, name, path, "saturated", "server_cpu_ms_per_req")
            add(f"{label} {plabel}: server CPU per message at saturation, × bare aiohttp's per request",
                round(cpu / bare, 4) if cpu and bare else None, "<=", TARGETS[f"{path}_server_cpu_x_bare"], "x",
                f"{cpu} ms vs {bare} ms" if cpu and bare else "needs the bare target")
    if "postgresql" in t:
        for path, plabel in PATHS:
            add(f"PostgreSQL {plabel}: PostgreSQL's CPU per message at saturation",
                _get(t, "postgresql", path, "saturated", "database_cpu_ms_per_req"), "<=",
                TARGETS[f"postgresql_{path}_cpu_ms"], "cpu_ms")
    for name, label in SCALE_OUT:
        if name not in t:
            continue
        for path, plabel in PATHS:
            one = _get(t, "postgresql", path, "half")
            many = _get(t, name, path, "half")
            a, b = total_cpu_ms(one), total_cpu_ms(many)
            same_rate = bool(one and many and one["target_rate"] == many["target_rate"])
            add(f"{label} {plabel}: CPU per message (server + PostgreSQL) × one process's, same open-loop rate",
                round(b / a, 4) if a and b else None, "<=", TARGETS["scale_out_cpu_x"], "x",
                (f"{b:.3f} vs {a:.3f} ms at {many['target_rate']:,.0f}/s" if a and b and same_rate
                 else "needs the postgresql target, at the same rate"), condition_met=same_rate)
    for name, label in DATABASES:
        if name not in t:
            continue
        half = _get(t, name, "faq", "half") or {}
        add(f"{label} FAQ: p99 at half the saturated rate (open loop)", half.get("p99_ms"), "<=",
            TARGETS["faq_half_p99_ms"], "ms", f"{half['target_rate']:,.0f}/s" if half else "")
        mix = _get(t, name, "mix", "open") or {}
        share = results.get("mix_handoff_share", TARGETS["mix_handoff_share"])
        at_rate = bool(mix) and mix["target_rate"] == TARGETS["mix_rate"] and share == TARGETS["mix_handoff_share"]
        add(f"{label}: p99 of a {1 - share:.0%}/{share:.0%} FAQ/handoff mix at "
            f"{TARGETS['mix_rate']:,}/s (open loop)", mix.get("p99_ms"), "<=", TARGETS["mix_p99_ms"], "ms",
            "" if at_rate else f"run at {mix.get('target_rate')}/s, {share:.0%} handoffs",
            condition_met=at_rate)
    tierdesk = [n for n in t if n != "bare"]
    for name in tierdesk:
        bound = t[name].get("loop_longest_step_ms")
        probed = t[name].get("steps_probed")
        if probed is None:
            add(f"{t[name].get('label', name)}: the event loop's longest step, CPU (upper bound)",
                bound, "<=", TARGETS["loop_step_cpu_ms"], "ms")
            continue
        # The gauge's bound spans a loop iteration of many steps at
        # saturation; where each step was timed, that is the verdict.
        longest = (probed.get("slowest") or [{}])[0]
        add(f"{t[name].get('label', name)}: the event loop's longest step, CPU (each step timed)",
            probed.get("longest_step_ms"), "<=", TARGETS["loop_step_cpu_ms"], "ms",
            f"{longest.get('what', '-')}, {probed.get('queued') or 0:,} queued; "
            f"the runs' upper bound (between heartbeats) {bound} ms")
    for name in tierdesk:
        per_process = t[name].get("rss_end_per_process") or []
        rss_end = max((p["mib"] for p in per_process), default=None)
        queued, stored = t[name].get("queued_at_end", 0), t[name].get("stored_messages_at_end", 0)
        met = queued >= TARGETS["queued_handoffs"] and stored >= TARGETS["stored_messages"]
        # Judged where the queue first reached the mark (the sampler's 1 Hz
        # read): a fast machine's runs leave a far longer queue by the end.
        mark = _get(t, name, "capacity", "during", "at_queued_mark") or {}
        if mark.get("rss_mib") is not None:
            rss, note = mark["rss_mib"], (f"when {mark['queued']:,} first waited; at the end {rss_end} MiB with "
                                          f"{queued:,} queued, {stored:,} stored")
        else:
            rss, note = rss_end, f"at the end: {queued:,} queued, {stored:,} stored"
        add(f"{t[name].get('label', name)}: RSS of the largest server process, "
            f"{TARGETS['queued_handoffs']:,}+ handoffs queued, {TARGETS['stored_messages']:,}+ messages stored",
            rss, "<=", TARGETS["rss_mib_per_process"], "mib",
            note + ("" if met else ": condition not met"), condition_met=met)
    for name in tierdesk:
        add(f"{t[name].get('label', name)}: no agent over capacity (1 Hz during the handoff runs, and after)",
            _get(t, name, "capacity", "ok"), "==", True)
    add("non-2xx + socket errors + unfinished, all runs", sum(failed_requests(x) for x in t.values()), "==", 0)
    for name in tierdesk:
        add(f"{t[name].get('label', name)}: every 2xx stored (checked after SIGKILL)",
            _get(t, name, "durability", "ok"), "==", True)
    return checks

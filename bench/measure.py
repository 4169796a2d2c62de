"""One measurement of one target: the load (wrk saturated, or the open-loop
generator at a rate), the CPU it cost, and the server's counters around it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from accounting import aggregate, metrics_delta, per_request, scrape
from common import log
from load import run_loadgen, run_wrk
from targets import Target


def measure_saturated(args: argparse.Namespace, tg: Target, mode: str, run_id: str,
                      duration: float) -> dict[str, Any]:
    m0 = scrape(tg.bases, tg.workers) if tg.is_tierdesk else None
    r = run_wrk(args, tg.bases, mode=mode, token=tg.token, run_id=run_id, duration=duration,
                server_pid=tg.pids, db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.bases, tg.workers)))
    if tg.is_tierdesk:
        tg.counted[run_id] = r["ok_2xx"]
    per_request(r)
    r.pop("raw", None)
    return r


def measure_open(args: argparse.Namespace, tg: Target, mode: str, run_id: str, rate: float,
                 tmp: Path, handoff_share: float | None = None) -> dict[str, Any]:
    m0 = scrape(tg.bases, tg.workers) if tg.is_tierdesk else None
    path = tmp / f"{run_id}.ids"
    r = run_loadgen(args, tg.bases, mode=mode, token=tg.token, run_id=run_id, rate=rate,
                    duration=args.duration, server_pid=tg.pids, acked_out=path, db_pids=tg.db_pids(),
                    handoff_share=handoff_share)
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.bases, tg.workers)))
    if tg.is_tierdesk:
        tg.acked_files[run_id] = path
    per_request(r)
    # "Sustained": the generator got (nearly) all it scheduled answered in
    # time. If not, the server (or the machine) could not keep up with the
    # rate, and the latency shows queueing. Requests that waited for a free
    # connection (all 64 busy) mean the server held a backlog: not sustained either.
    r["sustained"] = bool(r["drained"] and r["achieved_rate"] >= 0.95 * r["target_rate"]
                          and (r.get("sched_lag_p50_ms") or 0) < 5.0)
    log(f"  {tg.name} {mode} open loop: {r['achieved_rate']:.0f}/{r['target_rate']:.0f} req/s "
        f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms non-2xx {r['non2xx']}"
        + ("" if r["sustained"] else "  (NOT sustained)")
        + f"; server CPU {r.get('server_cpu_ms_per_req')} ms/msg"
        + (f" + {r['database_cpu_ms_per_req']} PostgreSQL" if r.get("database_cpu_ms_per_req") else "")
        + f"; other processes {r['cpu']['other_processes_cores']} cores")
    return r


def saturated_phase(args: argparse.Namespace, targets: list[Target], mode: str, tag: str) -> None:
    """Interleaved rounds (target A, B, C, A, B, C, ...): a neighbour that
    loads the machine for a while then hurts every target, not just one,
    and the ratios to the baseline stay comparable."""
    rounds: dict[str, list[dict[str, Any]]] = {tg.name: [] for tg in targets}
    for k in range(args.rounds):
        for tg in targets:
            r = measure_saturated(args, tg, mode, f"{tag}-{tg.name}-{mode}-sat{k}", args.duration)
            rounds[tg.name].append(r)
            log(f"  {tg.name} {mode} saturated, round {k + 1}/{args.rounds}: {r['req_s']:.0f} req/s "
                f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms non-2xx {r['non2xx']}"
                + (f" batch {r['group_commit_mean_batch']} actions {r['actions']}" if "actions" in r else "")
                + f"; server CPU {r.get('server_cpu_ms_per_req')} ms/msg"
                + (f" + {r['database_cpu_ms_per_req']} PostgreSQL" if r.get("database_cpu_ms_per_req") else "")
                + f"; other processes {r['cpu']['other_processes_cores']} cores")
    for tg in targets:
        tg.out.setdefault(mode, {})["saturated"] = aggregate(rounds[tg.name])


def fill_queue(args: argparse.Namespace, tg: Target, tag: str) -> dict[str, Any]:
    """More handoffs, saturated, until at least --queued wait for an agent:
    the memory target's condition."""
    assert tg.db is not None
    queued = tg.db.capacity()["open_queued"]
    rate = max(100.0, tg.out["handoff"]["saturated"]["req_s"] or 0.0)
    runs = failed = sent = 0
    longest = None
    # In short runs: a server that speeds up (PostgreSQL's statistics
    # catching up) would otherwise overshoot the queue the target names.
    while queued < args.queued and runs < 40:
        seconds = min(20.0, (args.queued - queued) / rate + 1)
        log(f"  {tg.name}: {queued:,} handoffs queued; {seconds:.0f} s more handoffs for {args.queued:,}")
        r = measure_saturated(args, tg, "handoff", f"{tag}-{tg.name}-fill{runs}", seconds)
        sent += r["requests"]
        failed += r["non2xx"] + r["socket_errors"]
        queued = tg.db.capacity()["open_queued"]
        longest = r.get("loop_longest_step_ms")
        rate = max(50.0, r["req_s"])  # as fast as it went just now: a long queue slows some servers
        runs += 1
    return {"queued": queued, "runs": runs, "requests": sent, "failed": failed, "loop_longest_step_ms": longest}

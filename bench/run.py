"""The performance benchmark: tierdesk against a bare aiohttp handler, in one run.

    .venv/bin/python bench/run.py                 # 10 s per measurement, 2 rounds: ~4 minutes
    .venv/bin/python bench/run.py --quick         # 3 s per measurement, 1 round: ~1.5 minutes
    .venv/bin/python bench/run.py --profile       # also py-spy profiles of tierdesk/SQLite (+~35 s)

Exit status: 0 every target met, 3 some target missed (results written
anyway), 1 error, 2 wrk missing, 130 interrupted. docs/performance.md
explains the method and what the figures mean for sizing.

What it does, on 127.0.0.1 only, every step bounded in time:

1. Trains the demo FAQ model into a temporary models directory (or uses
   ``--models-dir``).
2. Starts each target as a subprocess and drives it with the same load:
   * ``bare``: bench/bare_app.py, an aiohttp handler of the same shape as
     POST /v1/messages (read the body, parse JSON, answer JSON): the baseline;
   * ``sqlite``: ``tierdesk serve`` on a fresh SQLite file;
   * ``postgresql``: ``tierdesk serve`` on a fresh database created on
     ``--pg-admin-url`` (dropped afterwards).
   Rate limits are switched off, logging is at warning level; durability is
   the shipped default (every 2xx is answered after its group commit).
3. Per target and path (FAQ answer, handoff):
   * saturated: ``wrk -t2 -c64 -d<D>s --timeout 10s --latency -s bench/message.lua``
     (closed loop: req/s, p50, p99, non-2xx), in interleaved rounds over the
     targets (``--rounds``) so a neighbour's burst hits all of them;
   * half rate: bench/loadgen.py, an open-loop generator in its own process,
     at 50% of that target's saturated req/s on that path (p50, p99 measured
     from each request's scheduled send time, so stalls are not hidden).
4. Checks: every message acknowledged 2xx is in the database (after the
   server has been killed with SIGKILL); after the handoff runs, and once a
   second during them, no agent holds more open handoffs than its capacity.
5. Writes bench/results/latest.json and replaces the table between
   ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in docs/benchmarks.md.

Also recorded: server RSS after the FAQ run, group-commit batch sizes (from
/metrics), server CPU per thread and per request, the CPU of the PostgreSQL
backends, the CPU other processes used during each measurement and the load
average (a busy machine makes every figure worse), the commit measured.
With ``--profile``: py-spy (``--gil``) during extra runs of tierdesk on SQLite (or on
the database ``--profile-target`` names)
(FAQ saturated, FAQ at half rate, handoff saturated), summarised by category
and by inclusive frame.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from accounting import aggregate, metrics_delta, per_request, rss_mib, scrape
from common import DOC, RESULTS, ROOT, BenchError, log
from database import CapacitySampler, pg_create, pg_drop, pg_settings, pg_url
from load import check_wrk, run_loadgen, run_wrk
from machine import code_version, cpu_model, mem_total_mib, nproc, package_version, tool_version
from profiling import run_profile
from report import markdown, write_doc
from servers import Server
from targets import (
    ALL_TARGETS,
    DB_TARGETS,
    PG_TARGETS,
    Target,
    discard_or_keep,
    start_target,
    stop_servers,
    target_label,
    train_model,
)
from verdicts import TARGETS, all_runs, cpu_budget, evaluate


def measure_saturated(args: argparse.Namespace, tg: Target, mode: str, run_id: str,
                      duration: float) -> dict[str, Any]:
    m0 = scrape(tg.server.base, tg.workers) if tg.is_tierdesk else None
    r = run_wrk(args, tg.server.base, mode=mode, token=tg.token, run_id=run_id, duration=duration,
                server_pid=tg.server.pid, db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.server.base, tg.workers)))
    if tg.is_tierdesk:
        tg.counted[run_id] = r["ok_2xx"]
    per_request(r)
    r.pop("raw", None)
    return r


def measure_half(args: argparse.Namespace, tg: Target, mode: str, run_id: str, rate: float,
                 tmp: Path) -> dict[str, Any]:
    m0 = scrape(tg.server.base, tg.workers) if tg.is_tierdesk else None
    path = tmp / f"{run_id}.ids"
    r = run_loadgen(args, tg.server.base, mode=mode, token=tg.token, run_id=run_id, rate=rate,
                    duration=args.duration, server_pid=tg.server.pid, acked_out=path, db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.server.base, tg.workers)))
    if tg.is_tierdesk:
        tg.acked_files[run_id] = path
    per_request(r)
    # "Sustained": the generator got (nearly) all it scheduled answered in
    # time. If not, the server (or the machine) could not keep up with half
    # the rate it had reached saturated, and the latency shows queueing.
    # Requests that waited for a free connection (all 64 busy) mean the
    # server held a backlog: not sustained either.
    r["sustained"] = bool(r["drained"] and r["achieved_rate"] >= 0.95 * r["target_rate"]
                          and (r.get("sched_lag_p50_ms") or 0) < 5.0)
    log(f"  {tg.name} {mode} half rate: {r['achieved_rate']:.0f}/{r['target_rate']:.0f} req/s "
        f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms non-2xx {r['non2xx']}"
        + ("" if r["sustained"] else "  (NOT sustained)")
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
                + f"; other processes {r['cpu']['other_processes_cores']} cores")
    for tg in targets:
        tg.out.setdefault(mode, {})["saturated"] = aggregate(rounds[tg.name])


def check_durability(tg: Target) -> dict[str, Any]:
    assert tg.db is not None
    runs: dict[str, Any] = {}
    ok = True
    for run_id, path in tg.acked_files.items():
        acked = set(path.read_text().split())
        stored = tg.db.inbound_ids(tg.channel_id, run_id)
        missing = len(acked - stored)
        ok &= missing == 0
        runs[run_id] = {"acked": len(acked), "stored": len(stored), "acked_missing": missing,
                        "check": "every acknowledged id stored"}
    for run_id, n in tg.counted.items():
        stored = len(tg.db.inbound_ids(tg.channel_id, run_id))
        ok &= stored >= n
        runs[run_id] = {"acked": n, "stored": stored, "acked_missing": max(0, n - stored),
                        "check": "stored >= 2xx count (wrk reports no ids; the surplus were in flight "
                                 "when wrk stopped)"}
    return {"server_killed_with": "SIGKILL", "ok": ok, "runs": runs}


def run_all(args: argparse.Namespace, names: list[str], tmp: Path, results: dict[str, Any],
            servers: list[Server], pg_db_urls: dict[str, str]) -> None:
    tag = results["run_tag"]
    models = train_model(args.models_dir, tmp) if set(names) - {"bare"} else tmp
    urls = {"sqlite": f"sqlite:///{tmp / 'bench.db'}", **pg_db_urls}
    targets = [start_target(args, n, tmp, models, urls.get(n), servers) for n in names]
    tierdesk = [tg for tg in targets if tg.is_tierdesk]
    for tg in targets:
        run_wrk(args, tg.server.base, mode="faq", token=tg.token, run_id=f"{tag}-{tg.name}-warm",
                duration=args.warmup, server_pid=tg.server.pid)

    log("FAQ path (bare: the echo handler), saturated")
    saturated_phase(args, targets, "faq", tag)
    for tg in targets:
        tg.out["rss_mib_after_faq"] = rss_mib(tg.server.pid)
    log("FAQ path at half each target's saturated rate (open loop)")
    for tg in targets:
        rate = tg.out["faq"]["saturated"]["req_s"] * 0.5
        tg.out["faq"]["half"] = measure_half(args, tg, "faq", f"{tag}-{tg.name}-faq-half", rate, tmp)
    prof = next((tg for tg in tierdesk if tg.name == args.profile_target), None)
    if args.profile and prof is not None:
        log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra saturated FAQ run ...")
        prof.out["profile_faq"] = run_profile(args, prof.server, prof.token, f"{tag}-{prof.name}-faq-prof", "faq",
                                              prof.name)
        log(f"  (profiled run: {prof.out['profile_faq']['load_during_profile'].get('req_s')} req/s; "
            "not used for the targets)")
        half_rate = prof.out["faq"]["half"]["target_rate"]
        log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra open-loop FAQ run at {half_rate:.0f}/s ...")
        prof.out["profile_faq_half"] = run_profile(args, prof.server, prof.token, f"{tag}-{prof.name}-faq-profhalf",
                                                   "faq", prof.name, rate=half_rate, tmp=tmp)

    if tierdesk:
        for tg in tierdesk:
            assert tg.db is not None
            tg.sampler = CapacitySampler(tg.db)
            tg.sampler.start()
        try:
            log("handoff path, saturated")
            saturated_phase(args, tierdesk, "handoff", tag)
            log("handoff path at half each target's saturated rate (open loop)")
            for tg in tierdesk:
                rate = tg.out["handoff"]["saturated"]["req_s"] * 0.5
                tg.out["handoff"]["half"] = measure_half(args, tg, "handoff", f"{tag}-{tg.name}-handoff-half",
                                                         rate, tmp)
            if args.profile and prof is not None:
                log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra saturated handoff run ...")
                prof.out["profile_handoff"] = run_profile(args, prof.server, prof.token,
                                                          f"{tag}-{prof.name}-handoff-prof", "handoff", prof.name)
        finally:
            for tg in tierdesk:
                if tg.sampler is not None:
                    tg.out["capacity_during"] = tg.sampler.result()
    for tg in tierdesk:
        assert tg.db is not None and tg.sampler is not None
        during = tg.out.pop("capacity_during")
        after = tg.db.capacity()
        tg.out["capacity"] = {"during": during, "after": after,
                              "ok": not during["violations"] and not after["over_capacity"]}
        log(f"  {tg.name} capacity: {after['open_assigned']} handoffs assigned of {after['slots']} slots, "
            f"{after['open_queued']} queued; over capacity now: {len(after['over_capacity'])}, "
            f"in {during['samples']} samples during the handoff runs: {len(during['violations'])}")
        tg.out["rss_mib_end"] = rss_mib(tg.server.pid)
        tg.out["log_problems"] = tg.server.log_problems()
        if any(k.startswith(("error", "critical", "unstructured")) for k in tg.out["log_problems"]):
            # Kept where the results are: the scratch directory goes at the end.
            RESULTS.mkdir(parents=True, exist_ok=True)
            kept = RESULTS / f"server-{tg.name}.log"
            shutil.copyfile(tg.server.log_path, kept)
            tg.out["server_log"] = str(kept.relative_to(ROOT))
            log(f"  {tg.name} logged errors: its log is kept in {tg.out['server_log']}")
        # Durability: kill -9 first, then every message answered 2xx must be stored.
        tg.server.stop(kill=True)
        tg.out["durability"] = check_durability(tg)
        log(f"  {tg.name} after SIGKILL: "
            + ("every acknowledged message is stored" if tg.out["durability"]["ok"]
               else "ACKNOWLEDGED MESSAGES MISSING"))
    for tg in targets:
        if not tg.is_tierdesk:
            tg.out["rss_mib_end"] = rss_mib(tg.server.pid)
            tg.server.stop()
        results["targets"][tg.name] = tg.out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per saturated point (default 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="3 s per measurement, one round, 1 s warm-up")
    p.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured load first (default 2)")
    p.add_argument("--pg-workers", type=int, default=2,
                   help="TIERDESK_WORKERS of the postgresql-workers target (default 2)")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help="comma-separated subset of bare,sqlite,postgresql,postgresql-workers (ratios need bare)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--capacity", type=int, default=5)
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--models-dir", help="use the model in this directory (trained into it if it has none)")
    p.add_argument("--sqlite-synchronous", choices=["NORMAL", "FULL"],
                   help="TIERDESK_SQLITE_SYNCHRONOUS for the SQLite target (default: tierdesk's, NORMAL)")
    p.add_argument("--profile", action="store_true",
                   help="also record py-spy profiles of tierdesk/SQLite during extra saturated runs")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--profile-target", choices=("sqlite", "postgresql"), default="sqlite",
                   help="which tierdesk target --profile samples")
    p.add_argument("--output", default=str(RESULTS / "latest.json"))
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    names = [x.strip() for x in args.targets.split(",") if x.strip()]
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    names = [n for n in ALL_TARGETS if n in names]
    # In place: the verdicts and the report read these lists (targets.py).
    DB_TARGETS[:] = [(n, target_label(n, args).removeprefix("tierdesk ")) for n in ALL_TARGETS[1:]]
    PG_TARGETS[:] = DB_TARGETS[1:]
    try:
        args.wrk = check_wrk()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # SIGTERM (and SIGHUP) end the run like Ctrl-C: the `finally` stops the servers.
    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    RESULTS.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    command = " ".join(shlex.quote(a) for a in [exe, os.path.relpath(os.path.abspath(__file__), ROOT),
                                                *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "schema": 2,
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "run_tag": "b" + secrets.token_hex(3),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "agents": args.agents,
        "capacity_per_agent": args.capacity,
        "sqlite_synchronous": args.sqlite_synchronous or "NORMAL",
        "targets_required": TARGETS,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "nproc": nproc(),
            "cpu_model": cpu_model(),
            "mem_total_mib": mem_total_mib(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "wrk": tool_version([args.wrk, "--version"]),
            "aiohttp": package_version("aiohttp"),
            "uvloop": package_version("uvloop"),
        },
        "code": code_version(),
        "targets": {},
    }
    t_start = time.perf_counter()
    servers: list[Server] = []
    pg_dbs: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-bench-"))
    code = 0
    try:
        pg_db_urls: dict[str, str] = {}
        for name in names:
            if not name.startswith("postgresql"):
                continue
            try:
                results["machine"]["postgresql"] = pg_settings(args.pg_admin_url)
            except Exception as exc:  # noqa: BLE001
                raise BenchError(f"PostgreSQL at {args.pg_admin_url} is not reachable ({exc}); "
                                 "start it or pass --targets bare,sqlite") from None
            pg_dbs.append(f"tierdesk_bench_{secrets.token_hex(4)}")
            pg_create(args.pg_admin_url, pg_dbs[-1])
            pg_db_urls[name] = pg_url(args.pg_admin_url, pg_dbs[-1])
        run_all(args, names, tmp, results, servers, pg_db_urls)
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        code = 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop_servers(servers)
        for pg_db in pg_dbs:
            try:
                pg_drop(args.pg_admin_url, pg_db)
            except Exception as exc:  # noqa: BLE001
                print(f"warning: could not drop database {pg_db}: {exc!r}", file=sys.stderr)
        discard_or_keep(tmp, code)
    if code != 0:
        return code

    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    others: list[float] = []
    for tg in results["targets"].values():
        for r in all_runs(tg):
            others += [x["other_processes_cores"] for x in r.get("per_round", [])] or \
                [r["cpu"]["other_processes_cores"]]
    results["other_processes_cores_max"] = max(others) if others else None
    results["other_processes_cores_mean"] = round(statistics.mean(others), 2) if others else None
    results["checks"] = evaluate(results)
    results["cpu_budget"] = cpu_budget(results)
    out_path = Path(args.output).resolve()
    results["output"] = str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    block = markdown(results)
    if not args.no_doc:
        write_doc(block)
    print()
    print(block)
    print()
    failed = [c for c in results["checks"] if not c["pass"]]
    log(f"results in {os.path.relpath(args.output, ROOT)}"
        + ("" if args.no_doc else f" and {os.path.relpath(DOC, ROOT)}")
        + f"; {len(results['checks']) - len(failed)} checks passed, {len(failed)} failed")
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())

"""The performance benchmark: tierdesk against a bare aiohttp handler, in one
run, checked against the targets of issue 24 (bench/verdicts.py).

    .venv/bin/python bench/run.py                 # 10 s per measurement, 2 rounds: ~15 minutes
    .venv/bin/python bench/run.py --quick         # 3 s per measurement, 1 round
    .venv/bin/python bench/run.py --stored 0 --queued 0   # fresh databases, no queue filled: faster
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
   * ``sqlite``: ``tierdesk serve`` on a SQLite file;
   * ``postgresql``: ``tierdesk serve`` on a database created on
     ``--pg-admin-url`` (dropped afterwards);
   * ``postgresql-workers``: the same with TIERDESK_WORKERS=2 (``--pg-workers``);
   * ``postgresql-instances``: two ``tierdesk serve`` processes on two
     ports and one database (``--pg-instances``), the load spread over both.
   Each tierdesk database starts as a copy of bench/metrics_bench.py's
   cached seed of 1,000,000 messages (``--stored``; bench/stored.py).
   Rate limits are switched off, logging is at warning level; durability is
   the shipped default (every 2xx is answered after its group commit).
3. Per target and path (FAQ answer, handoff):
   * saturated: ``wrk -t2 -c64 -d<D>s --timeout 10s --latency -s bench/message.lua``
     (closed loop: req/s, p50, p99, non-2xx; one wrk per instance), in
     interleaved rounds over the targets (``--rounds``) so a neighbour's
     burst hits all of them;
   * open loop: bench/loadgen.py, in its own process, at 50% of the
     target's saturated rate on that path; the workers and instances
     targets at the one-process PostgreSQL target's rate, so that their CPU
     per message compares at the same offered rate (p50, p99 measured from
     each request's scheduled send time, so stalls are not hidden).
   Then a 70/30 FAQ/handoff mix at 1,000 messages a second, open loop
   (``--mix-rate``), and handoffs until 60,000 wait (``--queued``).
4. Checks: every message acknowledged 2xx is in the database (after the
   server has been killed with SIGKILL); after the handoff runs, and once a
   second during them, no agent holds more open handoffs than its capacity.
   Then, on the SQLite and PostgreSQL databases as the runs left them, a
   server with every step of its event loop timed (bench/steps.py) runs FAQ
   and handoffs saturated and the mix: the longest step, by name.
5. Writes bench/results/latest.json, replaces the tables between
   ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in docs/benchmarks.md
   and the projection between ``<!-- projection:begin -->`` and
   ``<!-- projection:end -->`` in docs/performance.md (bench/projection.py).

Recorded per measurement: CPU per message of each server process (a server,
its SQLite writer, workers, instances; from /proc) and of the PostgreSQL
backends, the event loop's longest step so far (from /metrics:
tierdesk_loop_longest_step_cpu_seconds, tierdesk/loop_watch.py),
group-commit batch sizes, the CPU other processes used and the load average
(a busy machine makes every figure worse); per target RSS per process at
the end, with the handoffs queued and the messages stored; the commit measured.
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

from accounting import LOOP_STEP, rss_mib, rss_per_process, scrape
from common import DOC, RESULTS, ROOT, BenchError, log
from database import CapacitySampler, pg_create, pg_drop, pg_settings, pg_url
from load import check_wrk, run_wrk
from measure import fill_queue, measure_open, saturated_phase
from machine import code_version, cpu_model, mem_total_mib, nproc, package_version, tool_version
from profiling import run_profile
from report import markdown, projection_block, write_doc, write_projection
from servers import Server
from projection import project_run
from steps import probe_steps
from stored import copy_postgresql, copy_sqlite, ensure_seed
from targets import ALL_TARGETS, SCALE_OUT, Target, discard_or_keep, start_target, stop_servers, train_model
from verdicts import TARGETS, all_runs, evaluate


def check_durability(tg: Target) -> dict[str, Any]:
    assert tg.db is not None
    # Every customer message of the bench's channel at once: one read, not one per run.
    stored_all = tg.db.inbound_ids(tg.channel_id, "")
    runs: dict[str, Any] = {}
    ok = True
    for run_id, path in tg.acked_files.items():
        acked = set(path.read_text().split())
        stored = {i for i in stored_all if i.startswith(run_id + "-")}
        missing = len(acked - stored)
        ok &= missing == 0
        runs[run_id] = {"acked": len(acked), "stored": len(stored), "acked_missing": missing,
                        "check": "every acknowledged id stored"}
    for run_id, n in tg.counted.items():
        stored_n = sum(1 for i in stored_all if i.startswith(run_id + "-"))
        ok &= stored_n >= n
        runs[run_id] = {"acked": n, "stored": stored_n, "acked_missing": max(0, n - stored_n),
                        "check": "stored >= 2xx count (wrk reports no ids; the surplus were in flight "
                                 "when wrk stopped)"}
    return {"server_killed_with": "SIGKILL", "ok": ok, "runs": runs}


def open_rate(targets: dict[str, Target], tg: Target, path: str) -> float:
    """Half the target's saturated rate; the scale-out targets are offered
    what the one-process PostgreSQL target was, so their CPU per message
    compares at the same rate."""
    one = targets.get("postgresql")
    if tg.name in SCALE_OUT and one is not None:
        return float(one.out[path]["half"]["target_rate"])
    return tg.out[path]["saturated"]["req_s"] * 0.5


def server_setting(text: str) -> str:
    if not text.startswith("TIERDESK_") or "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not TIERDESK_NAME=VALUE")
    return text


def finish(tg: Target, args: argparse.Namespace) -> None:
    """After the runs: capacity, memory, the loop's longest step, logs; then
    SIGKILL and every acknowledged message looked for."""
    assert tg.db is not None and tg.sampler is not None
    during = tg.out.pop("capacity_during")
    after = tg.db.capacity()
    tg.out["capacity"] = {"during": during, "after": after,
                          "ok": not during["violations"] and not after["over_capacity"]}
    log(f"  {tg.name} capacity: {after['open_assigned']} handoffs assigned of {after['slots']} slots, "
        f"{after['open_queued']} queued; over capacity now: {len(after['over_capacity'])}, "
        f"in {during['samples']} samples during the handoff runs: {len(during['violations'])}")
    tg.out["rss_mib_end"] = rss_mib_all(tg)
    tg.out["rss_end_per_process"] = rss_per_process(tg.pids)
    tg.out["queued_at_end"] = after["open_queued"]
    tg.out["stored_messages_at_end"] = int(tg.db.query("SELECT COUNT(*) FROM messages")[0][0])
    longest = scrape(tg.bases, tg.workers).get(LOOP_STEP)
    tg.out["loop_longest_step_ms"] = round(longest * 1000, 2) if longest is not None else None
    log(f"  {tg.name}: RSS per process at the end {[p['mib'] for p in tg.out['rss_end_per_process']]} MiB with "
        f"{after['open_queued']:,} handoffs queued and {tg.out['stored_messages_at_end']:,} messages stored; "
        f"longest loop step {tg.out['loop_longest_step_ms']} ms CPU")
    problems: dict[str, int] = {}
    for server in tg.servers:
        for k, v in server.log_problems().items():
            problems[k] = problems.get(k, 0) + v
    tg.out["log_problems"] = problems
    if any(k.startswith(("error", "critical", "unstructured")) for k in problems):
        # Kept where the results are: the scratch directory goes at the end.
        RESULTS.mkdir(parents=True, exist_ok=True)
        tg.out["server_logs"] = []
        for server in tg.servers:
            kept = RESULTS / f"server-{server.name}.log"
            shutil.copyfile(server.log_path, kept)
            tg.out["server_logs"].append(str(kept.relative_to(ROOT)))
        log(f"  {tg.name} logged errors: its logs are kept in {tg.out['server_logs']}")
    # Durability: kill -9 first, then every message answered 2xx must be stored.
    for server in tg.servers:
        server.stop(kill=True)
    tg.out["durability"] = check_durability(tg)
    log(f"  {tg.name} after SIGKILL: "
        + ("every acknowledged message is stored" if tg.out["durability"]["ok"]
           else "ACKNOWLEDGED MESSAGES MISSING"))


def rss_mib_all(tg: Target) -> float | None:
    values = [v for v in (rss_mib(pid) for pid in tg.pids) if v is not None]
    return round(sum(values), 1) if values else None


def measure_share(args: argparse.Namespace, targets: dict[str, Target], path: str, tag: str, tmp: Path) -> None:
    """One process at each scale-out process's share of the rate they were
    offered: what a process costs per message at that rate alone, so the
    scale-out ratio's cost of a second process and its cost of a lower rate
    per process can be told apart (bench/report.py prints both)."""
    one = targets.get("postgresql")
    if one is None or not any(n in targets for n in SCALE_OUT):
        return
    rate = float(one.out[path]["half"]["target_rate"]) / 2
    log(f"  the one process at each of 2 processes' share of that rate ({rate:,.0f}/s)")
    one.out[path]["share"] = measure_open(args, one, path, f"{tag}-{one.name}-{path}-share", rate, tmp)


def run_all(args: argparse.Namespace, names: list[str], tmp: Path, results: dict[str, Any],
            servers: list[Server], db_urls: dict[str, str]) -> None:
    tag = results["run_tag"]
    models = train_model(args.models_dir, tmp) if set(names) - {"bare"} else tmp
    targets = {n: start_target(args, n, tmp, models, db_urls.get(n), servers) for n in names}
    every = list(targets.values())
    tierdesk = [tg for tg in every if tg.is_tierdesk]
    for tg in every:
        run_wrk(args, tg.bases, mode="faq", token=tg.token, run_id=f"{tag}-{tg.name}-warm",
                duration=args.warmup, server_pid=tg.pids)
    if args.analyze:
        # A copied database carries the seed's statistics (no agents, no
        # conversations, no channel of the bench's), and autovacuum analyses
        # a million-row table again only after 100,000 changes: until then
        # PostgreSQL's CPU per message was 3-10 times a fresh database's
        # (2026-12-05). A live database's statistics are current.
        for tg in tierdesk:
            assert tg.db is not None
            tg.db.analyze()

    log("FAQ path (bare: the echo handler), saturated")
    saturated_phase(args, every, "faq", tag)
    for tg in every:
        tg.out["rss_mib_after_faq"] = rss_mib_all(tg)
    log("FAQ path, open loop at half the saturated rate (2 workers, 2 instances: at one process's)")
    for tg in every:
        tg.out["faq"]["half"] = measure_open(args, tg, "faq", f"{tag}-{tg.name}-faq-half",
                                             open_rate(targets, tg, "faq"), tmp)
    measure_share(args, targets, "faq", tag, tmp)
    prof = targets.get(args.profile_target)
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
            tg.sampler = CapacitySampler(tg.db, rss=lambda tg=tg: max(
                (p["mib"] for p in rss_per_process(tg.pids)), default=None), queued_mark=args.queued)
            tg.sampler.start()
        try:
            log("handoff path, saturated")
            saturated_phase(args, tierdesk, "handoff", tag)
            log("handoff path, open loop at half the saturated rate (2 workers, 2 instances: at one process's)")
            for tg in tierdesk:
                tg.out["handoff"]["half"] = measure_open(args, tg, "handoff", f"{tag}-{tg.name}-handoff-half",
                                                         open_rate(targets, tg, "handoff"), tmp)
            measure_share(args, targets, "handoff", tag, tmp)
            log(f"{1 - args.mix_handoff_share:.0%}/{args.mix_handoff_share:.0%} FAQ/handoff mix, open loop at "
                f"{args.mix_rate:,.0f}/s")
            for tg in tierdesk:
                tg.out["mix"] = {"open": measure_open(args, tg, "mix", f"{tag}-{tg.name}-mix", args.mix_rate, tmp,
                                                      handoff_share=args.mix_handoff_share)}
            if args.profile and prof is not None:
                log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra saturated handoff run ...")
                prof.out["profile_handoff"] = run_profile(args, prof.server, prof.token,
                                                          f"{tag}-{prof.name}-handoff-prof", "handoff", prof.name)
            if args.queued:
                log(f"handoffs until {args.queued:,} wait (the memory target's condition)")
                for tg in tierdesk:
                    tg.out["fill"] = fill_queue(args, tg, tag)
        finally:
            for tg in tierdesk:
                if tg.sampler is not None:
                    tg.out["capacity_during"] = tg.sampler.result()
    for tg in tierdesk:
        finish(tg, args)
    if args.step_probe:
        log("the event loop's steps, each timed (bench/step_probe.py), on the databases as the runs left them")
        for tg in tierdesk:
            # The workers' processes are started by the supervisor, out of
            # the probe's reach; the instances are the same code, each a
            # process of its own.
            if tg.name in ("sqlite", "postgresql", "postgresql-instances"):
                tg.out["steps_probed"] = probe_steps(args, tg.name, tmp, models, db_urls[tg.name], tag)
    for tg in every:
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
    p.add_argument("--pg-instances", type=int, default=2,
                   help="`tierdesk serve` processes of the postgresql-instances target (default 2)")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help=f"comma-separated subset of {','.join(ALL_TARGETS)} (ratios need bare, "
                        "the scale-out comparisons postgresql)")
    p.add_argument("--mix-rate", type=float, default=float(TARGETS["mix_rate"]),
                   help="messages per second of the FAQ/handoff mix, open loop (default 1000)")
    p.add_argument("--mix-handoff-share", type=float, default=TARGETS["mix_handoff_share"])
    p.add_argument("--stored", type=int, default=TARGETS["stored_messages"],
                   help="messages stored in each tierdesk target's database before it starts, a copy of "
                        "bench/metrics_bench.py's cached seed (default 1,000,000; made once, ~8 min per "
                        "database; 0: fresh empty databases)")
    p.add_argument("--no-analyze", dest="analyze", action="store_false",
                   help="do not ANALYZE the PostgreSQL databases after the warm-up (see run_all)")
    p.add_argument("--queued", type=int, default=TARGETS["queued_handoffs"],
                   help="handoffs sent at the end until this many wait (default 60,000; 0: none)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--capacity", type=int, default=5)
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--models-dir", help="use the model in this directory (trained into it if it has none)")
    p.add_argument("--sqlite-synchronous", choices=["NORMAL", "FULL"],
                   help="TIERDESK_SQLITE_SYNCHRONOUS for the SQLite target (default: tierdesk's, NORMAL)")
    p.add_argument("--server-env", action="append", default=[], metavar="TIERDESK_NAME=VALUE",
                   type=server_setting,
                   help="a setting for every tierdesk server under test, to compare against the defaults "
                        "(repeatable; e.g. TIERDESK_CONVERSATION_CACHE_SIZE=20000)")
    p.add_argument("--profile", action="store_true",
                   help="also record py-spy profiles of tierdesk/SQLite during extra saturated runs")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--profile-target", choices=("sqlite", "postgresql"), default="sqlite",
                   help="which tierdesk target --profile samples")
    p.add_argument("--no-step-probe", dest="step_probe", action="store_false",
                   help="skip timing each step of the event loop on SQLite and PostgreSQL (bench/steps.py)")
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
        "schema": 3,
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "run_tag": "b" + secrets.token_hex(3),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "agents": args.agents,
        "stored_seed": args.stored,
        "analyzed_after_warmup": args.analyze,
        "queued_wanted": args.queued,
        "mix_rate": args.mix_rate,
        "mix_handoff_share": args.mix_handoff_share,
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
        "server_env": args.server_env,
        "targets": {},
    }
    t_start = time.perf_counter()
    servers: list[Server] = []
    pg_dbs: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-bench-"))
    code = 0
    try:
        db_urls: dict[str, str] = {}
        if "sqlite" in names:
            db_urls["sqlite"] = f"sqlite:///{tmp / 'bench.db'}"
            if args.stored:
                copy_sqlite(ensure_seed(args, "sqlite"), tmp / "bench.db")
        pg_names = [n for n in names if n.startswith("postgresql")]
        if pg_names:
            try:
                results["machine"]["postgresql"] = pg_settings(args.pg_admin_url)
            except Exception as exc:  # noqa: BLE001
                raise BenchError(f"PostgreSQL at {args.pg_admin_url} is not reachable ({exc}); "
                                 "start it or pass --targets bare,sqlite") from None
            seed = ensure_seed(args, "postgresql") if args.stored else None
            for name in pg_names:
                pg_dbs.append(f"tierdesk_bench_{secrets.token_hex(4)}")
                if seed is None:
                    pg_create(args.pg_admin_url, pg_dbs[-1])
                else:
                    copy_postgresql(seed, args.pg_admin_url, pg_dbs[-1])
                db_urls[name] = pg_url(args.pg_admin_url, pg_dbs[-1])
        run_all(args, names, tmp, results, servers, db_urls)
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
    results["projection"] = project_run(results)
    out_path = Path(args.output).resolve()
    results["output"] = str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    block = markdown(results)
    if not args.no_doc:
        write_doc(block)
        write_projection(projection_block(results))
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

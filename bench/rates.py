"""Where the CPU of a request goes at a given rate: one tierdesk server (or
the bare handler) driven open loop at each of several rates, with the
harness of `make bench`.

    .venv/bin/python bench/rates.py --db sqlite --rates 200,800,1600
    .venv/bin/python bench/rates.py --db postgresql --rates 800
    .venv/bin/python bench/rates.py --db bare --rates 200,2000
    .venv/bin/python bench/rates.py --db postgresql --mode handoff --rates 400 --stored 1000000

Per rate: the rate achieved, p50/p99, the server's user and system CPU per
request and its context switches per request (all threads, from /proc),
the mean group-commit batch; on PostgreSQL also the CPU per request of each
backend of the target's database, named by the last statement it ran.
With it, at 95144fc (2026-11-30), a request at a quiet hour was found to
cost several times its CPU at saturation on the 2-core test machine, and a
cached generic plan to make PostgreSQL scan a whole table per look-up
(fixed by fde0715).
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting import metrics_delta, process_tree, scrape  # noqa: E402 - the harness of `make bench`
from database import Db, pg_create, pg_drop, pg_url  # noqa: E402
from load import run_loadgen, run_wrk  # noqa: E402
from servers import Server  # noqa: E402
from stored import copy_postgresql, copy_sqlite, ensure_seed  # noqa: E402
from targets import probe_args, start_target, stop_servers, train_model  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def threads_of(pid: int) -> tuple[int, int, int, int]:
    """User and system ticks, voluntary and involuntary context switches,
    summed over the threads of the server and of its child processes (the
    SQLite writer's, workers)."""
    user = system = voluntary = involuntary = 0
    tasks = [t for p in process_tree(pid) for t in glob.glob(f"/proc/{p}/task/*")]
    for task in tasks:
        try:
            fields = open(task + "/stat").read().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
            for line in open(task + "/status"):
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return user, system, voluntary, involuntary


def backends(db: Db) -> dict[int, tuple[str, int]]:
    """The target database's backends: pid -> (last statement, CPU ticks)."""
    out = {}
    for pid, query in db.query("SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() "
                               "AND pid <> pg_backend_pid()"):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(pid)] = ((query or "").replace("\n", " ")[:70], int(fields[11]) + int(fields[12]))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql", "bare"), default="sqlite")
    p.add_argument("--rates", default="200,800,1600", help="comma-separated requests per second")
    p.add_argument("--mode", choices=("faq", "handoff"), default="faq")
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--stored", type=int, default=0,
                   help="start on a copy of bench/metrics_bench.py's seed of this many messages (bench/stored.py)")
    cli = p.parse_args()
    args = probe_args()
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-rates-"))
    models = train_model(None, tmp) if cli.db != "bare" else tmp
    servers: list[Server] = []
    database = None
    url = None
    if cli.db == "postgresql":
        database = "tierdesk_rates_" + secrets.token_hex(4)
        if cli.stored:
            copy_postgresql(ensure_seed(cli, "postgresql"), cli.pg_admin_url, database)
        else:
            pg_create(cli.pg_admin_url, database)
        url = pg_url(cli.pg_admin_url, database)
    elif cli.db == "sqlite":
        url = f"sqlite:///{tmp / 'rates.db'}"
        if cli.stored:
            copy_sqlite(ensure_seed(cli, "sqlite"), tmp / "rates.db")
    try:
        tg = start_target(args, cli.db, tmp, models, url, servers)
        run_wrk(args, tg.server.base, mode=cli.mode, token=tg.token, run_id="w" + secrets.token_hex(3),
                duration=2, server_pid=tg.server.pid)
        for rate in (float(r) for r in cli.rates.split(",")):
            m0 = scrape(tg.server.base) if tg.is_tierdesk else {}
            t0 = threads_of(tg.server.pid)
            b0 = backends(tg.db) if tg.db is not None and cli.db == "postgresql" else {}
            r = run_loadgen(args, tg.server.base, mode=cli.mode, token=tg.token, run_id="r" + secrets.token_hex(3),
                            rate=rate, duration=cli.duration, server_pid=tg.server.pid,
                            acked_out=tmp / "acked.ids")
            t1 = threads_of(tg.server.pid)
            n = r.get("completed") or 1
            user, system, vol, invol = (b - a for a, b in zip(t0, t1))
            batch = metrics_delta(m0, scrape(tg.server.base)).get("group_commit_mean_batch") if m0 else None
            print(f"{cli.db} {cli.mode} at {rate:.0f}/s: achieved {r['req_s']}/s, p50 {r.get('p50_ms')} ms, "
                  f"p99 {r.get('p99_ms')} ms, commit batch {batch}; server CPU per request "
                  f"{user * 1000 / HZ / n:.3f} ms user + {system * 1000 / HZ / n:.3f} ms system, "
                  f"context switches per request {vol / n:.2f} voluntary, {invol / n:.2f} involuntary", flush=True)
            if b0:
                b1 = backends(tg.db)  # type: ignore[arg-type]
                spent = sorted(((ticks - b0.get(pid, ("", 0))[1], query, pid) for pid, (query, ticks) in b1.items()),
                               reverse=True)
                for ticks, query, pid in spent:
                    if ticks > 0:
                        print(f"    PostgreSQL backend {pid}: {ticks * 1000 / HZ / n:.3f} ms per request  {query}")
    finally:
        stop_servers(servers)
        if database is not None:
            pg_drop(cli.pg_admin_url, database)
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite file grows by ~70 MB a run
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

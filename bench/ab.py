"""Compare two source trees of tierdesk on one database, alternating, with
the same harness as bench/run.py: the way to tell a change's cost from this
machine's run-to-run noise (±10 %).

    git worktree add /tmp/old <commit>
    .venv/bin/python bench/ab.py /tmp/old . --db postgresql --rounds 2
    .venv/bin/python bench/ab.py /tmp/old . --db postgresql --target postgresql-workers

--target postgresql-workers (2 workers) or postgresql-instances (2 serve
processes on the database, the connections split between them) compares
the scale-out paths; PostgreSQL's CPU per request is printed with the
server's.

Each round starts each tree's server on a fresh database, warms it up, then
drives the FAQ path and the handoff path with wrk (64 connections) for
--duration seconds each. Prints req/s, p99 and server CPU per request.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting import per_request  # noqa: E402 - the harness of `make bench`
from database import fresh_database, pg_drop  # noqa: E402
from load import run_wrk  # noqa: E402
from servers import Server  # noqa: E402
from targets import probe_args, start_target, stop_servers, train_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", help="source trees to compare (a checkout or git worktree each)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--target", choices=("postgresql-workers", "postgresql-instances"), default=None,
                   help="a scale-out target on PostgreSQL instead of one process")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    cli = p.parse_args()
    if cli.target:
        cli.db = "postgresql"
    args = probe_args()
    args.pg_workers = args.pg_instances = 2
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-ab-"))
    models = train_model(None, tmp)
    results: dict[tuple[str, str], list[float]] = {}
    for rnd in range(cli.rounds):
        for tree in (str(Path(t).resolve()) for t in cli.trees):
            name = f"tierdesk_ab_{rnd}" if cli.db == "postgresql" else f"tierdesk_ab_{rnd}_{abs(hash(tree))}"
            url = fresh_database(cli.db, name, cli.pg_admin_url, tmp)
            servers: list[Server] = []
            try:
                tg = start_target(args, cli.target or cli.db, tmp, models, url, servers, tree=Path(tree))
                for mode in ("faq", "handoff"):
                    run_wrk(args, tg.bases, mode=mode, token=tg.token, run_id=f"w{rnd}{mode}{time.time()}",
                            duration=2, server_pid=None)
                    r = run_wrk(args, tg.bases, mode=mode, token=tg.token, run_id=f"r{rnd}{mode}{time.time()}",
                                duration=cli.duration, server_pid=tg.pids, db_pids=tg.db_pids())
                    per_request(r)
                    results.setdefault((tree, mode), []).append(r["req_s"])
                    print(f"round {rnd + 1} {tree} {mode}: {r['req_s']:.0f} req/s, p99 {r['p99_ms']} ms, "
                          f"non-2xx {r['non2xx']}, server CPU {r.get('server_cpu_ms_per_req')} ms/req, "
                          f"PostgreSQL CPU {r.get('database_cpu_ms_per_req')} ms/req", flush=True)
            finally:
                stop_servers(servers)
                if cli.db == "postgresql":
                    pg_drop(cli.pg_admin_url, name)
    for (tree, mode), values in results.items():
        print(f"{tree} {mode}: " + " / ".join(f"{v:,.0f}" for v in values) + " req/s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

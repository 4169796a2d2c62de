"""Server CPU per message of one or more source trees, quickly: the loop for
cutting per-message CPU without `make bench`'s seed and wrk.

    git worktree add /tmp/old <commit>
    .venv/bin/python bench/cpu_per_message.py /tmp/old . --db sqlite --rate 1500 --rounds 3
    .venv/bin/python bench/cpu_per_message.py . --db postgresql --modes faq --profile 8
    .venv/bin/python bench/cpu_per_message.py OLD NEW --db postgresql --workers 2 --rate 1742

Starts one `tierdesk serve` per tree (each tree's own code) on a fresh
database, all at once, warms each up, then drives each in turn with
bench/loadgen.py at the same open-loop rate (--rate) for --duration seconds,
per path (--modes), over interleaved rounds: a neighbour's burst on this
shared machine then hits every tree, not one. At one offered rate the
group-commit batches are alike, so the CPU per message compares; the
saturated figure of `make bench` is lower (fuller batches). With --bare,
bench/bare_app.py is measured too, at the same rate, as the yardstick of
issue 24.

Prints per tree and path the server's CPU per message (every process of
the server: its SQLite writer included; from /proc, as bench/run.py counts
it), its processes' main threads' share, and on PostgreSQL its backends'.
--profile S records py-spy (--gil, raw collapsed stacks) of each tree's
server for S seconds of the first path's load and prints
bench/profiling.py's summary; with --workers N (PostgreSQL) each tree
serves with TIERDESK_WORKERS=N, and the profile covers every worker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accounting import metrics_delta, per_request, scrape  # noqa: E402
from common import RESULTS  # noqa: E402
from database import fresh_database, pg_drop  # noqa: E402
from load import run_loadgen  # noqa: E402
from profiling import run_profile  # noqa: E402
from servers import Server  # noqa: E402
from targets import Target, discard_or_keep, start_target, stop_servers, train_model  # noqa: E402


def start_tree(args: argparse.Namespace, tree: str, k: int, tmp: Path, models: Path,
               servers: list[Server]) -> Target:
    name = f"tierdesk_cpu_{k}"
    url = fresh_database(args.db, name, args.pg_admin_url, tmp)
    workers = args.db == "postgresql" and args.pg_workers > 1
    tg = start_target(args, "postgresql-workers" if workers else args.db, tmp, models, url, servers,
                      tree=Path(tree))
    tg.out["pg_name"] = name if args.db == "postgresql" else None
    return tg


def measure(args: argparse.Namespace, tg: Target, mode: str, run_id: str, tmp: Path) -> dict[str, Any]:
    # With workers, each shows the others' counters a second late: the
    # scrape waits for them, or a neighbouring run's tail is counted here.
    m0 = scrape(tg.bases, tg.workers) if tg.is_tierdesk else None
    r = run_loadgen(args, tg.bases, mode=mode, token=tg.token, run_id=run_id, rate=args.rate,
                    duration=args.duration, server_pid=tg.pids, acked_out=tmp / f"{run_id}.ids",
                    db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.bases, tg.workers)))
    per_request(r)
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trees", nargs="+", help="source trees to compare (a checkout or git worktree each)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--modes", default="faq,handoff", help="paths measured, in order: faq, handoff, mix")
    p.add_argument("--rate", type=float, default=1500.0, help="messages a second offered (open loop)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bare", action="store_true", help="measure bench/bare_app.py too")
    p.add_argument("--profile", type=float, default=0.0, metavar="S",
                   help="py-spy each tree's server for S seconds of the first path's load at --rate, "
                        "after the rounds")
    p.add_argument("--models-dir", help="a trained models directory (default: train the demo model)")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--workers", type=int, default=1, help="TIERDESK_WORKERS of each tree's server (PostgreSQL)")
    p.add_argument("--server-env", action="append", default=[], metavar="TIERDESK_NAME=VALUE",
                   help="a setting for every tree's server (repeatable); the environment is not passed on")
    cli = p.parse_args()
    # What bench/targets.py and bench/load.py read from `make bench`'s command line.
    args = argparse.Namespace(**vars(cli), connections=64, agents=20, capacity=5, sqlite_synchronous=None,
                              pg_workers=cli.workers, pg_instances=1, profile_seconds=cli.profile,
                              profile_subprocesses=cli.workers > 1)
    modes = cli.modes.split(",")
    trees = [str(Path(t).resolve()) for t in cli.trees]
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-cpu-"))
    models = train_model(cli.models_dir, tmp)
    servers: list[Server] = []
    targets: dict[str, Target] = {}
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    try:
        for k, tree in enumerate(trees):
            targets[tree] = start_tree(args, tree, k, tmp, models, servers)
        if cli.bare:
            targets["bare aiohttp"] = start_target(args, "bare", tmp, models, None, servers)
        for name, tg in targets.items():  # warm-up: the classifier's caches, the connections, the queries
            for mode in modes:
                run_loadgen(args, tg.bases, mode=mode, token=tg.token, run_id=f"warm{mode}{time.time():.0f}",
                            rate=cli.rate, duration=2, server_pid=None, acked_out=tmp / "warm.ids")
        for rnd in range(cli.rounds):
            for mode in modes:
                for name, tg in targets.items():
                    r = measure(args, tg, mode, f"r{rnd}{mode}{time.time():.0f}", tmp)
                    results.setdefault((name, mode), []).append(r)
                    print(f"round {rnd + 1} {name} {mode}: {r['achieved_rate']:.0f}/s, "
                          f"server CPU {r['server_cpu_ms_per_req']} ms/msg "
                          f"(main threads {r['server_main_thread_cpu_ms_per_req']}, by process "
                          f"{r['process_cpu_ms_per_req']}), PostgreSQL {r.get('database_cpu_ms_per_req')}, "
                          f"batch {r.get('group_commit_mean_batch')}, p50 {r.get('p50_ms')} / p99 {r.get('p99_ms')} ms, "
                          f"actions {r.get('actions')}, "
                          f"non-2xx {r['non2xx']}, other processes {r['cpu']['other_processes_cores']} cores",
                          flush=True)
        if cli.profile:
            RESULTS.mkdir(parents=True, exist_ok=True)
            for name, tg in targets.items():
                if tg.is_tierdesk:
                    prof = run_profile(args, tg.server, tg.token, f"prof{time.time():.0f}", modes[0],
                                       f"cpu-{Path(name).name}", rate=cli.rate, tmp=tmp)
                    print(f"profile of {name}: {prof['raw_file']}")
                    for row in prof["categories"]:
                        print(f"  {row['share']:6.1%}  {row['category']}")
                    for row in prof["top_inclusive_main_thread"]:
                        print(f"  {row['share']:6.1%}  {row['frame']}")
    finally:
        stop_servers(servers)
        for tg in targets.values():
            if tg.out.get("pg_name"):
                pg_drop(cli.pg_admin_url, tg.out["pg_name"])
    print(f"\nserver CPU per message, median of {cli.rounds} rounds at {cli.rate:.0f}/s offered "
          f"({cli.duration:g} s each, {cli.db}):")
    for (name, mode), rs in results.items():
        def med(key: str) -> float:
            return round(statistics.median(r[key] for r in rs if r.get(key) is not None), 3) \
                if any(r.get(key) is not None for r in rs) else float("nan")
        print(f"  {mode:8} {med('server_cpu_ms_per_req'):.3f} ms (main threads "
              f"{med('server_main_thread_cpu_ms_per_req'):.3f}; PostgreSQL {med('database_cpu_ms_per_req')}; "
              f"p99 {med('p99_ms')} ms) "
              f"[{' / '.join(str(r['server_cpu_ms_per_req']) for r in rs)}]  {name}")
    discard_or_keep(tmp, 0)  # after an error, the servers' logs stay there
    return 0


if __name__ == "__main__":
    sys.exit(main())

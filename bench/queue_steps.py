"""The event loop's longest step as the handoff queue grows: one tierdesk
server driven with saturated handoff runs, /metrics read after each.

    .venv/bin/python bench/queue_steps.py                       # SQLite, 8 runs of 10 s
    .venv/bin/python bench/queue_steps.py --db postgresql --runs 6
    .venv/bin/python bench/queue_steps.py --first-response-sla 86400   # no SLA alerts during the runs
    .venv/bin/python bench/queue_steps.py --probe-steps steps.json     # and name the longest steps

Prints, after each run, the handoffs waiting and the longest step so far
(tierdesk_loop_longest_step_cpu_seconds, an upper bound: tierdesk/loop_watch.py),
then the warnings the server logged. With the SLA at a day no handoff
comes near its first-response SLA, so no alert is raised: what remains
is the work that grows with the queue alone.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import targets as T  # noqa: E402 - the harness of `make bench`; tierdesk_env is extended below
from accounting import LOOP_STEP, scrape  # noqa: E402
from database import pg_create, pg_drop, pg_url  # noqa: E402
from load import run_wrk  # noqa: E402
from servers import Server  # noqa: E402
from steps import probe_argv, read_probe  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument("--runs", type=int, default=8)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--first-response-sla", type=float, help="TIERDESK_SLA_HUMAN_FIRST_RESPONSE_SECONDS")
    p.add_argument("--probe-steps", metavar="OUT.json",
                   help="serve through bench/step_probe.py (asyncio's loop, every step timed) and write its report")
    p.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    cli = p.parse_args()
    args = T.probe_args()
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-queue-steps-"))
    models = T.train_model(None, tmp)
    if cli.first_response_sla is not None:
        base_env = T.tierdesk_env
        extra = {"TIERDESK_SLA_HUMAN_FIRST_RESPONSE_SECONDS": str(cli.first_response_sla)}
        T.tierdesk_env = lambda a, d, ad, m, port: base_env(a, d, ad, m, port) | extra
    database = None
    if cli.db == "postgresql":
        database = "tierdesk_steps_" + secrets.token_hex(4)
        pg_create(cli.pg_admin_url, database)
        url = pg_url(cli.pg_admin_url, database)
    else:
        url = f"sqlite:///{tmp / 'steps.db'}"
    servers: list[Server] = []
    try:
        argv = probe_argv(Path(cli.probe_steps).resolve()) if cli.probe_steps else None
        tg = T.start_target(args, cli.db, tmp, models, url, servers, argv=argv)
        tag = "q" + secrets.token_hex(3)
        for k in range(cli.runs):
            run_wrk(args, tg.server.base, mode="handoff", token=tg.token, run_id=f"{tag}-{k}", duration=cli.duration,
                    server_pid=tg.server.pid)
            m = scrape(tg.server.base)
            print(f"after {cli.duration * (k + 1):.0f} s of handoffs: {m.get('tierdesk_queue_waiting', 0):,.0f} waiting, "
                  f"longest loop step {m.get(LOOP_STEP, 0) * 1000:.1f} ms CPU", flush=True)
        print(f"warnings logged: {tg.server.log_problems() or 'none'}")
    finally:
        T.stop_servers(servers)
        if cli.probe_steps and Path(cli.probe_steps).exists():
            probed = read_probe([Path(cli.probe_steps)])
            print(f"every step timed: {probed['steps_timed']:,} steps; the longest, CPU ms (of it the collector's):")
            for step in probed["slowest"]:
                print(f"  {step['cpu_ms']:7.2f} ({step['gc_ms']:.2f})  {step['what']}")
        if database is not None:
            pg_drop(cli.pg_admin_url, database)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The event loop's longest steps, each timed: a tierdesk target served
through bench/step_probe.py and driven with the bench's loads.

The gauge every run reads (tierdesk_loop_longest_step_cpu_seconds) bounds a
step from above by the CPU between two heartbeats, which at saturation is a
whole loop iteration of many steps. This phase names the steps themselves,
on the database the target's runs left behind (its queue of 60,000
handoffs, its stored messages), with a server whose every step is timed: so
its CPU per message is not the target's, and only its steps are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import BENCH, log
from measure import measure_open, measure_saturated
from servers import Server
from targets import start_target, stop_servers

# What a report lists besides the longest.
SHOWN = 5


def probe_argv(out: Path) -> list[str]:
    return [sys.executable, str(BENCH / "step_probe.py"), str(out), "serve"]


def read_probe(out: Path) -> dict[str, Any]:
    report = json.loads(out.read_text())
    slowest = report["slowest"]
    return {"steps_timed": report["steps"], "histogram_ms": report["histogram"],
            "longest_step_ms": slowest[0]["cpu_ms"] if slowest else None, "slowest": slowest[:SHOWN]}


def probe_steps(args: argparse.Namespace, name: str, tmp: Path, models: Path, database_url: str,
                tag: str) -> dict[str, Any]:
    """FAQ and handoffs saturated, then the FAQ/handoff mix, each for the
    run's duration, against ``database_url`` as the target left it."""
    out = tmp / f"steps-{name}.json"
    servers: list[Server] = []
    try:
        tg = start_target(args, name, tmp, models, database_url, servers, argv=probe_argv(out))
        runs = {"faq": measure_saturated(args, tg, "faq", f"{tag}-{name}-steps-faq", args.duration),
                "handoff": measure_saturated(args, tg, "handoff", f"{tag}-{name}-steps-handoff", args.duration),
                "mix": measure_open(args, tg, "mix", f"{tag}-{name}-steps-mix", args.mix_rate, tmp,
                                    handoff_share=args.mix_handoff_share)}
        queued = tg.db.capacity()["open_queued"] if tg.db is not None else None
    finally:
        stop_servers(servers)
    result = read_probe(out) | {
        "queued": queued,
        "runs": {k: {"requests": r.get("requests"), "req_s": r.get("req_s") or r.get("achieved_rate")}
                 for k, r in runs.items()},
    }
    log(f"  {name}, every step timed ({result['steps_timed']:,} steps, {queued:,} handoffs queued): longest "
        f"{result['longest_step_ms']} ms CPU, {result['slowest'][0]['what'] if result['slowest'] else '-'}")
    return result

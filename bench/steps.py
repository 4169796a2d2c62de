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


def read_probe(outs: list[Path]) -> dict[str, Any]:
    """The probes' reports, one per process of the target, as one."""
    reports = [json.loads(out.read_text()) for out in outs]
    slowest = sorted((s for r in reports for s in r["slowest"]), key=lambda s: -s["cpu_ms"])
    histogram: dict[str, int] = {}
    for r in reports:
        for bucket, n in r["histogram"].items():
            histogram[bucket] = histogram.get(bucket, 0) + n
    return {"steps_timed": sum(r["steps"] for r in reports), "histogram_ms": histogram,
            "longest_step_ms": slowest[0]["cpu_ms"] if slowest else None, "slowest": slowest[:SHOWN],
            "processes": len(reports)}


def probe_steps(args: argparse.Namespace, name: str, tmp: Path, models: Path, database_url: str,
                tag: str) -> dict[str, Any]:
    """FAQ and handoffs saturated, then the FAQ/handoff mix, each for the
    run's duration, against ``database_url`` as the target left it; every
    process of the target probed (several instances: each one)."""
    out = tmp / f"steps-{name}-{{k}}.json"
    servers: list[Server] = []
    try:
        tg = start_target(args, name, tmp, models, database_url, servers, argv=probe_argv(out))
        outs = [Path(str(out).replace("{k}", str(k))) for k in range(len(tg.servers))]
        runs = {"faq": measure_saturated(args, tg, "faq", f"{tag}-{name}-steps-faq", args.duration),
                "handoff": measure_saturated(args, tg, "handoff", f"{tag}-{name}-steps-handoff", args.duration),
                "mix": measure_open(args, tg, "mix", f"{tag}-{name}-steps-mix", args.mix_rate, tmp,
                                    handoff_share=args.mix_handoff_share)}
        queued = tg.db.capacity()["open_queued"] if tg.db is not None else None
    finally:
        stop_servers(servers)
    result = read_probe(outs) | {
        "queued": queued,
        "runs": {k: {"requests": r.get("requests"), "req_s": r.get("req_s") or r.get("achieved_rate")}
                 for k, r in runs.items()},
    }
    log(f"  {name}, every step timed ({result['steps_timed']:,} steps, {queued:,} handoffs queued): longest "
        f"{result['longest_step_ms']} ms CPU, {result['slowest'][0]['what'] if result['slowest'] else '-'}")
    return result

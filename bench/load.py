"""The load: wrk (closed loop, saturated) and bench/loadgen.py (open loop,
at a set rate), and the measurements made with them."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from accounting import CpuMeter
from common import BENCH, BenchError


def check_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed. On Debian/Ubuntu: `sudo apt-get install -y wrk` "
                         "(the benchmark drives every target with wrk and bench/message.lua).")
    return wrk


WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = re.search(r"^BENCH_JSON (\{.*\})$", text, re.M)
    if m:
        out.update(json.loads(m.group(1)))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["req_s"] = float(m.group(1))
    for pct, key in (("50", "p50_text"), ("99", "p99_text")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[key] = float(m.group(1)) * WRK_UNITS[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non2xx_text"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors_text"] = [int(x) for x in m.groups()]
    if "requests" not in out and "req_s" not in out:
        raise BenchError(f"could not parse wrk's output:\n{text}")
    return out


def run_wrk(args: argparse.Namespace, base: str | list[str], *, mode: str, token: str, run_id: str,
            duration: float, server_pid: int | list[int] | None, db_pids: list[int] | None = None) -> dict[str, Any]:
    """wrk against one server, or one wrk per instance (each with its share
    of the connections and threads) run at once."""
    bases = [base] if isinstance(base, str) else base
    conns = max(1, args.connections // len(bases))
    threads = max(1, min(conns, args.threads // len(bases)))
    cmds = [[args.wrk, f"-t{threads}", f"-c{conns}", f"-d{int(round(duration))}s",
             "--timeout", "10s", "--latency", "-s", str(BENCH / "message.lua"), b + "/v1/messages"] for b in bases]
    # Each wrk its own thread numbers: a distinct RUN per instance keeps message ids unique.
    envs = [os.environ | {"MODE": mode, "TOKEN": token, "RUN": run_id if len(bases) == 1 else f"{run_id}-i{k}"}
            for k in range(len(bases))]
    with CpuMeter(server_pid, db_pids) as cpu:
        procs = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for c, e in zip(cmds, envs)]
        outs = [p.communicate(timeout=duration + 60) for p in procs]
    parsed = []
    for p, (out, err) in zip(procs, outs):
        if p.returncode != 0:
            raise BenchError(f"wrk failed ({p.returncode}): {err.strip()}\n{out}")
        parsed.append(parse_wrk(out))
    r = combine_wrk(parsed, duration)
    r.update({
        "tool": "wrk (closed loop)" + (f", one per instance ({len(bases)})" if len(bases) > 1 else ""),
        "command": "; ".join(" ".join(shlex.quote(c) for c in cmd) for cmd in cmds) + f"  # MODE={mode} RUN={run_id}",
        "mode": mode,
        "run_id": run_id,
        "connections": conns * len(bases),
        "cpu": cpu.result,
        "raw": "\n".join(out for out, _ in outs),
    })
    return r


def combine_wrk(parsed: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    """One result from the wrk runs made at once against instances: counts
    summed; each percentile the worst instance's (percentiles do not add)."""
    def worst(key: str, text_key: str | None = None) -> float | None:
        vals = [w[key] / 1000 if key in w else w.get(text_key or "") for w in parsed]
        vals = [v for v in vals if v is not None]
        return round(max(vals), 3) if vals else None

    requests = sum(int(w.get("requests", 0)) for w in parsed)
    dur_s = max(w.get("duration_us", duration * 1e6) for w in parsed) / 1e6
    socket_errors = sum(w.get(k, 0) for w in parsed
                        for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
    non2xx = sum(int(w.get("non2xx_text", w.get("errors_status", 0))) for w in parsed)
    return {
        "duration_s": round(dur_s, 2),
        "requests": requests,
        "req_s": round(requests / dur_s, 1) if dur_s else sum(w.get("req_s", 0) for w in parsed),
        "p50_ms": worst("p50_us", "p50_text"),
        "p90_ms": worst("p90_us"),
        "p99_ms": worst("p99_us", "p99_text"),
        "p999_ms": worst("p999_us"),
        "max_ms": worst("max_us"),
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "ok_2xx": requests - non2xx,
    }


def run_loadgen(args: argparse.Namespace, base: str | list[str], *, mode: str, token: str, run_id: str,
                rate: float, duration: float, server_pid: int | list[int] | None, acked_out: Path,
                db_pids: list[int] | None = None, handoff_share: float | None = None) -> dict[str, Any]:
    urls = base if isinstance(base, str) else ",".join(base)
    cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", urls, "--token", token, "--mode", mode,
           "--rate", f"{rate:.1f}", "--duration", str(duration), "--connections", str(args.connections),
           "--run", run_id, "--acked-out", str(acked_out)]
    if handoff_share is not None:
        cmd += ["--handoff-share", str(handoff_share)]
    with CpuMeter(server_pid, db_pids) as cpu:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"loadgen failed ({proc.returncode}):\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["command"] = " ".join(shlex.quote(c) for c in cmd).replace(token, "$TOKEN") if token else \
        " ".join(shlex.quote(c) for c in cmd)
    r["run_id"] = run_id
    r["req_s"] = r["achieved_rate"]
    r["cpu"] = cpu.result
    return r

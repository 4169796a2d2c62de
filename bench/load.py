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


def run_wrk(args: argparse.Namespace, base: str, *, mode: str, token: str, run_id: str, duration: float,
            server_pid: int | None, db_pids: list[int] | None = None) -> dict[str, Any]:
    cmd = [args.wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{int(round(duration))}s",
           "--timeout", "10s", "--latency", "-s", str(BENCH / "message.lua"), base + "/v1/messages"]
    env = os.environ | {"MODE": mode, "TOKEN": token, "RUN": run_id}
    with CpuMeter(server_pid, db_pids) as cpu:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}\n{proc.stdout}")
    w = parse_wrk(proc.stdout)
    requests = int(w.get("requests", 0))
    dur_s = w.get("duration_us", duration * 1e6) / 1e6
    errors_socket = sum(w.get(k, 0) for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout"))
    non2xx = int(w.get("non2xx_text", w.get("errors_status", 0)))
    return {
        "tool": "wrk (closed loop)",
        "command": " ".join(shlex.quote(c) for c in cmd) + f"  # MODE={mode} RUN={run_id}",
        "mode": mode,
        "run_id": run_id,
        "connections": args.connections,
        "duration_s": round(dur_s, 2),
        "requests": requests,
        "req_s": round(requests / dur_s, 1) if dur_s else w.get("req_s"),
        "p50_ms": round(w["p50_us"] / 1000, 3) if "p50_us" in w else w.get("p50_text"),
        "p90_ms": round(w["p90_us"] / 1000, 3) if "p90_us" in w else None,
        "p99_ms": round(w["p99_us"] / 1000, 3) if "p99_us" in w else w.get("p99_text"),
        "p999_ms": round(w["p999_us"] / 1000, 3) if "p999_us" in w else None,
        "max_ms": round(w["max_us"] / 1000, 3) if "max_us" in w else None,
        "non2xx": non2xx,
        "socket_errors": errors_socket,
        "ok_2xx": requests - non2xx,
        "cpu": cpu.result,
        "raw": proc.stdout,
    }


def run_loadgen(args: argparse.Namespace, base: str, *, mode: str, token: str, run_id: str, rate: float,
                duration: float, server_pid: int | None, acked_out: Path,
                db_pids: list[int] | None = None) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", base, "--token", token, "--mode", mode,
           "--rate", f"{rate:.1f}", "--duration", str(duration), "--connections", str(args.connections),
           "--run", run_id, "--acked-out", str(acked_out)]
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

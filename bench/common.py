"""Where the benchmark writes, how it logs, and its error."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PERF_DOC = ROOT / "docs" / "performance.md"
PROJ_BEGIN, PROJ_END = "<!-- projection:begin -->", "<!-- projection:end -->"
HOST = "127.0.0.1"
# Workers publish their /metrics series to one another every second.
WORKER_METRICS_LAG_SECONDS = 1.2
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass

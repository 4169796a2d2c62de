"""py-spy profiles of a target under load, summarised by category and frame."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, BenchError
from load import run_loadgen, run_wrk
from servers import Server


def summarize_profile(raw_path: Path, duration: float, rate: int, top: int = 25) -> dict[str, Any]:
    """Inclusive and self sample counts per frame from py-spy's raw
    (collapsed-stack) output, per thread."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    main_inclusive: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw_path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = frames[0] if frames[0].startswith(("thread", "process")) else "?"
        body = frames[1:] if thread != "?" else frames
        threads[thread] += n
        total += n
        for f in set(body):
            inclusive[f] += n
            if "MainThread" in thread:
                main_inclusive[f] += n
        for pkg in {_package(f) for f in body}:
            packages[pkg] += n
        categories[_category(body)] += n
        if body:
            own[body[-1]] += n
    expected = duration * rate

    def rows(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": f, "samples": n, "share": round(n / total, 3) if total else None}
                for f, n in c.most_common(top)]

    return {
        "samples": total,
        "samples_expected_per_busy_thread": int(expected),
        "threads": [{"thread": t, "samples": n, "busy_share": round(n / expected, 3) if expected else None}
                    for t, n in threads.most_common()],
        "top_inclusive": rows(inclusive),
        "top_inclusive_main_thread": rows(main_inclusive),
        "top_self": rows(own),
        "categories": [{"category": k, "samples": n, "share": round(n / total, 3) if total else None}
                       for k, n in categories.most_common()],
        "packages_inclusive": [{"package": k, "samples": n, "share": round(n / total, 3) if total else None}
                               for k, n in packages.most_common(20)],
    }


# Who is running when a sample is taken: the frame nearest the leaf that
# belongs to one of these, so SQLAlchemy called by storage/ counts as
# "SQL", the classifier called by the Desk as "classifier", and so on.
CATEGORIES = (
    ("classifier (features, scoring)", ("classifier/", "scipy/", "numpy/", "sklearn/")),
    ("SQL: SQLAlchemy, drivers, storage/", ("sqlalchemy/", "aiosqlite/", "asyncpg/", "psycopg/", "storage/",
                                            "sqlite3/")),
    ("domain: router/ (Desk, routing, policy)", ("router/",)),
    ("logging and metrics (structlog, prom)", ("structlog/", "tierdesk/web/prom.py", "tierdesk/logging.py")),
    ("tierdesk web layer (handlers, auth, schemas, middlewares)", ("tierdesk/",)),
    ("aiohttp (HTTP parsing, routing, responses)", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncio machinery (tasks, futures, shield)", ("asyncio/",)),
    ("threads and executors", ("concurrent/", "threading.py", "queue.py")),
)


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        m = re.search(r"\(([^()]*)\)$", frame)
        path = m.group(1) if m else frame
        for name, prefixes in CATEGORIES:
            if path.startswith(prefixes) and not path.startswith("tierdesk/cli.py"):
                return name
    return "event loop (uvloop callbacks, no Python frame of the above)"


def _package(frame: str) -> str:
    """'Connection.execute (sqlalchemy/engine/base.py)' -> 'sqlalchemy'."""
    m = re.search(r"\(([^()]*)\)$", frame)
    path = m.group(1) if m else frame
    if "/" not in path:
        return path
    head = path.split("/")[0]
    return {"site-packages": path.split("/")[1]}.get(head, head)


def run_profile(args: argparse.Namespace, server: Server, token: str, run_id: str, mode: str,
                name: str, *, rate: float | None = None, tmp: Path | None = None) -> dict[str, Any]:
    """py-spy during an extra run: saturated (wrk), or open loop at ``rate``."""
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if pyspy is None:
        raise BenchError("py-spy is not installed: `.venv/bin/pip install py-spy`")
    raw = RESULTS / f"profile-{name}-{mode}{'-half' if rate else ''}.txt"
    svg_dur = args.profile_seconds
    wrk_duration = svg_dur + 3
    # --gil: sample only the thread holding the GIL, i.e. where the Python
    # CPU time goes (everything Python in the server process shares one
    # GIL; SQLite's writer is a process of its own, not sampled here).
    # py-spy's idle detection is not used: in this VM it counted threads
    # blocked on a queue as busy.
    cmd = [pyspy, "record", "-p", str(server.pid), "-d", str(int(svg_dur)), "-r", "100", "--nolineno",
           "--gil", "--threads", "-f", "raw", "-o", str(raw)]
    if getattr(args, "profile_subprocesses", False):  # workers: every process under the supervisor
        cmd.insert(2, "--subprocesses")
    result: dict[str, Any] = {}

    def load() -> None:
        if rate is None:
            result["load"] = run_wrk(args, server.base, mode=mode, token=token, run_id=run_id,
                                     duration=wrk_duration, server_pid=server.pid)
        else:
            assert tmp is not None
            result["load"] = run_loadgen(args, server.base, mode=mode, token=token, run_id=run_id, rate=rate,
                                         duration=wrk_duration, server_pid=server.pid,
                                         acked_out=tmp / f"{run_id}.ids")

    t = threading.Thread(target=load, name="profile-load")
    t.start()
    time.sleep(1.5)
    spy = subprocess.run(cmd, capture_output=True, text=True, timeout=svg_dur + 60)
    t.join(timeout=wrk_duration + 90)
    if spy.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed ({spy.returncode}): {spy.stderr.strip()}")
    summary = summarize_profile(raw, svg_dur, 100)
    w = result.get("load", {})
    w.pop("raw", None)
    return {"command": " ".join(shlex.quote(c) for c in cmd), "raw_file": str(raw.relative_to(ROOT)),
            "load_during_profile": w, **summary}

"""The performance benchmark: tierdesk against a bare aiohttp handler, in one run.

    .venv/bin/python bench/run.py                 # 10 s per measurement, 2 rounds: ~4 minutes
    .venv/bin/python bench/run.py --quick         # 3 s per measurement, 1 round: ~1.5 minutes
    .venv/bin/python bench/run.py --profile       # also py-spy profiles of tierdesk/SQLite (+~35 s)

Exit status: 0 every target met, 3 some target missed (results written
anyway), 1 error, 2 wrk missing, 130 interrupted. docs/performance.md
explains the method and what the figures mean for sizing.

What it does, on 127.0.0.1 only, every step bounded in time:

1. Trains the demo FAQ model into a temporary models directory (or uses
   ``--models-dir``).
2. Starts each target as a subprocess and drives it with the same load:
   * ``bare``: bench/bare_app.py, an aiohttp handler of the same shape as
     POST /v1/messages (read the body, parse JSON, answer JSON): the baseline;
   * ``sqlite``: ``tierdesk serve`` on a fresh SQLite file;
   * ``postgresql``: ``tierdesk serve`` on a fresh database created on
     ``--pg-admin-url`` (dropped afterwards).
   Rate limits are switched off, logging is at warning level; durability is
   the shipped default (every 2xx is answered after its group commit).
3. Per target and path (FAQ answer, handoff):
   * saturated: ``wrk -t2 -c64 -d<D>s --timeout 10s --latency -s bench/message.lua``
     (closed loop: req/s, p50, p99, non-2xx), in interleaved rounds over the
     targets (``--rounds``) so a neighbour's burst hits all of them;
   * half rate: bench/loadgen.py, an open-loop generator in its own process,
     at 50% of that target's saturated req/s on that path (p50, p99 measured
     from each request's scheduled send time, so stalls are not hidden).
4. Checks: every message acknowledged 2xx is in the database (after the
   server has been killed with SIGKILL); after the handoff runs, and once a
   second during them, no agent holds more open handoffs than its capacity.
5. Writes bench/results/latest.json and replaces the table between
   ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in docs/benchmarks.md.

Also recorded: server RSS after the FAQ run, group-commit batch sizes (from
/metrics), server CPU per thread and per request, the CPU of the PostgreSQL
backends, the CPU other processes used during each measurement and the load
average (a busy machine makes every figure worse), the commit measured.
With ``--profile``: py-spy (``--gil``) during extra runs of tierdesk on SQLite (or on
the database ``--profile-target`` names)
(FAQ saturated, FAQ at half rate, handoff saturated), summarised by category
and by inclusive frame.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import statistics
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
HOST = "127.0.0.1"
# Workers publish their /metrics series to one another every second.
WORKER_METRICS_LAG_SECONDS = 1.2
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Targets of the performance issue.
TARGETS = {
    "sqlite_faq_ratio": 0.30,
    "sqlite_faq_p99_ms": 25.0,
    "sqlite_faq_half_p99_ms": 10.0,
    "postgresql_faq_ratio": 0.25,
    "handoff_ratio": 0.20,
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------- machine facts
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def code_version() -> dict[str, Any]:
    """The commit measured, and files that differed from it (other people's
    work in progress is measured too)."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if not line[3:].startswith(("bench/", "docs/"))]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "modified_files": dirty}


def package_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


# ------------------------------------------------------------- CPU accounting
def _proc_cpu_s(path: str) -> float:
    """utime+stime of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat, seconds."""
    with open(path) as fh:
        data = fh.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as fh:
        parts = fh.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU used during one measurement: the server (main thread, other
    threads), the load generator (reaped child), everything else."""

    def __init__(self, server_pid: int | None, db_pids: list[int] | None = None) -> None:
        self.pid = server_pid
        # PostgreSQL backends serving the target: part of the system under
        # test, not neighbours.
        self.db_pids = db_pids or []

    def _db(self) -> dict[int, float]:
        out = {}
        for pid in self.db_pids:
            try:
                out[pid] = _proc_cpu_s(f"/proc/{pid}/stat")
            except (OSError, ValueError):
                pass
        return out

    def _server(self) -> tuple[float, float, float]:
        # Summed over the server's workers, if it has any: "main thread" is
        # then each worker's event loop thread.
        if self.pid is None:
            return 0.0, 0.0, 0.0
        main = total = loop = 0.0
        for pid in process_tree(self.pid):
            try:
                total += _proc_cpu_s(f"/proc/{pid}/stat")
                thread = _proc_cpu_s(f"/proc/{pid}/task/{pid}/stat")
            except (OSError, ValueError):
                continue
            main += thread
            if pid == self.pid:
                # One server process: its event loop's thread (with workers, the supervisor's).
                loop = thread
        return main, total, loop

    def __enter__(self) -> CpuMeter:
        import resource

        self.t0 = time.perf_counter()
        self.m0 = machine_busy_s()
        self.s0 = self._server()
        self.d0 = self._db()
        self.c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.load0 = os.getloadavg()
        return self

    def __exit__(self, *exc: object) -> None:
        import resource

        wall = time.perf_counter() - self.t0
        m1 = machine_busy_s()
        s1 = self._server()
        d1 = self._db()
        db = sum(d1[p] - self.d0[p] for p in d1 if p in self.d0)
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = m1[0] - self.m0[0]
        server_main = s1[0] - self.s0[0]
        server_all = s1[1] - self.s0[1]
        gen = (c1.ru_utime + c1.ru_stime) - (self.c0.ru_utime + self.c0.ru_stime)
        self.result = {
            "wall_s": round(wall, 2),
            "machine_busy_cores": round(busy / wall, 2),
            "server_main_thread_cores": round(server_main / wall, 2),
            "server_other_threads_cores": round((server_all - server_main) / wall, 2),
            "load_generator_cores": round(gen / wall, 2),
            # Whatever else ran on the machine (other engineers' tests, ...).
            "database_backends_cores": round(db / wall, 2),
            "other_processes_cores": round(max(0.0, busy - server_all - gen - db) / wall, 2),
            "loadavg_before": [round(x, 2) for x in self.load0],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "server_main_thread_s": round(server_main, 3),
            "server_total_s": round(server_all, 3),
            "database_backends_s": round(db, 3),
            "other_processes_s": round(max(0.0, busy - server_all - gen - db), 3),
            "load_generator_s": round(gen, 3),
            "server_root_main_thread_s": round(s1[2] - self.s0[2], 3),
        }


# ------------------------------------------------------------------ HTTP bits
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{method} {url}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
    ctype = resp.headers.get("Content-Type", "")
    return json.loads(raw) if "json" in ctype else raw.decode()


def scrape(base: str, workers: int = 1) -> dict[str, float]:
    """The Prometheus text at /metrics as {'name{labels}': value}, summed
    over workers. With several, each shows the others' series as they were
    up to a second ago (tierdesk/web/worker_metrics.py), so this waits that
    long first."""
    if workers > 1:
        time.sleep(WORKER_METRICS_LAG_SECONDS)
    out: dict[str, float] = {}
    for line in http("GET", base + "/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        key = re.sub(r'worker="\d+",?', "", key).replace("{}", "")
        try:
            out[key] = out.get(key, 0.0) + float(value)
        except ValueError:
            pass
    return out


def metrics_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    batches = (after.get("tierdesk_group_commit_batches_total", 0)
               - before.get("tierdesk_group_commit_batches_total", 0))
    changes = (after.get("tierdesk_group_commit_changes_total", 0)
               - before.get("tierdesk_group_commit_changes_total", 0))
    stepwise = (after.get("tierdesk_group_commit_stepwise_batches_total", 0)
                - before.get("tierdesk_group_commit_stepwise_batches_total", 0))
    actions: dict[str, int] = {}
    for key, v in after.items():
        m = re.fullmatch(r'tierdesk_messages_total\{action="([^"]+)"\}', key)
        if m:
            d = int(v - before.get(key, 0))
            if d:
                actions[m.group(1)] = d
    return {
        "group_commit_batches": int(batches),
        "group_commit_changes": int(changes),
        "group_commit_mean_batch": round(changes / batches, 1) if batches else None,
        "group_commit_stepwise_batches": int(stepwise),
        "actions": actions,
    }


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (a server started with TIERDESK_WORKERS > 1
    is a supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            pass
    return out


def rss_mib(pid: int) -> float | None:
    """Resident memory of the process and its descendants."""
    total = None
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = (total or 0.0) + int(line.split()[1]) / 1024
        except OSError:
            pass
    return round(total, 1) if total is not None else None


# -------------------------------------------------------------------- servers
class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log_path: Path) -> None:
        self.name, self.argv, self.env, self.port, self.log_path = name, argv, env, port, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://{HOST}:{port}"

    def start(self, ready_path: str | None, timeout: float = 90.0) -> None:
        self._log = open(self.log_path, "wb")
        # A session of its own: a Ctrl-C at the terminal reaches this script,
        # which then stops the server in its `finally`.
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if ready_path is None:
                    with socket.create_connection((HOST, self.port), timeout=1):
                        return
                else:
                    http("GET", self.base + ready_path, timeout=2)
                    return
            except (OSError, BenchError):
                time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, int]:
        """Warning/error log events by name (the server logs JSON lines)."""
        found: Counter[str] = Counter()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    found["unstructured: " + line.strip()[:80]] += 1
                continue
            if isinstance(rec, dict) and rec.get("level") in ("warning", "error", "critical"):
                found[f"{rec.get('level')}: {rec.get('event')}"] += 1
        return dict(found)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                # The session's whole group: a server with workers dies at once, as in a crash.
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# --------------------------------------------------------------- load drivers
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


# ------------------------------------------------------------------- database
class Db:
    """Read-only checks on the target's database."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5)

    def query(self, sql: str, params: tuple[Any, ...] = (), conn: Any = None) -> list[tuple[Any, ...]]:
        own = conn is None
        conn = conn or self.connect()
        try:
            if self.url.startswith("sqlite"):
                return list(conn.execute(sql, params).fetchall())
            return list(conn.execute(sql.replace("?", "%s"), params).fetchall())
        finally:
            if own:
                conn.close()

    def inbound_ids(self, channel_id: str, prefix: str) -> set[str]:
        rows = self.query("SELECT external_id FROM messages WHERE channel_id = ? AND sender = 'customer' "
                          "AND external_id LIKE ?", (channel_id, prefix + "-%"))
        return {r[0] for r in rows}

    CAPACITY_SQL = (
        "SELECT a.id, a.capacity, a.open_count, COUNT(h.id) FROM agents a "
        "LEFT JOIN handoffs h ON h.agent_id = a.id AND h.resolved_at IS NULL "
        "GROUP BY a.id, a.capacity, a.open_count"
    )

    def capacity(self, conn: Any = None) -> dict[str, Any]:
        rows = self.query(self.CAPACITY_SQL, conn=conn)
        over = [{"agent": r[0], "capacity": r[1], "open_count": r[2], "open_handoffs": r[3]}
                for r in rows if r[3] > r[1] or r[2] > r[1]]
        mismatched = sum(1 for r in rows if r[2] != r[3])
        assigned = sum(r[3] for r in rows)
        queued = self.query("SELECT COUNT(*) FROM handoffs WHERE agent_id IS NULL AND resolved_at IS NULL",
                            conn=conn)[0][0]
        return {"agents": len(rows), "slots": sum(r[1] for r in rows), "open_assigned": assigned,
                "open_queued": queued, "over_capacity": over, "open_count_mismatches": mismatched}


class CapacitySampler(threading.Thread):
    """Checks the capacity invariant in the database once a second while the
    handoff load runs ("no capacity ever exceeded", as far as a 1 Hz sample
    and the final check can tell; the database's own guard refuses the rest)."""

    def __init__(self, db: Db, interval: float = 1.0) -> None:
        super().__init__(daemon=True, name="capacity-sampler")
        self.db, self.interval = db, interval
        self.stop_event = threading.Event()
        self.samples = 0
        self.violations: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        try:
            conn = self.db.connect()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(repr(exc))
            return
        try:
            while not self.stop_event.wait(self.interval):
                try:
                    c = self.db.capacity(conn)
                except Exception as exc:  # noqa: BLE001 - e.g. a busy SQLite; keep sampling
                    self.errors.append(repr(exc)[:200])
                    continue
                self.samples += 1
                if c["over_capacity"]:
                    self.violations.extend(c["over_capacity"])
        finally:
            conn.close()

    def result(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(timeout=15)
        return {"samples": self.samples, "violations": self.violations[:20], "errors": self.errors[:5]}


def pg_settings(admin_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        out = {"server_version": conn.execute("SHOW server_version").fetchone()[0]}
        for name in ("synchronous_commit", "fsync", "full_page_writes", "wal_level", "shared_buffers",
                     "max_connections"):
            out[name] = conn.execute(f"SHOW {name}").fetchone()[0]
    return out


def pg_create(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(admin_url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + database, u.query, u.fragment))


# -------------------------------------------------------------------- profile
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


# ----------------------------------------------------------------- the runs
def stop_servers(servers: list[Server]) -> None:
    """Stop every server started, whatever went wrong; keep cleaning up."""
    for s in servers:
        try:
            s.stop()
        except Exception as exc:  # noqa: BLE001 - keep cleaning up
            print(f"warning: could not stop {s.name}: {exc!r}", file=sys.stderr)


def discard_or_keep(tmp: Path, code: int) -> None:
    """Remove the scratch directory after a clean run; keep its logs otherwise."""
    if code == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"server logs kept in {tmp}", file=sys.stderr)


ALL_TARGETS = ("bare", "sqlite", "postgresql", "postgresql-workers")
# (name, label) of the tierdesk targets, and of those on PostgreSQL (set in main()).
DB_TARGETS: list[tuple[str, str]] = [("sqlite", "SQLite"), ("postgresql", "PostgreSQL")]
PG_TARGETS: list[tuple[str, str]] = [("postgresql", "PostgreSQL")]


def target_label(name: str, args: argparse.Namespace) -> str:
    return {"bare": "bare aiohttp", "sqlite": "tierdesk SQLite", "postgresql": "tierdesk PostgreSQL",
            "postgresql-workers": f"tierdesk PostgreSQL, {args.pg_workers} workers"}[name]


def tierdesk_argv() -> list[str]:
    script = Path(sys.executable).parent / "tierdesk"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "tierdesk.cli", "serve"]


def probe_args() -> argparse.Namespace:
    """What the helpers below need from the command line, as `make bench`
    runs them, for the tools that drive one target at a time
    (bench/ab.py, bench/rates.py)."""
    return argparse.Namespace(wrk=check_wrk(), threads=2, connections=64, agents=20, capacity=5,
                              sqlite_synchronous=None, pg_workers=1)


def train_model(models_dir: str | None, tmp: Path) -> Path:
    d = Path(models_dir).resolve() if models_dir else tmp / "models"
    if (d / "ACTIVE").exists():
        log(f"using the model in {d}")
        return d
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from classifier.training import train_and_save

    log(f"training the demo FAQ model into {d} ...")
    t0 = time.perf_counter()
    version = train_and_save(ROOT / "knowledge_base", d, activate=True)
    log(f"trained {version} in {time.perf_counter() - t0:.1f}s")
    return d


def server_env(database_url: str, admin: str, models: Path, port: int, **extra: str) -> dict[str, str]:
    """The environment of a tierdesk server under test (none of ours leaks in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERDESK_") and k != "DATABASE_URL"}
    env.update({
        "TIERDESK_DATABASE_URL": database_url,
        "TIERDESK_ADMIN_TOKEN": admin,
        "TIERDESK_MODELS_DIR": str(models),
        "TIERDESK_KNOWLEDGE_BASE": str(ROOT / "knowledge_base"),
        "TIERDESK_HOST": HOST,
        "TIERDESK_PORT": str(port),
        "TIERDESK_LOG_LEVEL": "warning",
    })
    env.update(extra)
    return env


def tierdesk_env(args: argparse.Namespace, database_url: str, admin: str, models: Path, port: int) -> dict[str, str]:
    env = server_env(database_url, admin, models, port, TIERDESK_RATE_LIMIT_CHANNEL_PER_SECOND="0",
                     TIERDESK_RATE_LIMIT_IP_PER_SECOND="0")
    if args.sqlite_synchronous:
        env["TIERDESK_SQLITE_SYNCHRONOUS"] = args.sqlite_synchronous
    return env


class Target:
    """One server under test and what was measured on it."""

    def __init__(self, name: str, label: str, server: Server, db: Db | None = None, workers: int = 1) -> None:
        self.name, self.label, self.server, self.db, self.workers = name, label, server, db, workers
        self.token = ""
        self.channel_id = ""
        self.out: dict[str, Any] = {"pid": None, "label": label}
        self.acked_files: dict[str, Path] = {}
        self.counted: dict[str, int] = {}
        self.sampler: CapacitySampler | None = None

    @property
    def is_tierdesk(self) -> bool:
        return self.db is not None

    def db_pids(self) -> list[int]:
        """PostgreSQL backend processes connected to the target's database."""
        if self.db is None or self.db.url.startswith("sqlite"):
            return []
        rows = self.db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                             "AND pid <> pg_backend_pid()")
        return [int(r[0]) for r in rows]


def start_target(args: argparse.Namespace, name: str, tmp: Path, models: Path, database_url: str | None,
                 servers: list[Server]) -> Target:
    port = free_port()
    if name == "bare":
        server = Server("bare", [sys.executable, str(BENCH / "bare_app.py"), str(port)], dict(os.environ), port,
                        tmp / "bare.log")
        servers.append(server)
        server.start(None)
        log(f"bare baseline on :{port} (pid {server.pid})")
        tg = Target(name, "bare aiohttp", server)
        tg.out["pid"] = server.pid
        return tg
    assert database_url is not None
    admin = "td_admin_bench_" + secrets.token_hex(16)
    workers = args.pg_workers if name == "postgresql-workers" else 1
    env = tierdesk_env(args, database_url, admin, models, port) | {"TIERDESK_WORKERS": str(workers)}
    server = Server(name, tierdesk_argv(), env, port, tmp / f"{name}.log")
    servers.append(server)
    t0 = time.perf_counter()
    server.start("/readyz")
    log(f"tierdesk/{name} on :{port} (pid {server.pid}), ready in {time.perf_counter() - t0:.1f}s")
    tg = Target(name, target_label(name, args), server, Db(database_url), workers)
    if workers > 1:
        time.sleep(2.0)  # every worker listening, so that the kernel spreads the connections
    channel = http("POST", server.base + "/v1/admin/channels", {"name": "bench"}, token=admin)
    tg.token, tg.channel_id = channel["token"], channel["id"]
    for k in range(args.agents):
        http("POST", server.base + "/v1/admin/agents",
             {"name": f"bench agent {k}", "skills": ["billing", "tech", "general"], "capacity": args.capacity,
              "status": "online"}, token=admin)
    tg.out.update({"pid": server.pid, "database": database_url.split("@")[-1].split("/")[-1]
                   if name != "sqlite" else "fresh temporary SQLite file", "workers": workers,
                   "agents": args.agents, "capacity_per_agent": args.capacity})
    return tg


def per_request(r: dict[str, Any]) -> None:
    """Server CPU per answered request: a figure a busy machine disturbs
    much less than req/s (it still costs some: caches, GIL hand-offs)."""
    n = r.get("requests") or r.get("completed") or 0
    cpu = r.get("cpu", {})
    if n:
        r["server_cpu_ms_per_req"] = round(cpu.get("server_total_s", 0) * 1000 / n, 3)
        r["server_main_thread_cpu_ms_per_req"] = round(cpu.get("server_main_thread_s", 0) * 1000 / n, 3)
        if cpu.get("database_backends_s"):
            r["database_cpu_ms_per_req"] = round(cpu["database_backends_s"] * 1000 / n, 3)


def measure_saturated(args: argparse.Namespace, tg: Target, mode: str, run_id: str,
                      duration: float) -> dict[str, Any]:
    m0 = scrape(tg.server.base, tg.workers) if tg.is_tierdesk else None
    r = run_wrk(args, tg.server.base, mode=mode, token=tg.token, run_id=run_id, duration=duration,
                server_pid=tg.server.pid, db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.server.base, tg.workers)))
    if tg.is_tierdesk:
        tg.counted[run_id] = r["ok_2xx"]
    per_request(r)
    r.pop("raw", None)
    return r


def measure_half(args: argparse.Namespace, tg: Target, mode: str, run_id: str, rate: float,
                 tmp: Path) -> dict[str, Any]:
    m0 = scrape(tg.server.base, tg.workers) if tg.is_tierdesk else None
    path = tmp / f"{run_id}.ids"
    r = run_loadgen(args, tg.server.base, mode=mode, token=tg.token, run_id=run_id, rate=rate,
                    duration=args.duration, server_pid=tg.server.pid, acked_out=path, db_pids=tg.db_pids())
    if m0 is not None:
        r.update(metrics_delta(m0, scrape(tg.server.base, tg.workers)))
    if tg.is_tierdesk:
        tg.acked_files[run_id] = path
    per_request(r)
    # "Sustained": the generator got (nearly) all it scheduled answered in
    # time. If not, the server (or the machine) could not keep up with half
    # the rate it had reached saturated, and the latency shows queueing.
    # Requests that waited for a free connection (all 64 busy) mean the
    # server held a backlog: not sustained either.
    r["sustained"] = bool(r["drained"] and r["achieved_rate"] >= 0.95 * r["target_rate"]
                          and (r.get("sched_lag_p50_ms") or 0) < 5.0)
    log(f"  {tg.name} {mode} half rate: {r['achieved_rate']:.0f}/{r['target_rate']:.0f} req/s "
        f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms non-2xx {r['non2xx']}"
        + ("" if r["sustained"] else "  (NOT sustained)")
        + f"; other processes {r['cpu']['other_processes_cores']} cores")
    return r


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Interleaved rounds of one target and path: median req/s and p50, the
    worst round's p99, summed counts, CPU over all rounds."""
    def med(key: str) -> float | None:
        vals = [r[key] for r in rounds if r.get(key) is not None]
        return round(statistics.median(vals), 3) if vals else None

    def worst(key: str) -> float | None:
        vals = [r[key] for r in rounds if r.get(key) is not None]
        return max(vals) if vals else None

    requests = sum(r["requests"] for r in rounds)
    wall = sum(r["cpu"]["wall_s"] for r in rounds)
    total_s = sum(r["cpu"]["server_total_s"] for r in rounds)
    main_s = sum(r["cpu"]["server_main_thread_s"] for r in rounds)
    other_s = sum(r["cpu"]["other_processes_s"] for r in rounds)
    db_s = sum(r["cpu"].get("database_backends_s", 0) for r in rounds)
    gen_s = sum(r["cpu"].get("load_generator_s", 0) for r in rounds)
    loop_s = sum(r["cpu"].get("server_root_main_thread_s", 0) for r in rounds)
    actions: Counter[str] = Counter()
    for r in rounds:
        actions.update(r.get("actions", {}))
    batches = sum(r.get("group_commit_batches", 0) for r in rounds)
    changes = sum(r.get("group_commit_changes", 0) for r in rounds)
    return {
        "tool": rounds[0]["tool"],
        "command": rounds[0]["command"],
        "rounds": len(rounds),
        "req_s": med("req_s"),
        "p50_ms": med("p50_ms"),
        "p99_ms": worst("p99_ms"),
        "p999_ms": worst("p999_ms"),
        "max_ms": worst("max_ms"),
        "requests": requests,
        "ok_2xx": sum(r["ok_2xx"] for r in rounds),
        "non2xx": sum(r["non2xx"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "actions": dict(actions),
        "group_commit_batches": batches,
        "group_commit_changes": changes,
        "group_commit_mean_batch": round(changes / batches, 1) if batches else None,
        "server_cpu_ms_per_req": round(total_s * 1000 / requests, 3) if requests else None,
        "server_main_thread_cpu_ms_per_req": round(main_s * 1000 / requests, 3) if requests else None,
        "database_cpu_ms_per_req": round(db_s * 1000 / requests, 3) if requests and db_s else None,
        "load_generator_cpu_ms_per_req": round(gen_s * 1000 / requests, 4) if requests and gen_s else None,
        "server_root_main_thread_cpu_ms_per_req": round(loop_s * 1000 / requests, 3) if requests else None,
        "cpu": {
            "wall_s": round(wall, 2),
            "server_main_thread_cores": round(main_s / wall, 2) if wall else None,
            "server_other_threads_cores": round((total_s - main_s) / wall, 2) if wall else None,
            "database_backends_cores": round(db_s / wall, 2) if wall else None,
            "other_processes_cores": round(other_s / wall, 2) if wall else None,
            "other_processes_cores_max_round": max(r["cpu"]["other_processes_cores"] for r in rounds),
        },
        "per_round": [
            {k: r.get(k) for k in ("run_id", "req_s", "p50_ms", "p99_ms", "non2xx", "socket_errors",
                                   "group_commit_mean_batch", "server_cpu_ms_per_req")}
            | {"other_processes_cores": r["cpu"]["other_processes_cores"],
               "loadavg_1m": r["cpu"]["loadavg_before"][0]}
            for r in rounds
        ],
    }


def saturated_phase(args: argparse.Namespace, targets: list[Target], mode: str, tag: str) -> None:
    """Interleaved rounds (target A, B, C, A, B, C, ...): a neighbour that
    loads the machine for a while then hurts every target, not just one,
    and the ratios to the baseline stay comparable."""
    rounds: dict[str, list[dict[str, Any]]] = {tg.name: [] for tg in targets}
    for k in range(args.rounds):
        for tg in targets:
            r = measure_saturated(args, tg, mode, f"{tag}-{tg.name}-{mode}-sat{k}", args.duration)
            rounds[tg.name].append(r)
            log(f"  {tg.name} {mode} saturated, round {k + 1}/{args.rounds}: {r['req_s']:.0f} req/s "
                f"p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms non-2xx {r['non2xx']}"
                + (f" batch {r['group_commit_mean_batch']} actions {r['actions']}" if "actions" in r else "")
                + f"; other processes {r['cpu']['other_processes_cores']} cores")
    for tg in targets:
        tg.out.setdefault(mode, {})["saturated"] = aggregate(rounds[tg.name])


def check_durability(tg: Target) -> dict[str, Any]:
    assert tg.db is not None
    runs: dict[str, Any] = {}
    ok = True
    for run_id, path in tg.acked_files.items():
        acked = set(path.read_text().split())
        stored = tg.db.inbound_ids(tg.channel_id, run_id)
        missing = len(acked - stored)
        ok &= missing == 0
        runs[run_id] = {"acked": len(acked), "stored": len(stored), "acked_missing": missing,
                        "check": "every acknowledged id stored"}
    for run_id, n in tg.counted.items():
        stored = len(tg.db.inbound_ids(tg.channel_id, run_id))
        ok &= stored >= n
        runs[run_id] = {"acked": n, "stored": stored, "acked_missing": max(0, n - stored),
                        "check": "stored >= 2xx count (wrk reports no ids; the surplus were in flight "
                                 "when wrk stopped)"}
    return {"server_killed_with": "SIGKILL", "ok": ok, "runs": runs}


def run_all(args: argparse.Namespace, names: list[str], tmp: Path, results: dict[str, Any],
            servers: list[Server], pg_db_urls: dict[str, str]) -> None:
    tag = results["run_tag"]
    models = train_model(args.models_dir, tmp) if set(names) - {"bare"} else tmp
    urls = {"sqlite": f"sqlite:///{tmp / 'bench.db'}", **pg_db_urls}
    targets = [start_target(args, n, tmp, models, urls.get(n), servers) for n in names]
    tierdesk = [tg for tg in targets if tg.is_tierdesk]
    for tg in targets:
        run_wrk(args, tg.server.base, mode="faq", token=tg.token, run_id=f"{tag}-{tg.name}-warm",
                duration=args.warmup, server_pid=tg.server.pid)

    log("FAQ path (bare: the echo handler), saturated")
    saturated_phase(args, targets, "faq", tag)
    for tg in targets:
        tg.out["rss_mib_after_faq"] = rss_mib(tg.server.pid)
    log("FAQ path at half each target's saturated rate (open loop)")
    for tg in targets:
        rate = tg.out["faq"]["saturated"]["req_s"] * 0.5
        tg.out["faq"]["half"] = measure_half(args, tg, "faq", f"{tag}-{tg.name}-faq-half", rate, tmp)
    prof = next((tg for tg in tierdesk if tg.name == args.profile_target), None)
    if args.profile and prof is not None:
        log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra saturated FAQ run ...")
        prof.out["profile_faq"] = run_profile(args, prof.server, prof.token, f"{tag}-{prof.name}-faq-prof", "faq",
                                              prof.name)
        log(f"  (profiled run: {prof.out['profile_faq']['load_during_profile'].get('req_s')} req/s; "
            "not used for the targets)")
        half_rate = prof.out["faq"]["half"]["target_rate"]
        log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra open-loop FAQ run at {half_rate:.0f}/s ...")
        prof.out["profile_faq_half"] = run_profile(args, prof.server, prof.token, f"{tag}-{prof.name}-faq-profhalf",
                                                   "faq", prof.name, rate=half_rate, tmp=tmp)

    if tierdesk:
        for tg in tierdesk:
            assert tg.db is not None
            tg.sampler = CapacitySampler(tg.db)
            tg.sampler.start()
        try:
            log("handoff path, saturated")
            saturated_phase(args, tierdesk, "handoff", tag)
            log("handoff path at half each target's saturated rate (open loop)")
            for tg in tierdesk:
                rate = tg.out["handoff"]["saturated"]["req_s"] * 0.5
                tg.out["handoff"]["half"] = measure_half(args, tg, "handoff", f"{tag}-{tg.name}-handoff-half",
                                                         rate, tmp)
            if args.profile and prof is not None:
                log(f"  profiling tierdesk/{prof.name} (py-spy) during an extra saturated handoff run ...")
                prof.out["profile_handoff"] = run_profile(args, prof.server, prof.token,
                                                          f"{tag}-{prof.name}-handoff-prof", "handoff", prof.name)
        finally:
            for tg in tierdesk:
                if tg.sampler is not None:
                    tg.out["capacity_during"] = tg.sampler.result()
    for tg in tierdesk:
        assert tg.db is not None and tg.sampler is not None
        during = tg.out.pop("capacity_during")
        after = tg.db.capacity()
        tg.out["capacity"] = {"during": during, "after": after,
                              "ok": not during["violations"] and not after["over_capacity"]}
        log(f"  {tg.name} capacity: {after['open_assigned']} handoffs assigned of {after['slots']} slots, "
            f"{after['open_queued']} queued; over capacity now: {len(after['over_capacity'])}, "
            f"in {during['samples']} samples during the handoff runs: {len(during['violations'])}")
        tg.out["rss_mib_end"] = rss_mib(tg.server.pid)
        tg.out["log_problems"] = tg.server.log_problems()
        if any(k.startswith(("error", "critical", "unstructured")) for k in tg.out["log_problems"]):
            # Kept where the results are: the scratch directory goes at the end.
            RESULTS.mkdir(parents=True, exist_ok=True)
            kept = RESULTS / f"server-{tg.name}.log"
            shutil.copyfile(tg.server.log_path, kept)
            tg.out["server_log"] = str(kept.relative_to(ROOT))
            log(f"  {tg.name} logged errors: its log is kept in {tg.out['server_log']}")
        # Durability: kill -9 first, then every message answered 2xx must be stored.
        tg.server.stop(kill=True)
        tg.out["durability"] = check_durability(tg)
        log(f"  {tg.name} after SIGKILL: "
            + ("every acknowledged message is stored" if tg.out["durability"]["ok"]
               else "ACKNOWLEDGED MESSAGES MISSING"))
    for tg in targets:
        if not tg.is_tierdesk:
            tg.out["rss_mib_end"] = rss_mib(tg.server.pid)
            tg.server.stop()
        results["targets"][tg.name] = tg.out


# ------------------------------------------------------------------- verdicts
def failed_requests(target: dict[str, Any]) -> int:
    bad = 0
    for r in all_runs(target):
        bad += int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
        bad += int(r.get("unfinished", 0) or 0)
    return bad


def all_runs(target: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for path in ("faq", "handoff") for k in ("saturated", "half")
            if isinstance(r := target.get(path, {}).get(k), dict)]


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    t = results["targets"]
    checks: list[dict[str, Any]] = []
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")

    def add(name: str, value: Any, op: str, threshold: Any, unit: str = "") -> None:
        if value is None:
            passed = False
        elif op == ">=":
            passed = value >= threshold
        elif op == "<=":
            passed = value <= threshold
        else:
            passed = value == threshold
        checks.append({"check": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                       "pass": bool(passed)})

    def ratio(target: str, path: str) -> float | None:
        v = t.get(target, {}).get(path, {}).get("saturated", {}).get("req_s")
        return round(v / bare, 4) if v and bare else None

    if "sqlite" in t:
        s = t["sqlite"]
        add("SQLite FAQ: req/s vs bare (64 conns)", ratio("sqlite", "faq"), ">=", TARGETS["sqlite_faq_ratio"],
            "ratio")
        add("SQLite FAQ: p99 saturated (64 conns)", s["faq"]["saturated"]["p99_ms"], "<=",
            TARGETS["sqlite_faq_p99_ms"], "ms")
        add("SQLite FAQ: p99 at half the saturated rate", s["faq"]["half"]["p99_ms"], "<=",
            TARGETS["sqlite_faq_half_p99_ms"], "ms")
    for name, label in PG_TARGETS:
        if name in t:
            add(f"{label} FAQ: req/s vs bare (64 conns)", ratio(name, "faq"), ">=",
                TARGETS["postgresql_faq_ratio"], "ratio")
    for name, label in DB_TARGETS:
        if name in t:
            add(f"{label} handoff: req/s vs bare (64 conns)", ratio(name, "handoff"), ">=",
                TARGETS["handoff_ratio"], "ratio")
            add(f"{label} handoff: no agent over capacity (1 Hz during, and after)", t[name]["capacity"]["ok"],
                "==", True)
    bad = sum(failed_requests(target) for target in t.values())
    add("non-2xx + socket errors + unfinished, all runs", bad, "==", 0)
    for name, label in DB_TARGETS:
        if name in t:
            add(f"{label}: every 2xx stored (checked after SIGKILL)", t[name]["durability"]["ok"], "==", True)
    return checks


def cpu_budget(results: dict[str, Any]) -> list[dict[str, Any]]:
    """What each throughput-ratio target would take in CPU: the required
    rate times the CPU per request measured at saturation (server, its
    database backends, and the load generator, which shares the machine).
    An extrapolation, at the batch sizes reached here; if it needs more cores
    than the machine has, no scheduling of the same work reaches the target."""
    t = results["targets"]
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")
    out: list[dict[str, Any]] = []
    if not bare:
        return out
    wanted = [("sqlite", "SQLite", "faq", TARGETS["sqlite_faq_ratio"])]
    wanted += [(name, label, "faq", TARGETS["postgresql_faq_ratio"]) for name, label in PG_TARGETS]
    wanted += [(name, label, "handoff", TARGETS["handoff_ratio"]) for name, label in DB_TARGETS]
    for name, label, path, ratio in wanted:
        r = t.get(name, {}).get(path, {}).get("saturated")
        if not r or not r.get("server_cpu_ms_per_req"):
            continue
        server, db = r["server_cpu_ms_per_req"], r.get("database_cpu_ms_per_req") or 0.0
        gen = r.get("load_generator_cpu_ms_per_req") or 0.0
        # With workers the root process is their supervisor: each worker has a loop of its own.
        loop = r.get("server_root_main_thread_cpu_ms_per_req") if t[name].get("workers", 1) == 1 else None
        rate = ratio * bare
        out.append({"target": f"{label} {path}", "ratio": ratio, "rate": round(rate), "server_ms": server,
                    "database_ms": db, "load_generator_ms": gen,
                    "cores_needed": round(rate * (server + db + gen) / 1000, 2),
                    "cores": results["machine"]["nproc"],
                    # One thread runs all of it, so it can give at most one core.
                    "loop_ms": loop, "loop_cores_needed": round(rate * loop / 1000, 2) if loop is not None else None})
    return out


# ----------------------------------------------------------------- reporting
def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def show(v: Any, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "ratio":
        return f"{v:.1%}" if v < 0.1 else f"{v:.0%}"
    if unit == "ms":
        return f"{v:.1f} ms"
    return fmt(v)


def markdown(results: dict[str, Any]) -> str:
    t = results["targets"]
    m = results["machine"]
    pg = m.get("postgresql") or {}
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")
    lines = [
        BEGIN,
        f"### Last run: {results['started_at']}",
        "",
        f"- command: `{results['command']}`: {fmt(results['duration_s'], 0)} s per measurement, "
        f"{results['rounds']} interleaved round(s) per saturated point, wrk {results['wrk_threads']} threads × "
        f"{results['connections']} connections, open-loop generator with the same {results['connections']}",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {fmt(m['mem_total_mib'])} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']} (tierdesk synchronous={results['sqlite_synchronous']}), "
        + (f"PostgreSQL {pg.get('server_version')} (synchronous_commit={pg.get('synchronous_commit')}, "
           f"fsync={pg.get('fsync')})" if pg else "no PostgreSQL"),
        f"- load average at start {results['loadavg_start']}, at end {results['loadavg_end']}; CPU taken by "
        f"other processes during the measurements: mean {fmt(results['other_processes_cores_mean'], 2)}, "
        f"max {fmt(results['other_processes_cores_max'], 2)} of {m['nproc']} cores"
        + (" — **the machine was shared; every figure is lower than on a quiet machine**"
           if (results["other_processes_cores_max"] or 0) >= 0.25 else ""),
        f"- code: commit {results['code']['commit']}"
        + (f" plus uncommitted changes to {len(results['code']['modified_files'])} file(s) outside bench/ and "
           f"docs/ ({', '.join(results['code']['modified_files'][:6])}"
           f"{', …' if len(results['code']['modified_files']) > 6 else ''})"
           if results["code"]["modified_files"] else ""),
        f"- wall time {fmt(results['wall_s'], 0)} s; everything in `{results['output']}`",
        "",
        "| target | path | load | req/s | vs bare | p50 ms | p99 ms | errors | commit batch | server CPU ms/req |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, path: str, r: dict[str, Any] | None, half: bool) -> None:
        if not r:
            return
        errs = int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
        if half:
            load = f"open loop {fmt(r['target_rate'], 0)}/s" + ("" if r.get("sustained") else " (not sustained)")
            ratio = "–"
        else:
            load = f"saturated, {results['connections']} conns"
            ratio = show(r["req_s"] / bare, "ratio") if bare else "–"
        lines.append(
            f"| {label} | {path} | {load} | {fmt(r['req_s'], 0)} | {ratio} | {fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {errs} | {fmt(r.get('group_commit_mean_batch'))} | "
            f"{fmt(r.get('server_cpu_ms_per_req'), 3)}"
            + (f" + {fmt(r['database_cpu_ms_per_req'], 3)} (PostgreSQL)" if r.get("database_cpu_ms_per_req") else "")
            + " |")

    for name in ALL_TARGETS:
        if name not in t:
            continue
        label = t[name].get("label", name)
        for path, plabel in (("faq", "echo" if name == "bare" else "FAQ answer"), ("handoff", "handoff")):
            row(label, plabel, t[name].get(path, {}).get("saturated"), False)
            row(label, plabel, t[name].get(path, {}).get("half"), True)
    lines += ["", "| target | measured | required | result |", "|---|---:|---:|---|"]
    for c in results["checks"]:
        lines.append(f"| {c['check']} | {show(c['value'], c['unit'])} | {c['op']} {show(c['threshold'], c['unit'])} "
                     f"| {'PASS' if c['pass'] else '**FAIL**'} |")
    if results.get("cpu_budget"):
        lines += ["", "What the ratio targets would take at the CPU per request measured above (saturated; "
                      "server + PostgreSQL + load generator, which all share the machine):", "",
                  "| target | rate required | CPU ms per request | cores needed | cores here "
                  "| of which the event loop's thread: ms per request | its cores needed (one at most) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for b in results["cpu_budget"]:
            parts = f"{b['server_ms']:.3f}" + (f" + {b['database_ms']:.3f}" if b["database_ms"] else "") \
                + f" + {b['load_generator_ms']:.3f}"
            lines.append(f"| {b['target']} | {b['ratio']:.0%} of bare = {b['rate']:,}/s | {parts} | "
                         f"{b['cores_needed']:.2f} | {b['cores']} | {fmt(b['loop_ms'], 3)} | "
                         f"{fmt(b['loop_cores_needed'], 2)} |")
    extra = [""]
    for name in ALL_TARGETS[1:]:
        if name in t:
            x = t[name]
            cap = x["capacity"]["after"]
            extra.append(
                f"- {name}: RSS {fmt(x.get('rss_mib_after_faq'))} MiB after the saturated FAQ runs, "
                f"{fmt(x.get('rss_mib_end'))} MiB at the end; after the handoff runs {cap['open_assigned']} "
                f"handoffs assigned of {cap['slots']} slots and {cap['open_queued']} queued, "
                f"{x['capacity']['during']['samples']} capacity samples during the runs; "
                f"server warnings/errors logged: {x.get('log_problems') or 'none'}")
    if "postgresql-workers" in t:
        refused = (t["postgresql-workers"].get("log_problems") or {}).get("warning: change_refused", 0)
        extra.append(
            f"- postgresql-workers: {refused} changes refused by the database over all its runs, because the "
            "other worker had changed the same agent or conversation first (mostly two workers giving away an "
            "agent's last slot at once while the slots fill); each was decided again on what the database "
            f"held, and {failed_requests(t['postgresql-workers'])} requests were answered 503 (refused three "
            "times in a row; docs/deployment.md)")
    if "bare" in t:
        extra.append(f"- bare: RSS {fmt(t['bare'].get('rss_mib_after_faq'))} MiB")
        bh = t["bare"].get("faq", {}).get("half")
        if bh:
            extra.append(
                f"- the open-loop apparatus in this run: the bare handler at half its rate "
                f"({fmt(bh['target_rate'], 0)}/s) measured p50 {fmt(bh['p50_ms'], 2)} ms, p99 "
                f"{fmt(bh['p99_ms'], 2)} ms, with the generator's own scheduling lag at p99 "
                f"{fmt(bh.get('sched_lag_p99_ms'), 1)} ms (what the machine and generator add, at a far higher "
                f"rate than tierdesk's half-rate runs)")
    bare_cpu = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("server_cpu_ms_per_req")
    if bare_cpu:
        parts = []
        for name, label in DB_TARGETS:
            for path in ("faq", "handoff"):
                c = t.get(name, {}).get(path, {}).get("saturated", {}).get("server_cpu_ms_per_req")
                if c:
                    parts.append(f"{label} {path} {c / bare_cpu:.0f}× ({fmt(c, 2)} ms)")
        if parts:
            extra.append(
                f"- server CPU per request at saturation, relative to bare ({fmt(bare_cpu, 3)} ms): "
                + ", ".join(parts) + " (a figure neighbours disturb less than req/s)")
    lines += extra
    for key, what in (("profile_faq", "saturated FAQ"), ("profile_faq_half", "FAQ at half rate, open loop"),
                      ("profile_handoff", "saturated handoff")):
        profiled = next((name for name, _ in DB_TARGETS if t.get(name, {}).get(key)), None)
        if profiled is None:
            continue
        prof = t[profiled][key]
        threads = ", ".join(f"{x['thread'].split(': ', 1)[-1]} {x['samples'] / max(1, prof['samples']):.0%}"
                            for x in prof["threads"][:3])
        lines += ["", f"Profile, tierdesk/{dict(DB_TARGETS)[profiled]}, {what} (py-spy --gil, {prof['samples']} samples; "
                      f"GIL held by: {threads}; `{prof['raw_file']}`):", "",
                  "| who holds the GIL (innermost matching frame) | share |", "|---|---:|"]
        lines += [f"| {c['category']} | {c['share']:.0%} |" for c in prof.get("categories", [])]
        lines += ["", "| frame (inclusive; request plumbing left out) | share of GIL samples |", "|---|---:|"]
        # Frames every request passes through (the loop, aiohttp's dispatch,
        # the middleware chain) are left out here; the JSON has them all.
        skip = ("<module>", "main (tierdesk/cli.py)", "_serve (", "run_app (", "Thread.", "_WorkItem.run",
                "_worker (concurrent", "RequestHandler._handle_request", "Application._handle",
                "_fix_request_current_app", "context_middleware", "error_middleware", "ip_rate_limit",
                "post_message (")
        shown = 0
        for f in prof["top_inclusive"]:
            if f["frame"].startswith(skip):
                continue
            lines.append(f"| `{f['frame']}` | {f['share']:.0%} |")
            shown += 1
            if shown >= 10:
                break
    lines.append(END)
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds per saturated point (default 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="3 s per measurement, one round, 1 s warm-up")
    p.add_argument("--warmup", type=float, default=None, help="seconds of unmeasured load first (default 2)")
    p.add_argument("--pg-workers", type=int, default=2,
                   help="TIERDESK_WORKERS of the postgresql-workers target (default 2)")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help="comma-separated subset of bare,sqlite,postgresql,postgresql-workers (ratios need bare)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--capacity", type=int, default=5)
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--models-dir", help="use the model in this directory (trained into it if it has none)")
    p.add_argument("--sqlite-synchronous", choices=["NORMAL", "FULL"],
                   help="TIERDESK_SQLITE_SYNCHRONOUS for the SQLite target (default: tierdesk's, NORMAL)")
    p.add_argument("--profile", action="store_true",
                   help="also record py-spy profiles of tierdesk/SQLite during extra saturated runs")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--profile-target", choices=("sqlite", "postgresql"), default="sqlite",
                   help="which tierdesk target --profile samples")
    p.add_argument("--output", default=str(RESULTS / "latest.json"))
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 2.0
    names = [x.strip() for x in args.targets.split(",") if x.strip()]
    unknown = set(names) - set(ALL_TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")
    names = [n for n in ALL_TARGETS if n in names]
    global DB_TARGETS, PG_TARGETS
    DB_TARGETS = [(n, target_label(n, args).removeprefix("tierdesk ")) for n in ALL_TARGETS[1:]]
    PG_TARGETS = DB_TARGETS[1:]
    try:
        args.wrk = check_wrk()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # SIGTERM (and SIGHUP) end the run like Ctrl-C: the `finally` stops the servers.
    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    RESULTS.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    command = " ".join(shlex.quote(a) for a in [exe, os.path.relpath(os.path.abspath(__file__), ROOT),
                                                *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "schema": 2,
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "run_tag": "b" + secrets.token_hex(3),
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "wrk_threads": args.threads,
        "agents": args.agents,
        "capacity_per_agent": args.capacity,
        "sqlite_synchronous": args.sqlite_synchronous or "NORMAL",
        "targets_required": TARGETS,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "nproc": nproc(),
            "cpu_model": cpu_model(),
            "mem_total_mib": mem_total_mib(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "wrk": tool_version([args.wrk, "--version"]),
            "aiohttp": package_version("aiohttp"),
            "uvloop": package_version("uvloop"),
        },
        "code": code_version(),
        "targets": {},
    }
    t_start = time.perf_counter()
    servers: list[Server] = []
    pg_dbs: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-bench-"))
    code = 0
    try:
        pg_db_urls: dict[str, str] = {}
        for name in names:
            if not name.startswith("postgresql"):
                continue
            try:
                results["machine"]["postgresql"] = pg_settings(args.pg_admin_url)
            except Exception as exc:  # noqa: BLE001
                raise BenchError(f"PostgreSQL at {args.pg_admin_url} is not reachable ({exc}); "
                                 "start it or pass --targets bare,sqlite") from None
            pg_dbs.append(f"tierdesk_bench_{secrets.token_hex(4)}")
            pg_create(args.pg_admin_url, pg_dbs[-1])
            pg_db_urls[name] = pg_url(args.pg_admin_url, pg_dbs[-1])
        run_all(args, names, tmp, results, servers, pg_db_urls)
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        code = 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop_servers(servers)
        for pg_db in pg_dbs:
            try:
                pg_drop(args.pg_admin_url, pg_db)
            except Exception as exc:  # noqa: BLE001
                print(f"warning: could not drop database {pg_db}: {exc!r}", file=sys.stderr)
        discard_or_keep(tmp, code)
    if code != 0:
        return code

    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    results["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    others: list[float] = []
    for tg in results["targets"].values():
        for r in all_runs(tg):
            others += [x["other_processes_cores"] for x in r.get("per_round", [])] or \
                [r["cpu"]["other_processes_cores"]]
    results["other_processes_cores_max"] = max(others) if others else None
    results["other_processes_cores_mean"] = round(statistics.mean(others), 2) if others else None
    results["checks"] = evaluate(results)
    results["cpu_budget"] = cpu_budget(results)
    out_path = Path(args.output).resolve()
    results["output"] = str(out_path.relative_to(ROOT)) if out_path.is_relative_to(ROOT) else str(out_path)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    block = markdown(results)
    if not args.no_doc:
        write_doc(block)
    print()
    print(block)
    print()
    failed = [c for c in results["checks"] if not c["pass"]]
    log(f"results in {os.path.relpath(args.output, ROOT)}"
        + ("" if args.no_doc else f" and {os.path.relpath(DOC, ROOT)}")
        + f"; {len(results['checks']) - len(failed)} checks passed, {len(failed)} failed")
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())

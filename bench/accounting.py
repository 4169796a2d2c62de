"""What a measurement cost: CPU of the server (per thread), the load
generator, the database and everyone else; memory; the server's own
counters from /metrics; the figures per request and over rounds."""

from __future__ import annotations

import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from common import CLK_TCK, WORKER_METRICS_LAG_SECONDS
from servers import http


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

    def __init__(self, server_pid: int | list[int] | None, db_pids: list[int] | None = None) -> None:
        # Several: instances of one target, each a server of its own.
        self.pids = [] if server_pid is None else [server_pid] if isinstance(server_pid, int) else list(server_pid)
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

    def _server(self) -> tuple[float, float, float, dict[str, float]]:
        # Summed over the server's workers, if it has any: "main thread" is
        # then each worker's event loop thread. Also each process's CPU by
        # its role: "root" (a server, or the supervisor of workers), "child"
        # (its SQLite writer, or its workers).
        main = total = loop = 0.0
        roles: dict[str, float] = {}
        for root in self.pids:
            for pid in process_tree(root):
                try:
                    proc = _proc_cpu_s(f"/proc/{pid}/stat")
                    thread = _proc_cpu_s(f"/proc/{pid}/task/{pid}/stat")
                except (OSError, ValueError):
                    continue
                total += proc
                main += thread
                role = "root" if pid == root else "child"
                roles[role] = roles.get(role, 0.0) + proc
                if pid == self.pids[0]:
                    # One server process: its event loop's thread (with workers, the supervisor's).
                    loop = thread
        return main, total, loop, roles

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
        roles = {k: round(v - self.s0[3].get(k, 0.0), 3) for k, v in s1[3].items()}
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
            "server_processes_s": roles,
        }


# Series that are a maximum, not a count: over workers and instances, the largest.
LOOP_STEP = "tierdesk_loop_longest_step_cpu_seconds"
MAX_SERIES = {LOOP_STEP}


def merge_scrapes(scrapes: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for one in scrapes:
        for key, v in one.items():
            out[key] = max(out.get(key, v), v) if key in MAX_SERIES else out.get(key, 0.0) + v
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text as {'name{labels}': value}, the worker label dropped
    (summed over workers, or the largest for MAX_SERIES)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        key = re.sub(r'worker="\d+",?', "", key).replace("{}", "")
        try:
            v = float(value)
        except ValueError:
            continue
        out[key] = max(out.get(key, v), v) if key in MAX_SERIES else out.get(key, 0.0) + v
    return out


def scrape(base: str | list[str], workers: int = 1) -> dict[str, float]:
    """/metrics of a server, or merged over instances. With workers, each
    shows the others' series as they were up to a second ago
    (tierdesk/web/worker_metrics.py), so this waits that long first."""
    if workers > 1:
        time.sleep(WORKER_METRICS_LAG_SECONDS)
    bases = [base] if isinstance(base, str) else base
    return merge_scrapes([parse_metrics(http("GET", b + "/metrics")) for b in bases])


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
    longest = after.get(LOOP_STEP)
    return {
        # Since the server was ready: the longest step up to the end of this measurement.
        "loop_longest_step_ms": round(longest * 1000, 2) if longest is not None else None,
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


def rss_per_process(roots: list[int]) -> list[dict[str, Any]]:
    """Resident memory of each process: the servers ("root": a server, or
    the supervisor of workers) and their children (a SQLite writer, workers)."""
    out = []
    for root in roots:
        for p in process_tree(root):
            try:
                kib = next(int(line.split()[1]) for line in Path(f"/proc/{p}/status").read_text().splitlines()
                           if line.startswith("VmRSS:"))
            except (OSError, StopIteration):
                continue
            out.append({"pid": p, "role": "root" if p == root else "child", "mib": round(kib / 1024, 1)})
    return out


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
        r["process_cpu_ms_per_req"] = {k: round(v * 1000 / n, 3) for k, v in cpu.get("server_processes_s", {}).items()}


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
    roles: Counter[str] = Counter()
    for r in rounds:
        actions.update(r.get("actions", {}))
        roles.update(r["cpu"].get("server_processes_s", {}))
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
        "process_cpu_ms_per_req": {k: round(v * 1000 / requests, 3) for k, v in roles.items()} if requests else {},
        "loop_longest_step_ms": worst("loop_longest_step_ms"),
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

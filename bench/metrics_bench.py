"""Metrics endpoint benchmark: a week of metrics over 1,000,000 stored messages.

    .venv/bin/python bench/metrics_bench.py                        # SQLite and PostgreSQL (cached data)
    .venv/bin/python bench/metrics_bench.py --backends sqlite      # SQLite only
    .venv/bin/python bench/metrics_bench.py --reseed               # seed the data again first

Exit status: 0 every target met, 3 some target missed (results written
anyway), 1 error, 130 interrupted. On 127.0.0.1 only, every step bounded
in time.

What it does, per database:

1. Gets a database holding ``--messages`` (1,000,000) synthetic messages
   over ``--days`` (7) days, made by ``tierdesk metrics seed`` (messages,
   events and the hourly rollups/histograms maintained on write). Seeding a
   million took 105 s on SQLite and 176 s on PostgreSQL (2026-11-30) on the
   benchmark machine, so the data is cached and reused:
   * SQLite: ``bench/results/metrics-1m.db`` (bench/results is git-ignored);
   * PostgreSQL: database ``tierdesk_bench_metrics_1m`` on ``--pg-admin-url``
     (kept between runs).
   It is seeded again only when its message count is not ``--messages``, or
   with ``--reseed``; a seed goes to a temporary name first and is renamed
   when complete, so an interrupted seed never passes for a cache.
2. Trains the demo FAQ model (or uses ``--models-dir``) and starts
   ``tierdesk serve`` on the database (the model is loaded: /readyz says so).
3. Times ``GET /v1/metrics?from=…&to=…&group_by=tier&bucket=hour`` (admin
   token) ``--queries`` (20) times on one keep-alive connection: the first
   (cold: the first after the server started) and the rest (warm), wall time
   as the client sees it, from sending the request to the last byte of the
   body. The range is the 7 days that end when the seed ran (the seeder
   writes the week before its own clock), hour-aligned: ``from`` = the hour
   of (seed time - 7 days), ``to`` = the hour after the seed time. Freshly
   seeded data makes that "7 days ago" to "the next hour"; a cached seed
   keeps the range on its data instead of sliding off it as days pass.
   Checked: ``source == "rollups"``, 168-169 hour groups, and that the
   groups add up to every stored message.
4. Times the replay path (``exact=true``) on one hour in the middle of the
   range, and compares its percentiles with the rollups' answer for that
   same hour (the rollup histograms promise 1%). The replay of the whole
   week is not run: it reads every event of the range into memory (2.7
   million events for 1 M messages) and would take minutes; its cost per
   hour of data is what is shown.
5. Server RSS (VmRSS) after the queries.

Writes bench/results/metrics.json and the section between
``<!-- metrics-bench:begin -->`` and ``<!-- metrics-bench:end -->`` in
docs/benchmarks.md (together with the last bench/ws_bench.py results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client as httpclient
import json
import math
import os
import platform
import secrets
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accounting import CpuMeter, rss_mib  # noqa: E402 - the throughput harness's helpers
from common import HOST, BenchError  # noqa: E402
from database import pg_drop, pg_settings, pg_url  # noqa: E402
from machine import code_version, cpu_model, mem_total_mib, nproc  # noqa: E402
from servers import Server, free_port, http as http_json  # noqa: E402
from targets import discard_or_keep, server_env, stop_servers, tierdesk_argv, train_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- metrics-bench:begin -->", "<!-- metrics-bench:end -->"
SECTION = "## Metrics endpoint and WebSockets"
METRICS_JSON = RESULTS / "metrics.json"
WS_JSON = RESULTS / "ws.json"
HOUR = 3600
DAY = 86400

# Targets of the performance issue.
TARGETS = {
    "metrics_week_warm_median_s": 0.3,
    "server_rss_mib": 300.0,
    "percentile_rel_error": 0.01,
}


def log(msg: str) -> None:
    print(f"[metrics-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- machine facts
def machine() -> dict[str, Any]:
    return {
        "nproc": nproc(),
        "cpu_model": cpu_model(),
        "mem_total_mib": mem_total_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def exe_command(argv: list[str] | None) -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0] if argv is None else __file__), ROOT)
    return " ".join(shlex.quote(a) for a in [exe, script, *(sys.argv[1:] if argv is None else argv)])


def install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) end the run like Ctrl-C: the `finally` stops the servers."""
    def _interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)


def tierdesk_cli() -> list[str]:
    script = Path(sys.executable).parent / "tierdesk"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tierdesk.cli"]


def percentile(values: list[float], q: float) -> float:
    """Nearest rank."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


# ------------------------------------------------------------------ the data
class Data:
    """One benchmark database: where it is, what it holds, how to seed it."""

    def __init__(self, backend: str, args: argparse.Namespace) -> None:
        self.backend = backend
        self.args = args
        if backend == "sqlite":
            self.path = Path(args.sqlite_path).resolve()
            self.name = str(self.path.relative_to(ROOT)) if self.path.is_relative_to(ROOT) else str(self.path)
            self.url = f"sqlite:///{self.path}"
        else:
            self.name = args.pg_database
            self.url = pg_url(args.pg_admin_url, self.name)

    # -- facts
    def exists(self) -> bool:
        if self.backend == "sqlite":
            return self.path.exists()
        import psycopg

        with psycopg.connect(self.args.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None

    def _query(self, sql: str, url: str | None = None) -> list[tuple[Any, ...]]:
        url = url or self.url
        if url.startswith("sqlite"):
            conn = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30)
            try:
                return list(conn.execute(sql).fetchall())
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql).fetchall())

    def facts(self) -> dict[str, Any]:
        """Message count and time span, rollup rows: what the cache holds."""
        try:
            n, lo, hi = self._query("SELECT COUNT(*), MIN(at), MAX(at) FROM messages")[0]
            rollup_rows = self._query("SELECT COUNT(*) FROM metric_rollups")[0][0]
            hist_rows = self._query("SELECT COUNT(*) FROM metric_histograms")[0][0]
            events = self._query("SELECT COUNT(*) FROM events")[0][0]
        except Exception as exc:  # noqa: BLE001 - no tables yet, a half-made file: reseed
            return {"messages": None, "error": repr(exc)[:200]}
        out: dict[str, Any] = {"messages": int(n), "events": int(events), "rollup_rows": int(rollup_rows),
                               "histogram_rows": int(hist_rows),
                               "first_message_at": float(lo) if lo is not None else None,
                               "last_message_at": float(hi) if hi is not None else None}
        if self.backend == "sqlite":
            out["file_mib"] = round(self.path.stat().st_size / 2**20, 1)
            out["cached_since"] = dt.datetime.fromtimestamp(self.path.stat().st_mtime, dt.timezone.utc) \
                .strftime("%Y-%m-%d %H:%M UTC")
        else:
            out["database_mib"] = round(self._query(f"SELECT pg_database_size('{self.name}')")[0][0] / 2**20, 1)
        return out

    def backend_pids(self) -> list[int]:
        """PostgreSQL backends connected to this database (the server's pool)."""
        if self.backend == "sqlite":
            return []
        rows = self._query(f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.name}' "
                           "AND pid <> pg_backend_pid()")
        return [int(r[0]) for r in rows]

    def analyze(self) -> float | None:
        """PostgreSQL: ANALYZE, so the planner has the statistics autovacuum
        would have gathered by now on a live database (a bulk-seeded or
        template-cloned one has none). Seconds taken; None on SQLite."""
        if self.backend == "sqlite":
            return None
        import psycopg

        t0 = time.perf_counter()
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("ANALYZE")
        return round(time.perf_counter() - t0, 1)

    # -- seeding
    def ensure(self) -> dict[str, Any]:
        want = self.args.messages
        if not self.args.reseed and self.exists():
            f = self.facts()
            if f.get("messages") == want:
                log(f"{self.backend}: using the cached seed {self.name} ({want:,} messages)")
                return {"seeded_now": False, **f}
            log(f"{self.backend}: {self.name} holds {f.get('messages')} messages, not {want:,}: seeding again")
        return self.seed()

    def seed(self) -> dict[str, Any]:
        want, days = self.args.messages, self.args.days
        cmd = [*tierdesk_cli(), "metrics", "seed", "--messages", str(want), "--days", str(days)]
        if self.backend == "sqlite":
            partial = self.path.with_name(self.path.name + ".partial")
            for p in (partial, Path(str(partial) + "-wal"), Path(str(partial) + "-shm")):
                p.unlink(missing_ok=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            target_url = f"sqlite:///{partial}"
        else:
            partial_name = self.name + "_partial"
            pg_drop(self.args.pg_admin_url, partial_name)
            import psycopg

            with psycopg.connect(self.args.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'CREATE DATABASE "{partial_name}"')
            target_url = pg_url(self.args.pg_admin_url, partial_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERDESK_") and k != "DATABASE_URL"}
        env["TIERDESK_DATABASE_URL"] = target_url
        log(f"{self.backend}: seeding {want:,} messages over {days:g} days into {target_url.split('/')[-1]} "
            f"(`{' '.join(cmd[-6:])}`; 2-3 min for a million) ...")
        t0 = time.perf_counter()
        seed_log = RESULTS / f"metrics-seed-{self.backend}.log"
        with open(seed_log, "wb") as fh:
            proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                  timeout=self.args.seed_timeout)
        seconds = round(time.perf_counter() - t0, 1)
        if proc.returncode != 0:
            raise BenchError(f"seeding failed ({proc.returncode}); see {seed_log}")
        if self.backend == "sqlite":
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            os.replace(partial, self.path)
        else:
            pg_drop(self.args.pg_admin_url, self.name)
            import psycopg

            with psycopg.connect(self.args.pg_admin_url, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'ALTER DATABASE "{partial_name}" RENAME TO "{self.name}"')
        f = self.facts()
        if f.get("messages") != want:
            raise BenchError(f"{self.backend}: seeded, but the database holds {f.get('messages')} messages")
        log(f"{self.backend}: seeded {want:,} messages in {seconds:.0f} s")
        return {"seeded_now": True, "seed_seconds": seconds, "seed_command": " ".join(shlex.quote(c) for c in cmd)
                + f"  # TIERDESK_DATABASE_URL={target_url}", **f}


# ------------------------------------------------------------------- queries
class Client:
    """One keep-alive HTTP connection; wall time from sending the request to
    the last byte of the body."""

    def __init__(self, port: int, token: str, timeout: float) -> None:
        self.port, self.token, self.timeout = port, token, timeout
        self.conn = httpclient.HTTPConnection(HOST, port, timeout=timeout)

    def get(self, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
        resp = self.conn.getresponse()
        body = resp.read()
        return time.perf_counter() - t0, resp.status, body

    def close(self) -> None:
        self.conn.close()


def metrics_path(start: int, end: int, *, exact: bool = False, bucket: str | None = "hour") -> str:
    return (f"/v1/metrics?from={start}&to={end}&group_by=tier" + (f"&bucket={bucket}" if bucket else "")
            + ("&exact=true" if exact else ""))


STATS = {
    "bot": ("response_time", "resolution_time"),
    "human": ("response_time", "first_response_time", "reply_interval", "queue_wait", "resolution_time"),
}


def percentile_errors(exact: dict[str, Any], fast: dict[str, Any]) -> dict[str, Any]:
    """Relative differences of p50/p90 between the replay and the rollups,
    per figure, for groups present in both (same hour)."""
    by_bucket = {g["bucket"]: g for g in fast["groups"]}
    diffs: list[dict[str, Any]] = []
    count_mismatch = 0
    for g in exact["groups"]:
        f = by_bucket.get(g["bucket"])
        if f is None:
            continue
        for tier, names in STATS.items():
            for name in names:
                a, b = g[tier][name], f[tier][name]
                if a["count"] != b["count"]:
                    count_mismatch += 1
                for q in ("p50", "p90"):
                    if a[q] is None or b[q] is None:
                        continue
                    rel = abs(b[q] - a[q]) / abs(a[q]) if a[q] else (0.0 if b[q] == a[q] else 1.0)
                    diffs.append({"figure": f"{tier}.{name}.{q}", "exact": a[q], "rollups": b[q],
                                  "rel_error": round(rel, 5)})
    worst = max(diffs, key=lambda d: d["rel_error"]) if diffs else None
    return {"compared": len(diffs), "max_rel_error": worst["rel_error"] if worst else None, "worst": worst,
            "count_mismatches": count_mismatch, "all": diffs}


def measure(backend: str, data: Data, facts: dict[str, Any], models: Path, tmp: Path, args: argparse.Namespace,
            servers: list[Server]) -> dict[str, Any]:
    out: dict[str, Any] = {"database": data.name, "data": facts}
    port = free_port()
    admin = "td_admin_bench_" + secrets.token_hex(16)
    server = Server(f"tierdesk-{backend}", [*tierdesk_argv()], server_env(data.url, admin, models, port), port,
                    tmp / f"{backend}.log")
    servers.append(server)
    t0 = time.perf_counter()
    server.start("/readyz", timeout=args.start_timeout)
    out["ready_s"] = round(time.perf_counter() - t0, 1)
    ready = http_json("GET", server.base + "/readyz")
    out["readyz"] = ready.get("checks")
    out["rss_mib_at_ready"] = rss_mib(server.pid)
    log(f"{backend}: tierdesk serve ready in {out['ready_s']} s (pid {server.pid}, {ready.get('checks')}), "
        f"RSS {out['rss_mib_at_ready']} MiB")

    # The range: the week that ends at the seed time (see the module doc).
    seed_time = facts["last_message_at"] + HOUR  # the seeder starts conversations until (its clock - 1 h)
    start = int(math.floor((seed_time - args.days * DAY) / HOUR) * HOUR)
    end = int(math.floor(seed_time / HOUR) * HOUR + HOUR)
    out["range"] = {"from": start, "to": end, "hours": (end - start) // HOUR,
                    "from_iso": dt.datetime.fromtimestamp(start, dt.timezone.utc).isoformat(),
                    "to_iso": dt.datetime.fromtimestamp(end, dt.timezone.utc).isoformat(),
                    "anchored_at_seed_time": dt.datetime.fromtimestamp(seed_time, dt.timezone.utc).isoformat()}
    path = metrics_path(start, end)
    out["query"] = "GET " + path + "  (Authorization: Bearer <admin token>)"

    client = Client(port, admin, args.query_timeout)
    times: list[float] = []
    checks: list[dict[str, Any]] = []

    def query() -> bytes:
        secs, status, body = client.get(path)
        if status != 200:
            raise BenchError(f"{backend}: GET {path}: HTTP {status}: {body[:300]!r}")
        times.append(secs)
        r = json.loads(body)
        groups = r["groups"]
        checks.append({"source": r.get("source"), "groups": len(groups),
                       "messages": sum(g["bot"]["messages"] + g["human"]["messages"] for g in groups),
                       "p50_p90_present": all(g["bot"]["response_time"]["p50"] is not None
                                              and g["bot"]["response_time"]["p90"] is not None
                                              for g in groups if g["bot"]["messages"])})
        return body

    body = query()
    log(f"{backend}: cold query {times[0]:.3f} s, source {checks[0]['source']}, {checks[0]['groups']} hour groups, "
        f"{checks[0]['messages']:,} messages, {len(body) / 1024:.0f} KiB")
    # The database's own CPU (PostgreSQL backends serving the server's pool,
    # connected by now) is counted with the server's.
    db_pids = data.backend_pids()
    with CpuMeter(server.pid, db_pids) as cpu:
        for _ in range(args.queries - 1):
            body = query()
    warm = times[1:]
    out["week"] = {
        "queries": len(times),
        "cold_s": round(times[0], 4),
        "warm_median_s": round(statistics.median(warm), 4) if warm else None,
        "warm_p90_s": round(percentile(warm, 0.9), 4) if warm else None,
        "warm_max_s": round(max(warm), 4) if warm else None,
        "warm_min_s": round(min(warm), 4) if warm else None,
        "all_s": [round(x, 4) for x in times],
        "response_kib": round(len(body) / 1024, 1),
        "source": sorted({c["source"] for c in checks}),
        "hour_groups": sorted({c["groups"] for c in checks}),
        "messages_in_report": sorted({c["messages"] for c in checks}),
        "p50_p90_present": all(c["p50_p90_present"] for c in checks),
        "server_cpu_s_per_query": round(cpu.result["server_total_s"] / len(warm), 4),
        "database_cpu_s_per_query": round(cpu.result["database_backends_s"] / len(warm), 4) if db_pids else None,
        "cpu": cpu.result,
    }
    log(f"{backend}: warm median {out['week']['warm_median_s']:.3f} s, p90 {out['week']['warm_p90_s']:.3f} s, "
        f"max {out['week']['warm_max_s']:.3f} s; server CPU {out['week']['server_cpu_s_per_query']:.3f} s/query"
        + (f" + PostgreSQL {out['week']['database_cpu_s_per_query']:.3f} s" if db_pids else "") + "; "
        f"other processes {cpu.result['other_processes_cores']} cores")

    # The replay path on one hour in the middle of the range.
    h0 = start + ((end - start) // HOUR // 2) * HOUR
    exact_path, fast_path = metrics_path(h0, h0 + HOUR, exact=True), metrics_path(h0, h0 + HOUR)
    ex_times: list[float] = []
    exact_body = fast_body = b""
    with CpuMeter(server.pid, data.backend_pids()) as cpu:
        for _ in range(args.exact_queries):
            secs, status, exact_body = client.get(exact_path)
            if status != 200:
                raise BenchError(f"{backend}: GET {exact_path}: HTTP {status}: {exact_body[:300]!r}")
            ex_times.append(secs)
    fast_times: list[float] = []
    for _ in range(args.exact_queries):
        secs, status, fast_body = client.get(fast_path)
        fast_times.append(secs)
    exact_r, fast_r = json.loads(exact_body), json.loads(fast_body)
    errs = percentile_errors(exact_r, fast_r)
    # Accuracy on more figures: ``--accuracy-hours`` around that hour, per
    # hour and as one group, replay against rollups (not timed).
    a0 = h0 - (args.accuracy_hours // 2) * HOUR
    a1 = a0 + args.accuracy_hours * HOUR
    accuracy: dict[str, Any] = {"from": a0, "to": a1, "hours": args.accuracy_hours}
    pairs: list[dict[str, Any]] = []
    for bucket in ("hour", None):
        got = []
        for exact in (True, False):
            _, status, b = client.get(metrics_path(a0, a1, exact=exact, bucket=bucket))
            if status != 200:
                raise BenchError(f"{backend}: accuracy query: HTTP {status}: {b[:300]!r}")
            got.append(json.loads(b))
        e = percentile_errors(got[0], got[1])
        accuracy[f"by_{bucket or 'range'}"] = {k: v for k, v in e.items() if k != "all"}
        pairs += e["all"]
    client.close()
    worst = max(pairs, key=lambda d: d["rel_error"]) if pairs else None
    accuracy.update({"compared": len(pairs), "max_rel_error": worst["rel_error"] if worst else None, "worst": worst,
                     "within_1pct": sum(1 for d in pairs if d["rel_error"] <= 0.01)})
    out["accuracy"] = accuracy
    log(f"{backend}: rollup p50/p90 vs replay over {args.accuracy_hours} hours: {len(pairs)} figures, max relative "
        f"error {accuracy['max_rel_error']} ({(worst or {}).get('figure')})")
    hour_messages = sum(g["bot"]["messages"] + g["human"]["messages"] for g in exact_r["groups"])
    ex_med = statistics.median(ex_times)
    out["replay_one_hour"] = {
        "query": "GET " + exact_path,
        "hour": dt.datetime.fromtimestamp(h0, dt.timezone.utc).isoformat(),
        "source": exact_r.get("source"),
        "messages_in_hour": hour_messages,
        "queries": len(ex_times),
        "first_s": round(ex_times[0], 4),
        "median_s": round(ex_med, 4),
        "max_s": round(max(ex_times), 4),
        "server_cpu_s_per_query": round(cpu.result["server_total_s"] / len(ex_times), 4),
        "database_cpu_s_per_query": round(cpu.result["database_backends_s"] / len(ex_times), 4)
        if backend == "postgresql" else None,
        "rollups_same_hour_median_s": round(statistics.median(fast_times), 4),
        "rollups_same_hour_source": fast_r.get("source"),
        "week_estimate_s_not_measured": round(ex_med * out["range"]["hours"], 0),
        "percentiles_vs_rollups": {k: v for k, v in errs.items() if k != "all"},
        "percentile_pairs": errs["all"],
    }
    log(f"{backend}: replay (exact=true) of one hour ({hour_messages:,} messages): median {ex_med:.3f} s "
        f"(rollups, same hour: {statistics.median(fast_times):.4f} s); rollup percentiles vs exact: max relative "
        f"error {errs['max_rel_error']} over {errs['compared']} figures")

    out["rss_mib_after_queries"] = rss_mib(server.pid)
    out["log_problems"] = server.log_problems()
    server.stop()
    log(f"{backend}: server RSS after the queries {out['rss_mib_after_queries']} MiB")
    return out


# ------------------------------------------------------------------- verdicts
def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def add(name: str, value: Any, op: str, threshold: Any, unit: str = "") -> None:
        if value is None:
            ok = False
        elif op == "<=":
            ok = value <= threshold
        elif op == "in":
            ok = value in threshold
        else:
            ok = value == threshold
        checks.append({"check": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                       "pass": bool(ok)})

    for name, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        b = results["backends"].get(name)
        if not b:
            continue
        w = b["week"]
        add(f"{label}: 7-day metrics by tier and hour, warm median", w["warm_median_s"], "<=",
            TARGETS["metrics_week_warm_median_s"], "s")
        add(f"{label}: answered from the rollups", w["source"] == ["rollups"], "==", True)
        add(f"{label}: hour groups", w["hour_groups"][0] if len(w["hour_groups"]) == 1 else None, "in",
            [168, 169])
        add(f"{label}: the report counts every stored message", w["messages_in_report"] == [b["data"]["messages"]],
            "==", True)
        acc = b.get("accuracy") or {}
        worst = max([x for x in (b["replay_one_hour"]["percentiles_vs_rollups"]["max_rel_error"],
                                 acc.get("max_rel_error")) if x is not None], default=None)
        add(f"{label}: rollup p50/p90 vs the replay, worst of "
            f"{b['replay_one_hour']['percentiles_vs_rollups']['compared'] + acc.get('compared', 0)} figures "
            f"({acc.get('hours', 0)} hours, per hour and together)", worst, "<=", TARGETS["percentile_rel_error"],
            "ratio")
        add(f"{label}: server RSS after the queries (model loaded, {b['data']['messages']:,} messages stored)",
            b["rss_mib_after_queries"], "<=", TARGETS["server_rss_mib"], "MiB")
    return checks


# ----------------------------------------------------------------- reporting
def show(v: Any, unit: str) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "MiB":
        return f"{v:,.1f} MiB"
    if unit == "ratio":
        return f"{v:.2%}"
    if isinstance(v, list):
        return "–".join(str(x) for x in v)
    return f"{v:,}" if isinstance(v, int) else str(v)


def checks_table(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| target | measured | required | result |", "|---|---:|---:|---|"]
    for c in checks:
        lines.append(f"| {c['check']} | {show(c['value'], c['unit'])} | {c['op']} {show(c['threshold'], c['unit'])} "
                     f"| {'PASS' if c['pass'] else '**FAIL**'} |")
    return lines


def run_facts(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    pg = m.get("postgresql") or {}
    code = r.get("code") or {}
    mod = code.get("modified_files") or []
    busy = max([x for x in r.get("other_processes_cores", []) if x is not None] or [0.0])
    return [
        f"- command: `{r['command']}`; wall time {r['wall_s']:.0f} s",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {m.get('mem_total_mib') or 0:,} MiB, "
        f"Linux {m.get('kernel')}, Python {m['python']}, SQLite {m['sqlite']}"
        + (f", PostgreSQL {pg.get('server_version')} (shared_buffers {pg.get('shared_buffers')})" if pg else ""),
        f"- load average at start {r['loadavg_start']}, at end {r['loadavg_end']}"
        + (f"; CPU taken by other processes while measuring: up to {busy:.2f} of {m['nproc']} cores"
           if r.get("other_processes_cores") else "")
        + (" — **the machine was shared with other work; the timings are pessimistic**" if busy >= 0.25 else ""),
        f"- code: commit {code.get('commit')}"
        + (f" plus uncommitted changes to {len(mod)} file(s) outside bench/ and docs/" if mod else ""),
    ]


def metrics_markdown(r: dict[str, Any]) -> list[str]:
    lines = [f"### Metrics endpoint, last run: {r['started_at']}", ""]
    lines += run_facts(r)
    lines.append(f"- data: {r['messages']:,} synthetic messages over {r['days']:g} days per database, from "
                 f"`tierdesk metrics seed --messages {r['messages']} --days {r['days']:g}` (messages, events, "
                 "hourly rollups and histograms maintained on write)")
    for name, b in r["backends"].items():
        d = b["data"]
        how = (f"seeded in this run ({d['seed_seconds']:.0f} s)" if d.get("seeded_now")
               else "cached from an earlier seed")
        size = f"{d['file_mib']:,.0f} MiB file" if "file_mib" in d else f"{d.get('database_mib', 0):,.0f} MiB database"
        lines.append(f"  - {name}: `{b['database']}`, {how}; {d['messages']:,} messages, {d['events']:,} events, "
                     f"{d['rollup_rows']:,} rollup rows, {d['histogram_rows']:,} histogram rows; {size}"
                     + (f"; `ANALYZE` before measuring ({d['analyze_s']:.0f} s: the statistics autovacuum would "
                        "have gathered on a live database; a bulk seed or a template clone has none)"
                        if d.get("analyze_s") is not None else ""))
    any_b = next(iter(r["backends"].values()), None)
    if any_b:
        rg = any_b["range"]
        lines.append(f"- query: `GET /v1/metrics?from=…&to=…&group_by=tier&bucket=hour` with the admin token, "
                     f"{r['queries']} times on one keep-alive connection right after the server became ready; "
                     f"range {rg['from_iso']} to {rg['to_iso']} ({rg['hours']} hours: the week ending at the seed "
                     "time, hour-aligned); wall time at the client, request sent to last body byte. *Cold* is "
                     "the first query after the server started; the OS page cache is left as it is (not dropped), "
                     "so a cold figure includes whatever disk reads the database file still needed. Server CPU is "
                     "per warm query (all threads), plus the PostgreSQL backends' CPU")
    lines += ["", "| database | cold (1st) | warm median | warm p90 | warm max | server CPU/query | source | "
                  "hour groups | messages in report | response | RSS after |",
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for name, b in r["backends"].items():
        w = b["week"]
        lines.append(f"| {name} | {w['cold_s']:.3f} s | {w['warm_median_s']:.3f} s | {w['warm_p90_s']:.3f} s | "
                     f"{w['warm_max_s']:.3f} s | {w['server_cpu_s_per_query']:.3f} s"
                     + (f" + {w['database_cpu_s_per_query']:.3f} s (PostgreSQL)"
                        if w.get("database_cpu_s_per_query") is not None else "")
                     + f" | {', '.join(w['source'])} | "
                     f"{'/'.join(str(x) for x in w['hour_groups'])} | "
                     f"{'/'.join(f'{x:,}' for x in w['messages_in_report'])} | {w['response_kib']:,.0f} KiB | "
                     f"{b['rss_mib_after_queries']:,.1f} MiB |")
    n_events = max((b["data"].get("events") or 0 for b in r["backends"].values()), default=0)
    lines += ["", "The replay path (`exact=true`), one hour in the middle of the range; not run over the week: "
                  f"it reads every event of the range into the server's memory ({n_events:,} events for this "
                  f"week of {r['messages']:,} messages), so it would take minutes and its memory would far exceed "
                  "the RSS budget; the week figure below is the hour's time × hours, an estimate, not a "
                  "measurement.", "",
              "| database | messages in the hour | exact=true median | first | server CPU/query | week, estimated "
              "| rollups, same hour | p50/p90 compared | max relative error | worst figure |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, b in r["backends"].items():
        x = b["replay_one_hour"]
        pv = x["percentiles_vs_rollups"]
        worst = pv.get("worst") or {}
        cpu = f"{x['server_cpu_s_per_query']:.3f} s" + (
            f" + {x['database_cpu_s_per_query']:.3f} s (PostgreSQL)" if x.get("database_cpu_s_per_query") is not None
            else "")
        lines.append(f"| {name} | {x['messages_in_hour']:,} | {x['median_s']:.3f} s | {x['first_s']:.3f} s | {cpu} | "
                     f"~{x['week_estimate_s_not_measured']:,.0f} s | {x['rollups_same_hour_median_s']:.4f} s | "
                     f"{pv['compared']} | {show(pv['max_rel_error'], 'ratio')} | "
                     f"`{worst.get('figure', '–')}` ({worst.get('exact')} vs {worst.get('rollups')}) |")
    for name, b in r["backends"].items():
        acc = b.get("accuracy")
        if acc:
            w = acc.get("worst") or {}
            lines.append(f"\nPercentile accuracy, {name}: the rollups' p50/p90 against the replay's over "
                         f"{acc['hours']} "
                         f"hours around that hour, per hour and for the {acc['hours']} hours together: "
                         f"{acc['compared']} figures, {acc['within_1pct']} within 1%, worst "
                         f"{show(acc['max_rel_error'], 'ratio')} (`{w.get('figure')}`: {w.get('exact')} exact vs "
                         f"{w.get('rollups')}).")
    lines += [""] + checks_table(r["checks"])
    notes = []
    for name, b in r["backends"].items():
        notes.append(f"- {name}: ready {b['ready_s']} s after start, RSS {b['rss_mib_at_ready']} MiB at ready, "
                     f"{b['rss_mib_after_queries']} MiB after the queries (300 MB read as 300 MiB; "
                     f"{b['rss_mib_after_queries'] * 1.048576:,.0f} MB decimal); server warnings/errors logged: "
                     f"{b.get('log_problems') or 'none'}")
    lines += [""] + notes
    return lines


def ws_markdown(r: dict[str, Any]) -> list[str]:
    lines = [f"### Agent WebSockets, last run: {r['started_at']}", ""]
    lines += run_facts(r)
    lines.append(f"- `tierdesk serve` on a fresh SQLite file with the demo model loaded, one agent (online); "
                 f"{r['connections']:,} WebSockets to `/v1/agents/ws` with the agent's token "
                 f"(`Authorization: Bearer …`) from a separate aiohttp client process, {r['concurrency']} "
                 "handshakes in flight, each waits for its `hello` frame; then held idle (the client answers the "
                 f"server's heartbeat pings; TIERDESK_WS_IDLE_TIMEOUT_SECONDS={r['ws_idle_timeout']:g}; rate "
                 "limits off); RSS is VmRSS of the server process")
    o = r.get("open", {})
    lines += ["", "| step | server RSS | gauge `tierdesk_agent_websockets` | notes |", "|---|---:|---:|---|"]
    lines.append(f"| agent created, no sockets | {r['rss_mib_before']} MiB | {r['gauge_before']:g} | |")
    lines.append(f"| {o.get('opened', 0):,} sockets open, idle {r['idle_s']:g} s | {r['rss_mib_open']} MiB | "
                 f"{r['gauge_open']:g} | opened in {o.get('seconds', 0):.1f} s, {o.get('failed', 0)} failed, "
                 f"{o.get('hello', 0):,} hello frames; handshake p50 {o.get('handshake_p50_ms')} ms, "
                 f"p99 {o.get('handshake_p99_ms')} ms |")
    lines.append(f"| all closed by the client | {r['rss_mib_closed']} MiB | {r['gauge_closed']:g} | gauge read "
                 f"{r['gauge_zero_after_s']} s after the client reported them closed |")
    delta = r.get("rss_delta_mib")
    per = r.get("rss_per_socket_kib")
    lines += ["", f"RSS added by {o.get('opened', 0):,} idle sockets: **{delta} MiB** ({per} KiB per socket); "
                  f"server CPU while they were held idle: {r.get('idle_server_cpu_cores')} cores; the client "
                  f"process used {o.get('client_rss_mib')} MiB. The server's RSS does not come back down when "
                  "the sockets close (freed memory stays with the process's allocator for reuse), and it adds to "
                  "everything else the process holds: RSS budgets for the metrics and the sockets are not "
                  "independent.", ""]
    lines += checks_table(r["checks"])
    if r.get("log_problems"):
        lines += ["", f"- server warnings/errors logged: {r['log_problems']}"]
    return lines


def render_block() -> str:
    """The whole section between the markers, from the last results of both
    scripts (each script rewrites it with the other's last results kept)."""
    lines = [BEGIN,
             "Written by `bench/metrics_bench.py` and `bench/ws_bench.py` (each rewrites this block, keeping the "
             "other's last results from `bench/results/metrics.json` / `bench/results/ws.json`).",
             "",
             "```sh",
             ".venv/bin/python bench/metrics_bench.py   # SQLite and PostgreSQL; data cached in "
             "bench/results/metrics-1m.db and database tierdesk_bench_metrics_1m (first seed ~20 min)",
             ".venv/bin/python bench/ws_bench.py        # 5,000 idle agent WebSockets, ~1 minute",
             "```",
             ""]
    for path, render in ((METRICS_JSON, metrics_markdown), (WS_JSON, ws_markdown)):
        try:
            r = json.loads(path.read_text())
        except (OSError, ValueError):
            lines += [f"_{path.relative_to(ROOT)}: no results yet._", ""]
            continue
        try:
            lines += render(r) + [""]
        except (KeyError, TypeError, ValueError) as exc:
            lines += [f"_{path.relative_to(ROOT)}: could not be rendered ({exc!r})._", ""]
    while lines and lines[-1] == "":
        lines.pop()
    lines.append(END)
    return "\n".join(lines)


def write_doc() -> str:
    block = render_block()
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n" + block + "\n"
    DOC.write_text(text)
    return block


# ------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgresql", help="comma-separated subset of sqlite,postgresql")
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=7.0)
    p.add_argument("--reseed", action="store_true", help="seed the databases again even if cached")
    p.add_argument("--sqlite-path", default=str(RESULTS / "metrics-1m.db"))
    p.add_argument("--pg-admin-url", default=os.environ.get("BENCH_PG_ADMIN_URL",
                                                            "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--pg-database", default="tierdesk_bench_metrics_1m")
    p.add_argument("--queries", type=int, default=20, help="timed week queries per database (first = cold)")
    p.add_argument("--exact-queries", type=int, default=5, help="timed one-hour replays per database")
    p.add_argument("--accuracy-hours", type=int, default=6,
                   help="hours compared, replay against rollups, for the percentile accuracy (not timed)")
    p.add_argument("--models-dir", help="use the model in this directory (trained into it if it has none)")
    p.add_argument("--seed-timeout", type=float, default=3600.0)
    p.add_argument("--start-timeout", type=float, default=300.0)
    p.add_argument("--query-timeout", type=float, default=120.0)
    p.add_argument("--output", default=str(METRICS_JSON))
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    args = p.parse_args(argv)
    names = [x.strip() for x in args.backends.split(",") if x.strip()]
    if not names or set(names) - {"sqlite", "postgresql"}:
        p.error("--backends takes sqlite, postgresql or both")
    if args.queries < 2:
        p.error("--queries must be at least 2 (one cold, the rest warm)")
    install_signal_handlers()
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": exe_command(argv),
        "messages": args.messages,
        "days": args.days,
        "queries": args.queries,
        "targets_required": TARGETS,
        "loadavg_start": loadavg(),
        "machine": machine(),
        "code": code_version(),
        "backends": {},
    }
    t_start = time.perf_counter()
    servers: list[Server] = []
    tmp = Path(tempfile.mkdtemp(prefix="tierdesk-metrics-bench-"))
    code = 0
    try:
        if "postgresql" in names:
            try:
                results["machine"]["postgresql"] = pg_settings(args.pg_admin_url)
            except Exception as exc:  # noqa: BLE001
                raise BenchError(f"PostgreSQL at {args.pg_admin_url} is not reachable ({exc}); "
                                 "start it or pass --backends sqlite") from None
        datas = {n: Data(n, args) for n in ("sqlite", "postgresql") if n in names}
        facts = {n: d.ensure() for n, d in datas.items()}
        for n, d in datas.items():
            secs = d.analyze()
            if secs is not None:
                facts[n]["analyze_s"] = secs
                log(f"{n}: ANALYZE in {secs} s")
        models = train_model(args.models_dir, tmp)
        for n, d in datas.items():
            results["backends"][n] = measure(n, d, facts[n], models, tmp, args, servers)
    except KeyboardInterrupt:
        log("interrupted; stopping servers")
        code = 130
    except (BenchError, subprocess.TimeoutExpired, OSError, httpclient.HTTPException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop_servers(servers)
        discard_or_keep(tmp, code)
    if code != 0:
        return code
    results["wall_s"] = round(time.perf_counter() - t_start, 1)
    results["loadavg_end"] = loadavg()
    results["other_processes_cores"] = [b["week"]["cpu"]["other_processes_cores"]
                                        for b in results["backends"].values()]
    results["checks"] = evaluate(results)
    out = Path(args.output)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    if args.no_doc or out.resolve() != METRICS_JSON.resolve():
        print("\n".join(metrics_markdown(results)))
    else:
        write_doc()
        print("\n".join(metrics_markdown(results)))
    print()
    failed = [c for c in results["checks"] if not c["pass"]]
    doc = not args.no_doc and out.resolve() == METRICS_JSON.resolve()
    log(f"results in {os.path.relpath(out, ROOT)}" + (f" and {os.path.relpath(DOC, ROOT)}" if doc else "")
        + f"; {len(results['checks']) - len(failed)} checks passed, {len(failed)} failed")
    return 0 if not failed else 3


if __name__ == "__main__":
    sys.exit(main())

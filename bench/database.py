"""The database side: what the server stored, agents' capacity held
during the runs, and PostgreSQL databases created and dropped."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The bench's own connections (the capacity sampler's, the checks'): not the
# server's backends, whose CPU is counted per message.
BENCH_APPLICATION = "tierdesk-bench"


class Db:
    """Read-only checks on the target's database."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=10)
            return conn
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=5, application_name=BENCH_APPLICATION)

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

    def analyze(self) -> None:
        """PostgreSQL: the planner's statistics brought up to date, as
        autovacuum keeps them on a live database."""
        if not self.url.startswith("sqlite"):
            conn = self.connect()
            try:
                conn.execute("ANALYZE")
            finally:
                conn.close()

    def inbound_ids(self, channel_id: str, prefix: str = "") -> set[str]:
        """The channel's customer message ids (those of one run: ``prefix``)."""
        rows = self.query("SELECT external_id FROM messages WHERE channel_id = ? AND sender = 'customer' "
                          "AND external_id LIKE ?", (channel_id, prefix + "-%" if prefix else "%"))
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
    and the final check can tell; the database's own guard refuses the rest).
    With ``rss`` and ``queued_mark``, also reads the server's RSS at the first
    sample with that many handoffs waiting: the memory target's condition.
    A fast machine queues far more than that by the end of the runs, and
    RSS at the end would then be judged on a longer queue than the target's."""

    def __init__(self, db: Db, interval: float = 1.0, *, rss: Callable[[], float | None] | None = None,
                 queued_mark: int | None = None) -> None:
        super().__init__(daemon=True, name="capacity-sampler")
        self.db, self.interval = db, interval
        self.rss, self.queued_mark = rss, queued_mark
        self.at_mark: dict[str, Any] | None = None
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
                if (self.at_mark is None and self.rss is not None and self.queued_mark is not None
                        and c["open_queued"] >= self.queued_mark):
                    self.at_mark = {"queued": c["open_queued"], "rss_mib": self.rss()}
        finally:
            conn.close()

    def result(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(timeout=15)
        return {"samples": self.samples, "violations": self.violations[:20], "errors": self.errors[:5],
                "at_queued_mark": self.at_mark}


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


def fresh_database(db: str, name: str, pg_admin_url: str, tmp: Path) -> str:
    """The URL of an empty database called ``name``: a PostgreSQL one
    (dropped first if it exists) or a SQLite file in ``tmp``."""
    if db == "sqlite":
        return f"sqlite:///{tmp / f'{name}.db'}"
    pg_drop(pg_admin_url, name)
    pg_create(pg_admin_url, name)
    return pg_url(pg_admin_url, name)


def pg_url(admin_url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + database, u.query, u.fragment))

"""Stored messages under the targets: each tierdesk target's database starts
as a copy of bench/metrics_bench.py's cached seed (1,000,000 messages over
a week, made by `tierdesk metrics seed`), so memory is measured with a
database of a busy desk's size behind the server.

The seed is made once (8 minutes per database on the 2-core machine,
2026-12-05) and kept: bench/results/metrics-1m.db, and the PostgreSQL
database tierdesk_bench_metrics_1m. A copy takes ~1 s (SQLite file) and
~20 s (PostgreSQL, CREATE DATABASE ... TEMPLATE, 1.7 GB).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import metrics_bench
from common import log


def seed_args(args: argparse.Namespace) -> argparse.Namespace:
    """What metrics_bench's Data needs, with its defaults."""
    return argparse.Namespace(messages=args.stored, days=7.0, reseed=False,
                              sqlite_path=str(metrics_bench.RESULTS / "metrics-1m.db"),
                              pg_admin_url=args.pg_admin_url, pg_database="tierdesk_bench_metrics_1m",
                              seed_timeout=3600.0)


def ensure_seed(args: argparse.Namespace, backend: str) -> metrics_bench.Data:
    data = metrics_bench.Data(backend, seed_args(args))
    facts = data.ensure()
    if backend == "postgresql" and facts.get("seeded_now"):
        # Statistics travel with the template: gathered once, for every copy.
        data.analyze()
    return data


def copy_sqlite(data: metrics_bench.Data, dest: Path) -> None:
    log(f"copying the {data.args.messages:,}-message seed to {dest.name} ...")
    shutil.copyfile(data.path, dest)


def copy_postgresql(data: metrics_bench.Data, admin_url: str, name: str) -> None:
    import psycopg

    log(f"copying the {data.args.messages:,}-message seed {data.name} to {name} ...")
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        # FILE_COPY: a checkpoint and a copy of the files; the default
        # (WAL_LOG) writes every block through the WAL, minutes for 1.7 GB.
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{data.name}" STRATEGY FILE_COPY')

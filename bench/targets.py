"""The targets measured: bare aiohttp and tierdesk on SQLite or PostgreSQL,
started with a trained model, agents and a channel."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH, HOST, ROOT, log
from database import BENCH_APPLICATION, CapacitySampler, Db
from load import check_wrk
from servers import Server, free_port, http


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


ALL_TARGETS = ("bare", "sqlite", "postgresql", "postgresql-workers", "postgresql-instances")
# Several server processes on one PostgreSQL: their CPU per message is held
# against one process's, at the rate one process was offered.
SCALE_OUT = ("postgresql-workers", "postgresql-instances")


def target_label(name: str, args: argparse.Namespace) -> str:
    return {"bare": "bare aiohttp", "sqlite": "tierdesk SQLite", "postgresql": "tierdesk PostgreSQL",
            "postgresql-workers": f"tierdesk PostgreSQL, {args.pg_workers} workers",
            "postgresql-instances": f"tierdesk PostgreSQL, {args.pg_instances} instances"}[name]


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
                              sqlite_synchronous=None, pg_workers=1, pg_instances=2, server_env=[])


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
    for setting in args.server_env:
        name, _, value = setting.partition("=")
        env[name] = value
    return env


class Target:
    """One server under test (or several instances of it on one database)
    and what was measured on it."""

    def __init__(self, name: str, label: str, servers: list[Server], db: Db | None = None, workers: int = 1) -> None:
        self.name, self.label, self.servers, self.db, self.workers = name, label, servers, db, workers
        self.server = servers[0]
        self.token = ""
        self.channel_id = ""
        self.out: dict[str, Any] = {"pid": None, "label": label}
        self.acked_files: dict[str, Path] = {}
        self.counted: dict[str, int] = {}
        self.sampler: CapacitySampler | None = None

    @property
    def bases(self) -> list[str]:
        return [s.base for s in self.servers]

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    @property
    def is_tierdesk(self) -> bool:
        return self.db is not None

    def db_pids(self) -> list[int]:
        """The PostgreSQL backends serving the target's servers (not the
        bench's own connections, nor autovacuum's workers: what vacuuming
        the rows written costs comes in bursts a 10 s measurement may or may
        not catch)."""
        if self.db is None or self.db.url.startswith("sqlite"):
            return []
        rows = self.db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                             "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                             "AND application_name <> ?", (BENCH_APPLICATION,))
        return [int(r[0]) for r in rows]


def start_target(args: argparse.Namespace, name: str, tmp: Path, models: Path, database_url: str | None,
                 servers: list[Server], argv: list[str] | None = None, tree: Path | None = None) -> Target:
    """``argv``: in place of `tierdesk serve` (bench/step_probe.py's); a
    "{k}" in it becomes each instance's number.
    ``tree``: serve the tierdesk of that source tree (a checkout or a git
    worktree) instead of this one: what bench/ab.py and
    bench/cpu_per_message.py compare."""
    if tree is not None:
        argv = [sys.executable, "-m", "tierdesk.cli", "serve"]
    port = free_port()
    if name == "bare":
        server = Server("bare", [sys.executable, str(BENCH / "bare_app.py"), str(port)], dict(os.environ), port,
                        tmp / "bare.log")
        servers.append(server)
        server.start(None)
        log(f"bare baseline on :{port} (pid {server.pid})")
        tg = Target(name, "bare aiohttp", [server])
        tg.out["pid"] = server.pid
        return tg
    assert database_url is not None
    admin = "td_admin_bench_" + secrets.token_hex(16)
    workers = args.pg_workers if name == "postgresql-workers" else 1
    instances = []
    # Instances one after the other: the first migrates the database.
    for k in range(args.pg_instances if name == "postgresql-instances" else 1):
        port = port if k == 0 else free_port()
        env = tierdesk_env(args, database_url, admin, models, port) | {"TIERDESK_WORKERS": str(workers)}
        if tree is not None:
            env["PYTHONPATH"] = str(tree)
        server_argv = [a.replace("{k}", str(k)) for a in argv] if argv else tierdesk_argv()
        server = Server(name if k == 0 else f"{name}-{k}", server_argv, env, port,
                        tmp / f"{name}-{k}.log", cwd=tree or ROOT)
        servers.append(server)
        t0 = time.perf_counter()
        server.start("/readyz", timeout=300.0)
        log(f"tierdesk/{server.name} on :{port} (pid {server.pid}), ready in {time.perf_counter() - t0:.1f}s")
        instances.append(server)
    server = instances[0]
    tg = Target(name, target_label(name, args), instances, Db(database_url), workers)
    if workers > 1:
        time.sleep(2.0)  # every worker listening, so that the kernel spreads the connections
    channel = http("POST", server.base + "/v1/admin/channels", {"name": "bench"}, token=admin)
    tg.token, tg.channel_id = channel["token"], channel["id"]
    for k in range(args.agents):
        http("POST", server.base + "/v1/admin/agents",
             {"name": f"bench agent {k}", "skills": ["billing", "tech", "general"], "capacity": args.capacity,
              "status": "online"}, token=admin)
    tg.out.update({"pid": server.pid, "pids": tg.pids, "database": database_url.split("@")[-1].split("/")[-1]
                   if name != "sqlite" else "temporary SQLite file", "workers": workers,
                   "instances": len(instances), "agents": args.agents, "capacity_per_agent": args.capacity})
    return tg

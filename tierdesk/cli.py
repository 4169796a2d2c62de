"""The `tierdesk` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tierdesk import __version__
from tierdesk.errors import InvalidInput, TierdeskError
from tierdesk.settings import PROJECT_ROOT, Settings

DEMO_STATE = PROJECT_ROOT / "var" / "demo.json"


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from storage.migrate import upgrade
    from tierdesk.logging import configure
    from tierdesk.web.app import create_app

    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = Settings.from_env(**overrides)
    if settings.is_sqlite:
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if args.demo:
        from tierdesk.demo import banner, set_up

        tokens = set_up(settings, DEMO_STATE)
        admin = settings.admin_token or tokens.admin
        settings = Settings.from_env(**overrides, admin_token=admin)
        print(banner(settings, tokens, admin), flush=True)
    elif not args.reuse_port:  # a worker: its supervisor migrated
        upgrade(settings.database_url)
    configure(settings.log_level, settings.log_format)
    if settings.workers > 1 and not args.reuse_port:
        from tierdesk.workers import supervise

        return supervise(settings.workers, settings.host, settings.port)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is optional on other platforms
        pass
    worker = None
    if args.worker_metrics_dir is not None:
        from tierdesk.web.worker_metrics import WorkerMetrics

        worker = WorkerMetrics(args.worker_metrics_dir, args.worker)
    app = create_app(settings, worker=worker, manage_heap=True)
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, reuse_port=args.reuse_port or None,
                print=lambda s: print(s, flush=True), shutdown_timeout=10.0)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    settings = Settings.from_env()
    upgrade(settings.database_url)
    print(f"database at head: {settings.database_url}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tierdesk.demo import banner, set_up

    settings = Settings.from_env()
    tokens = set_up(settings, DEMO_STATE)
    print(banner(settings, tokens, settings.admin_token or tokens.admin))
    return 0


def _sla(settings: Settings):  # type: ignore[no-untyped-def]
    from router.metrics import SLA

    return SLA(settings.sla_bot_seconds, settings.sla_human_seconds, settings.sla_human_first_response_seconds)


def _metrics_rebuild(args: argparse.Namespace) -> int:
    from tierdesk.metrics_admin import rebuild

    settings = Settings.from_env()
    n = asyncio.run(rebuild(settings.database_url, _sla(settings)))
    print(f"rollups rebuilt from the events of {n} conversations")
    return 0


def _metrics_seed(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade
    from tierdesk.metrics_admin import seed

    settings = Settings.from_env()
    upgrade(settings.database_url)
    if args.history:
        from tierdesk.history_seed import seed_history

        if args.weeks < 1:
            raise InvalidInput("--weeks must be at least 1")
        from tierdesk.planning import day_start

        end = day_start(args.until) if args.until else None
        result = asyncio.run(seed_history(settings.database_url, args.weeks, _sla(settings), seed=args.seed,
                                          end=end))
    else:
        result = asyncio.run(seed(settings.database_url, args.messages, args.days, _sla(settings),
                                  seed_value=args.seed))
    print(result)
    return 0


async def _with_engines(work):  # type: ignore[no-untyped-def]
    from storage.engine import create_engines

    engines = create_engines(Settings.from_env().database_url)
    try:
        return await work(engines)
    finally:
        await engines.dispose()


def _faq_misses(args: argparse.Namespace) -> int:
    import time

    from storage.faq import FaqRepository
    from tierdesk.faq_traffic import missed_clusters

    async def work(engines):  # type: ignore[no-untyped-def]
        return await missed_clusters(FaqRepository(engines), time.time() - args.days * 86400)

    misses, clusters = asyncio.run(_with_engines(work))
    print(f"{len(misses)} missed questions in the last {args.days:g} days, {len(clusters)} clusters")
    print(f"{'size':>5}  {'model guessed':<22} {'why':<40} representative question")
    for c in clusters:
        why = ", ".join(f"{k} {v}" for k, v in sorted(c.reasons.items()))
        print(f"{c.size:>5}  {(c.top_intent or '-'):<22} {why:<40} {c.representative}")
    return 0


def _faq_suggest(args: argparse.Namespace) -> int:
    import time

    from storage.faq import FaqRepository
    from tierdesk.faq_traffic import missed_clusters, suggestion_yaml

    async def work(engines):  # type: ignore[no-untyped-def]
        return await missed_clusters(FaqRepository(engines), time.time() - args.days * 86400)

    _, clusters = asyncio.run(_with_engines(work))
    print(suggestion_yaml(clusters, min_size=args.min_size), end="")
    return 0


def _faq_shadow(args: argparse.Namespace) -> int:
    import json
    import time

    from storage.faq import FaqRepository
    from tierdesk.faq_traffic import shadow_run
    from tierdesk.models import LiveModel

    settings = Settings.from_env()

    async def work(engines):  # type: ignore[no-untyped-def]
        repo = FaqRepository(engines)
        live = LiveModel(settings.models_dir, settings.knowledge_base)
        await live.load(await repo.answer_overrides())
        return await shadow_run(live, repo, args.version, time.time() - args.days * 86400,
                                progress=lambda m: print(m, file=sys.stderr))

    print(json.dumps(asyncio.run(_with_engines(work)), indent=2))
    return 0


def _deliveries_list(args: argparse.Namespace) -> int:
    from storage.outbox import Outbox

    async def work(engines):  # type: ignore[no-untyped-def]
        return await Outbox(engines).list(args.status, limit=1000)

    items = asyncio.run(_with_engines(work))
    for d in items:
        print(f"{d.id:>8}  {d.status:<9} tries {d.attempts:<3} {d.channel_id}  {d.idempotency_key}  {d.last_error or ''}")
    print(f"{len(items)} {args.status} deliveries")
    return 0


def _deliveries_replay(args: argparse.Namespace) -> int:
    import time

    from storage.outbox import Outbox

    async def work(engines):  # type: ignore[no-untyped-def]
        return await Outbox(engines).replay(time.time())

    print(f"{asyncio.run(_with_engines(work))} dead letters put back in line")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierdesk", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tierdesk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true",
                       help="first set up the demo (database, model, channel, agents) and print tokens")
    # How a worker of TIERDESK_WORKERS > 1 is started (tierdesk/workers.py).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-metrics-dir", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    sub.add_parser("migrate", help="bring the database to the current schema").set_defaults(func=_migrate)
    sub.add_parser("demo", help="set up the demo channel, agents and model; print tokens").set_defaults(func=_demo)
    metrics = sub.add_parser("metrics", help="maintain the metric rollups").add_subparsers(
        dest="metrics_command", required=True)
    metrics.add_parser("rebuild", help="recompute the hourly rollups from the event log").set_defaults(
        func=_metrics_rebuild)
    seed = metrics.add_parser("seed", help="fill the database with synthetic traffic (benchmarks), or with "
                              "weeks of human-tier history (--history: for simulate --from-db and staffing)")
    seed.add_argument("--messages", type=int, default=1_000_000)
    seed.add_argument("--days", type=float, default=7.0)
    seed.add_argument("--history", action="store_true",
                      help="simulated handoffs of a staffed desk, up to the start of today (UTC)")
    seed.add_argument("--weeks", type=int, default=4, help="with --history: how many weeks")
    seed.add_argument("--until", metavar="YYYY-MM-DD", help="with --history: up to the start of that day "
                                                            "(default today)")
    seed.add_argument("--seed", type=int, default=1)
    seed.set_defaults(func=_metrics_seed)
    from tierdesk.planning import register as register_planning

    register_planning(sub)
    from classifier.cli import register

    faq = register(sub)
    misses = faq.add_parser("misses", help="questions the bot missed, clustered, biggest first")
    misses.add_argument("--days", type=float, default=7.0)
    misses.set_defaults(func=_faq_misses)
    suggest = faq.add_parser("suggest", help="draft knowledge-base entries from the biggest miss clusters")
    suggest.add_argument("--days", type=float, default=7.0)
    suggest.add_argument("--min-size", type=int, default=2)
    suggest.set_defaults(func=_faq_suggest)
    shadow = faq.add_parser("shadow", help="replay stored traffic through a candidate version vs the active one")
    shadow.add_argument("version")
    shadow.add_argument("--days", type=float, default=7.0)
    shadow.set_defaults(func=_faq_shadow)
    deliveries = sub.add_parser("deliveries", help="outbound deliveries to channel webhooks").add_subparsers(
        dest="deliveries_command", required=True)
    listing = deliveries.add_parser("list", help="list deliveries (dead letters by default)")
    listing.add_argument("--status", choices=("pending", "delivered", "dead"), default="dead")
    listing.set_defaults(func=_deliveries_list)
    deliveries.add_parser("replay", help="put every dead letter back in line").set_defaults(func=_deliveries_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TierdeskError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

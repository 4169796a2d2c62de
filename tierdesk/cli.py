"""tierdesk: middleware between customer chat channels and human agents.

A FAQ bot answers what it can, hands the rest to the least-loaded skilled
agent, and reports response metrics split by tier. This command serves the
HTTP API and does the operator's work around it: the database schema, the
demo set-up, the FAQ models, the metric rollups and the outbound deliveries.
Settings come from the environment (TIERDESK_*; README.md lists them)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from pathlib import Path

from tierdesk import __version__
from tierdesk.errors import InvalidInput, TierdeskError
from tierdesk.settings import Settings

class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped paragraph by paragraph, and each option's default
    after its help (unless the help already says it, or there is none worth
    saying)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                          subsequent_indent=indent) for p in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (action.default in (None, False, argparse.SUPPRESS) or "default" in text
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


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
    demo_inbox = None
    if args.demo:
        from tierdesk.demo import banner, set_up, write_env
        from tierdesk.web.demo_inbox import DemoInbox

        tokens = set_up(settings)
        admin = settings.admin_token or tokens.admin
        settings = Settings.from_env(**overrides, admin_token=admin)
        write_env(settings, tokens, admin)
        demo_inbox = DemoInbox(tokens.channel_id, tokens.webhook_secret,
                               signature_tolerance=settings.signature_tolerance_seconds)
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
    app = create_app(settings, worker=worker, manage_heap=True, demo_inbox=demo_inbox)
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
    from tierdesk.demo import banner, set_up, write_env

    settings = Settings.from_env()
    tokens = set_up(settings)
    admin = settings.admin_token or tokens.admin
    write_env(settings, tokens, admin)
    print(banner(settings, tokens, admin))
    return 0


def _sla(settings: Settings):  # type: ignore[no-untyped-def]
    from router.metrics import SLA
    from tierdesk.rules_file import load_routing_rules

    # Business hours as the routing rules have them now: a rebuild counts
    # the human tier's clocks by today's hours.
    return SLA(settings.sla_bot_seconds, settings.sla_human_seconds, settings.sla_human_first_response_seconds,
               hours=load_routing_rules(settings.routing_rules).hours())


def _metrics_rebuild(args: argparse.Namespace) -> int:
    from tierdesk.metrics_admin import rebuild

    settings = Settings.from_env()
    from tierdesk.progress import Progress

    with Progress(sys.stderr) as progress:
        n = asyncio.run(rebuild(settings.database_url, _sla(settings), progress=progress))
    print(f"rollups rebuilt from the events of {n} conversations")
    return 0


def _metrics_seed(args: argparse.Namespace) -> int:
    from storage.migrate import upgrade
    from tierdesk.metrics_admin import seed

    settings = Settings.from_env()
    upgrade(settings.database_url)
    from tierdesk.progress import Progress

    if args.history:
        from tierdesk.history_seed import seed_history

        if args.weeks < 1:
            raise InvalidInput("--weeks must be at least 1")
        from tierdesk.planning import day_start

        end = day_start(args.until) if args.until else None
        with Progress(prefix="") as progress:  # its lines are its report, on standard output
            result = asyncio.run(seed_history(settings.database_url, args.weeks, _sla(settings), seed=args.seed,
                                              end=end, progress=progress))
        print(result)
        return 0
    with Progress(sys.stderr) as progress:
        result = asyncio.run(seed(settings.database_url, args.messages, args.days, _sla(settings),
                                  progress=progress, seed_value=args.seed))
    print(f"seeded {result['seeded']:,} messages in {result['seconds']} s; "
          f"the database holds {result['messages']:,}")
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
    from classifier.text import normalize
    from tierdesk.faq_traffic import known_examples, missed_clusters, suggestion_yaml

    async def work(engines):  # type: ignore[no-untyped-def]
        since = time.time() - args.days * 86400
        repo = FaqRepository(engines)
        return await missed_clusters(repo, since), await repo.labels(since)

    (misses, clusters), labels = asyncio.run(_with_engines(work))
    labelled = {normalize(x.text): x.intent for x in labels if x.intent is not None}
    print(suggestion_yaml(clusters, min_size=args.min_size, top=args.top, misses=len(misses), days=args.days,
                          known=known_examples(Settings.from_env().knowledge_base), labelled=labelled), end="")
    return 0


def _labelled_traffic(days: float):  # type: ignore[no-untyped-def]
    import time

    from storage.faq import FaqRepository

    async def work(engines):  # type: ignore[no-untyped-def]
        return await FaqRepository(engines).labelled_traffic(time.time() - days * 86400)

    return asyncio.run(_with_engines(work))


def _faq_train(args: argparse.Namespace) -> int:
    """`faq train`, with --traffic: agents' labels of stored questions as more examples."""
    from classifier.cli import main_train

    if args.traffic is None:
        return main_train(args)
    from classifier.knowledge_base import load_knowledge_base
    from classifier.traffic import training_examples

    if not 0 < args.traffic <= 366:
        raise InvalidInput("--traffic must be a number of days in (0, 366]")
    texts, labels, warnings = training_examples(_labelled_traffic(args.traffic), load_knowledge_base(args.kb))
    print(f"labelled traffic of the last {args.traffic:g} days: {len(texts)} questions to train on")
    for warning in warnings:
        print(f"warning: {warning}")
    return main_train(args, extra=(texts, labels))


def _faq_eval(args: argparse.Namespace) -> int:
    """`faq eval`, with --traffic: the active model (or --version) on labelled stored traffic."""
    from classifier.cli import main_eval

    if args.traffic is None:
        return main_eval(args)
    import json

    from classifier.traffic import format_traffic, score_on_traffic
    from tierdesk.models import LiveModel

    if args.dataset:
        raise InvalidInput("--traffic measures on stored traffic; leave out --dataset")
    if not 0 < args.traffic <= 366:
        raise InvalidInput("--traffic must be a number of days in (0, 366]")
    settings = Settings.from_env()
    items = _labelled_traffic(args.traffic)

    model = LiveModel(settings.models_dir, settings.knowledge_base).load_version(args.version)
    report = score_on_traffic(model, items)
    print(format_traffic(report, args.traffic))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def _faq_shadow(args: argparse.Namespace) -> int:
    import json
    import time

    from storage.faq import FaqRepository
    from tierdesk.faq_traffic import format_shadow, shadow_run
    from tierdesk.models import LiveModel
    from tierdesk.progress import Progress

    settings = Settings.from_env()

    async def work(engines):  # type: ignore[no-untyped-def]
        repo = FaqRepository(engines)
        live = LiveModel(settings.models_dir, settings.knowledge_base)
        await live.load(await repo.answer_overrides())
        with Progress(sys.stderr) as progress:
            return await shadow_run(live, repo, args.version, time.time() - args.days * 86400, progress=progress)

    report = asyncio.run(_with_engines(work))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_shadow(report, days=args.days))
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


def _command(sub: argparse._SubParsersAction, name: str, summary: str, description: str = "",  # type: ignore[type-arg]
             ) -> argparse.ArgumentParser:
    """A subcommand with a one-line summary (in its parent's list) and a
    description (in its own help)."""
    return sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}."
                          + (f"\n\n{description}" if description else ""), formatter_class=HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierdesk", description=__doc__, formatter_class=HelpFormatter,
                                     epilog="Run `tierdesk COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"tierdesk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = _command(sub, "serve", "run the HTTP server", (
        "Migrates the database first (not in a worker of TIERDESK_WORKERS > 1: its supervisor did), then\n"
        "serves the API until SIGTERM or Ctrl-C."))
    serve.add_argument("--host", help="address to listen on (default: $TIERDESK_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $TIERDESK_PORT, else 8080)")
    serve.add_argument("--demo", action="store_true",
                       help="first set up the demo (database, model, a channel whose webhook is this "
                            "server's own demo inbox at /demo/inbox, three agents, a supervisor), print their "
                            "tokens and write them for a shell to var/demo.env")
    # How a worker of TIERDESK_WORKERS > 1 is started (tierdesk/workers.py).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-metrics-dir", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    _command(sub, "migrate", "bring the database to the current schema", (
        "Runs the Alembic migrations up to the newest on $TIERDESK_DATABASE_URL; running it again does\n"
        "nothing. `tierdesk serve` does this too on start.")).set_defaults(func=_migrate)
    _command(sub, "demo", "set up the demo channel, agents and model; print their tokens", (
        "What `tierdesk serve --demo` does before serving: migrate the database, train the demo model if\n"
        "there is none, create one channel, three agents and a supervisor (once; var/demo.json keeps\n"
        "their tokens, $TIERDESK_DEMO_DIR to keep them elsewhere), write var/demo.env for a shell, and\n"
        "print the tokens.")).set_defaults(func=_demo)
    metrics = _command(sub, "metrics", "maintain the metric rollups").add_subparsers(
        dest="metrics_command", required=True, metavar="COMMAND")
    _command(metrics, "rebuild", "recompute the hourly rollups from the event log", (
        "After changing an SLA (rollups count \"within SLA\" with the SLA in force when the reply came),\n"
        "or to repair them. Run it with the service stopped.")).set_defaults(func=_metrics_rebuild)
    seed = _command(metrics, "seed", "fill the database with synthetic traffic (for benchmarks) or history", (
        "Conversations of 1-4 customer messages over the last --days, 70% answered by the bot and the\n"
        "rest handed off to one of 40 agents; rollups are written as the service would. With --history,\n"
        "weeks of a staffed desk's handoffs instead, for `tierdesk simulate --from-db` and\n"
        "`tierdesk staffing`."))
    seed.add_argument("--messages", type=int, default=1_000_000, help="customer messages to write")
    seed.add_argument("--days", type=float, default=7.0, help="spread them over this many days before now")
    seed.add_argument("--history", action="store_true",
                      help="simulated handoffs of a staffed desk, up to the start of today (UTC)")
    seed.add_argument("--weeks", type=int, default=4, help="with --history: how many weeks")
    seed.add_argument("--until", metavar="YYYY-MM-DD", help="with --history: up to the start of that day "
                                                            "(default: today)")
    seed.add_argument("--seed", type=int, default=1, help="random seed (the same seed writes the same traffic)")
    seed.set_defaults(func=_metrics_seed)
    from tierdesk.planning import register as register_planning

    register_planning(sub, formatter_class=HelpFormatter)
    from classifier.cli import register

    faq = register(sub, formatter_class=HelpFormatter)
    faq_train, faq_eval = faq.choices["train"], faq.choices["eval"]
    faq_train.add_argument("--traffic", type=float, metavar="DAYS", default=None,
                           help="also train on the customer questions of the last DAYS days that agents "
                                "labelled (PUT /v1/faq/labels/{message_id}); reads the database")
    faq_train.set_defaults(func=_faq_train)
    faq_eval.add_argument("--traffic", type=float, metavar="DAYS", default=None,
                          help="instead of a dataset: precision and coverage of the active model (or "
                               "--version) on the labelled customer questions of the last DAYS days")
    faq_eval.add_argument("--version", default=None, help="with --traffic: the model version to measure")
    faq_eval.set_defaults(func=_faq_eval)
    misses = _command(faq, "misses", "questions the bot missed, clustered, biggest first", (
        "A miss is a question the bot was not confident enough to answer, an answer the customer\n"
        "rated down, or an answer after which the customer asked for a person."))
    misses.add_argument("--days", type=float, default=7.0, help="look back this many days")
    misses.set_defaults(func=_faq_misses)
    suggest = _command(faq, "suggest", "draft knowledge-base entries from the biggest miss clusters", (
        "Prints YAML to review and paste into the knowledge base. Only clusters of handed-off questions\n"
        "are drafted: not those too small, too short to be a question (\"hi\"), made of an existing\n"
        "intent's own examples or labelled by agents as one (that intent covers them), or answered by the\n"
        "bot and rejected (its answer is what needs work); the output says which and why."))
    suggest.add_argument("--days", type=float, default=7.0, help="look back this many days")
    suggest.add_argument("--min-size", type=int, default=2, help="draft only clusters of at least this many questions")
    suggest.add_argument("--top", type=int, default=10, help="draft at most this many entries")
    suggest.set_defaults(func=_faq_suggest)
    shadow = _command(faq, "shadow", "replay stored traffic through a candidate version vs the active one", (
        "What would change if VERSION went live: questions that would be answered instead of handed\n"
        "off and the reverse, different answers, and each model's precision where customers told us\n"
        "(a good rating or \"resolved\" confirms an answer; a thumbs-down rejects it)."))
    shadow.add_argument("version", help="the candidate model version (see `tierdesk faq versions`)")
    shadow.add_argument("--days", type=float, default=7.0, help="replay the customer messages of this many days")
    shadow.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    shadow.set_defaults(func=_faq_shadow)
    deliveries = _command(sub, "deliveries", "outbound deliveries to channel webhooks").add_subparsers(
        dest="deliveries_command", required=True, metavar="COMMAND")
    listing = _command(deliveries, "list", "list deliveries (dead letters by default)")
    listing.add_argument("--status", choices=("pending", "delivered", "dead"), default="dead",
                         help="which deliveries to list")
    listing.set_defaults(func=_deliveries_list)
    _command(deliveries, "replay", "put every dead letter back in line", (
        "Each is tried again from its first attempt, as soon as the delivery worker next looks.")
             ).set_defaults(func=_deliveries_replay)
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

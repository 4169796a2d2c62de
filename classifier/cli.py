"""`tierdesk faq ...` subcommands: train, eval, versions, activate, rollback.

``register(subparsers)`` attaches them to the main tierdesk parser; each
handler takes the parsed namespace and returns an exit code. Errors are
raised as TierdeskError subclasses and printed by tierdesk.cli.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from router.errors import InvalidInput

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _default_models_dir() -> Path:
    return Path(os.environ.get("TIERDESK_MODELS_DIR", PROJECT_ROOT / "models"))


def _default_kb() -> Path:
    return Path(os.environ.get("TIERDESK_KNOWLEDGE_BASE", PROJECT_ROOT / "knowledge_base"))


def _default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main_train(args: argparse.Namespace, extra: tuple[list[str], list[str]] | None = None) -> int:
    """``extra``: more (texts, intent ids) to train on, e.g. labelled traffic."""
    from tierdesk.progress import Progress

    from .training import train_and_save

    with Progress() as progress:
        version = train_and_save(
            args.kb,
            args.models_dir,
            activate=not args.no_activate,
            version=args.version,
            progress=progress,
            target_precision=args.target_precision,
            params=_embedding_params(args),
            unknown_share=args.unknown_share,
            extra=extra,
        )
    state = "active" if not args.no_activate else "not activated"
    print(f"model {version} saved in {args.models_dir} ({state})")
    return 0


def _embedding_params(args: argparse.Namespace) -> dict:
    if not getattr(args, "embeddings", False):
        if getattr(args, "embedding_weight", None) is not None:
            raise InvalidInput("--embedding-weight needs --embeddings")
        return {}
    from .embeddings import get_encoder

    get_encoder()  # fail now, with the install hint, if the extra is missing
    params: dict = {"embeddings": True}
    if args.embedding_weight is not None:
        params["embedding_weight"] = args.embedding_weight
    return params


def _add_embedding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embeddings", action="store_true",
                   help="append all-MiniLM-L6-v2 sentence embeddings to the TF-IDF features "
                        "(install them first: make embeddings)")
    p.add_argument("--embedding-weight", type=float, default=None,
                   help="scale of the embedding block (default: IntentClassifier's)")


def main_eval(args: argparse.Namespace) -> int:
    from tierdesk.progress import Progress

    with Progress() as progress:
        return _eval(args, progress)


def _eval(args: argparse.Namespace, progress: Callable[[str], None]) -> int:
    from .datasets import DATASET_NAMES, load_dataset

    if not args.dataset:
        raise InvalidInput("--dataset is required (or, with tierdesk's CLI, --traffic DAYS)")
    if args.unknown_intents or args.draws != 1:
        args.as_trained = True
    if args.as_trained:
        return _eval_as_trained(args, progress)
    from .evaluation import evaluate, evaluate_datasets, format_table, plot_curve, write_json

    names: list[str] = []
    for name in args.dataset:
        names.extend(DATASET_NAMES if name == "all" else [name])
    if args.workers < 1:
        raise InvalidInput(f"--workers must be >= 1, got {args.workers}")
    if args.embeddings_all_languages and not args.embeddings:
        raise InvalidInput("--embeddings-all-languages needs --embeddings")
    params = {**({"linear": args.linear} if args.linear else {}), **_embedding_params(args)} or None
    common = dict(
        target_precision=args.target_precision, params=params, progress=progress,
        refit_with_validation=args.refit, reweight_oos=not args.no_oos_reweight,
    )
    datasets = []
    for name in dict.fromkeys(n for n in names if n in DATASET_NAMES):
        progress(f"loading {name}")
        datasets.append(load_dataset(name, args.datasets_dir))
    reports_in_order = evaluate_datasets(
        datasets, workers=args.workers, **common,
        **({"embedding_languages": None} if args.embeddings_all_languages else {}),
    )
    by_name = {d.name: r for d, r in zip(datasets, reports_in_order)}
    # Knowledge bases (any other value) are evaluated here, one after the other.
    reports = [by_name[n] if n in by_name else evaluate(n, **common) for n in names]
    print()
    print(format_table(reports))
    print(
        "\nacc = in-scope accuracy (argmax); acc@t = counting rejected as wrong; "
        "oosRec = out-of-scope predicted as oos; oos@t = predicted oos or rejected; "
        f"prec@t/cov@t = precision and in-scope coverage at the threshold chosen on "
        f"validation for {args.target_precision:.0%} precision."
    )
    if args.out:
        write_json(reports[0] if len(reports) == 1 else reports, args.out)
        print(f"wrote {args.out}")
    if args.plot:
        plot_curve(reports, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _eval_as_trained(args: argparse.Namespace, progress: Callable[[str], None]) -> int:
    from .as_trained import average, evaluate_as_trained, format_as_trained
    from .datasets import DATASET_NAMES, load_dataset
    from .evaluation import write_json

    names: list[str] = []
    for name in args.dataset:
        names.extend(DATASET_NAMES if name == "all" else [name])
    unknown = [n for n in names if n not in DATASET_NAMES]
    if unknown:
        raise InvalidInput(f"--as-trained needs a dataset with a test split ({', '.join(DATASET_NAMES)}); "
                           f"not {', '.join(unknown)} (`faq train` prints a knowledge base's estimate)")
    if args.draws < 1:
        raise InvalidInput(f"--draws must be >= 1, got {args.draws}")
    params = {**({"linear": args.linear} if args.linear else {}), **_embedding_params(args)} or None
    reports = []
    for name in dict.fromkeys(names):
        progress(f"loading {name}")
        dataset = load_dataset(name, args.datasets_dir)
        for draw in range(args.draws if args.unknown_intents else 1):
            reports.append(evaluate_as_trained(
                dataset, unknown_intents=args.unknown_intents, draw=draw,
                target_precision=args.target_precision, unknown_share=args.unknown_share,
                params=params, progress=progress))
    print()
    print(format_as_trained(reports))
    print(
        "\nest = what `faq train` prints, from the training split alone (split-half estimate); test = "
        "measured on the test split. prec = precision of the bot's answers (an answer to an unknown "
        "intent's or out-of-scope sentence is wrong); cov = share of known in-scope questions answered; "
        f"unk = share of unknown intents' questions answered (est: simulated, {args.unknown_share:.0%} of "
        "traffic assumed); oos@t = out-of-scope answered; ECE over every test sentence (an unknown "
        "intent's is never right)."
    )
    if args.out:
        summary = {n: average([r for r in reports if r["dataset"] == n]) for n in dict.fromkeys(names)}
        write_json({"reports": reports, "mean": summary}, args.out)
        print(f"wrote {args.out}")
    if args.plot:
        from .calibration import plot_reliability

        plot_reliability(reports, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main_versions(args: argparse.Namespace) -> int:
    from .errors import ModelError

    from .artifact import ModelStore, read_metadata

    store = ModelStore(args.models_dir)
    versions = store.versions()
    if not versions:
        print(f"no models in {store.root}")
        return 0
    active = store.active_version()
    for version in versions:
        marker = "*" if version == active else " "
        try:
            meta = read_metadata(store.path(version))
            evaluation = meta.evaluation or {}
            cov = evaluation.get("coverage_at_thresholds")
            extra = f"  coverage {cov:.1%}" if isinstance(cov, (int, float)) else ""
            print(
                f"{marker} {version:<10} {meta.created_at}  kb {meta.kb_hash[:12]}  "
                f"{len(meta.classes)} intents  threshold {meta.thresholds.global_threshold:.3f}"
                f"{extra}"
            )
        except ModelError as exc:
            print(f"{marker} {version:<10} unusable: {exc.message}")
    return 0


def main_activate(args: argparse.Namespace) -> int:
    from .artifact import ModelStore

    ModelStore(args.models_dir).activate(args.version)
    print(f"activated {args.version}")
    return 0


def main_rollback(args: argparse.Namespace) -> int:
    from .artifact import ModelStore

    version = ModelStore(args.models_dir).rollback()
    print(f"rolled back to {version}")
    return 0


def register(subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
             formatter_class: Any = argparse.HelpFormatter) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """Add ``faq`` and its model commands; returns its subcommands, so the
    application can add the ones that need stored traffic."""

    def command(parent: argparse._SubParsersAction, name: str, summary: str,  # type: ignore[type-arg]
                description: str = "") -> argparse.ArgumentParser:
        return parent.add_parser(name, help=summary, formatter_class=formatter_class,
                                 description=f"{summary[0].upper()}{summary[1:]}."
                                 + (f"\n\n{description}" if description else ""))

    faq = command(subparsers, "faq", "train, evaluate and manage FAQ classifier models", (
        "The bot tier's classifier: models are trained from the knowledge base (YAML) into versioned\n"
        "directories under models/; the active one is named in models/ACTIVE, which a running server\n"
        "follows. docs/classifier.md has the details."))
    sub = faq.add_subparsers(dest="faq_command", required=True, metavar="COMMAND")

    def models_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--models-dir",
            type=Path,
            default=_default_models_dir(),
            help="model store root (default: $TIERDESK_MODELS_DIR or ./models)",
        )

    train = command(sub, "train", "train a model from a knowledge base and save a new version", (
        "Chooses the confidence threshold by cross-validation for --target-precision, fits on every\n"
        "example, saves the next version (v0001, v0002, ...) and activates it unless --no-activate."))
    train.add_argument(
        "kb",
        nargs="?",
        type=Path,
        default=_default_kb(),
        help="knowledge base YAML file or directory (default: $TIERDESK_KNOWLEDGE_BASE or ./knowledge_base)",
    )
    models_dir(train)
    train.add_argument("--target-precision", type=float, default=0.97,
                       help="precision the bot's answers should reach: the confidence threshold is chosen "
                            "for it (higher: fewer, surer answers; more handoffs)")
    train.add_argument("--unknown-share", type=float, default=0.2,
                       help="share of traffic assumed to be questions no intent covers, simulated by leaving "
                            "intents out of training (default 0.2; 0: not simulated)")
    train.add_argument("--version", help="version name (default: next vNNNN)")
    train.add_argument("--no-activate", action="store_true", help="save without activating")
    _add_embedding_options(train)
    train.set_defaults(func=main_train)

    ev = command(sub, "eval", "measure the classifier on a dataset or knowledge base", (
        "Prints one row per dataset: accuracy, out-of-scope recall, and the precision and coverage at\n"
        "the threshold chosen on validation for --target-precision."))
    ev.add_argument(
        "--dataset",
        action="append",
        help="clinc150, banking77, smp2017, all, or a knowledge base path (repeatable)",
    )
    ev.add_argument("--datasets-dir", type=Path, default=None,
                    help="folder with the datasets (default: $TIERDESK_DATASETS or ../shared/datasets)")
    ev.add_argument("--target-precision", type=float, default=0.97,
                    help="precision the threshold is chosen for on each dataset's validation split")
    ev.add_argument("--refit", action="store_true",
                    help="after choosing the threshold, refit on train+validation (what `faq train` does)")
    ev.add_argument("--no-oos-reweight", action="store_true",
                    help="choose the threshold on validation as is, without re-weighting its "
                         "out-of-scope share to the test traffic's (CLINC150)")
    ev.add_argument("--linear", choices=["auto", "logistic", "svm"], default=None,
                    help="linear model (default: IntentClassifier's default)")
    _add_embedding_options(ev)
    ev.add_argument("--embeddings-all-languages", action="store_true",
                    help="with --embeddings, use them on every dataset; by default the "
                         "English-only encoder is not used on SMP2017 (Chinese)")
    ev.add_argument("--workers", type=int, default=_default_workers(),
                    help="processes for the named datasets' model fits and sentence embeddings "
                         "(default: the CPUs available, here %(default)s; 1 = all in this process)")
    ev.add_argument("--as-trained", action="store_true",
                    help="choose thresholds as `faq train` does, from the training split alone, and show "
                         "its estimate next to the test measurement (--plot then draws reliability diagrams)")
    ev.add_argument("--unknown-intents", type=int, default=0, metavar="N",
                    help="with --as-trained: leave N intents out of training; their test sentences must be "
                         "handed off (questions no intent covers)")
    ev.add_argument("--draws", type=int, default=1,
                    help="with --unknown-intents: this many seeded draws of the intents left out (0, 1, ...)")
    ev.add_argument("--unknown-share", type=float, default=0.2,
                    help="with --as-trained: share of traffic `faq train` assumes to be questions no intent "
                         "covers (default 0.2)")
    ev.add_argument("--out", type=Path, help="write the full report as JSON")
    ev.add_argument("--plot", type=Path, help="write the precision/coverage curve as PNG")
    ev.set_defaults(func=main_eval)

    versions = command(sub, "versions", "list model versions (* = active)",
                       "With each: when it was trained, its knowledge base's hash, intents and threshold.")
    models_dir(versions)
    versions.set_defaults(func=main_versions)

    activate = command(sub, "activate", "make a saved version the active model", (
        "Writes models/ACTIVE; a running server follows within TIERDESK_MODEL_WATCH_SECONDS (2 s).\n"
        "`tierdesk faq train` activates what it trains already."))
    activate.add_argument("version", help="a version listed by `tierdesk faq versions`")
    models_dir(activate)
    activate.set_defaults(func=main_activate)

    rollback = command(sub, "rollback", "re-activate the previously active version")
    models_dir(rollback)
    rollback.set_defaults(func=main_rollback)
    return sub


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m classifier.cli faq ...``) for use
    without the rest of tierdesk's CLI."""
    from router.errors import TierdeskError

    parser = argparse.ArgumentParser(prog="classifier", description="FAQ classifier models.")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TierdeskError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

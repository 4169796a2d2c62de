"""README.md and docs/ name only what exists: every file path, every `make`
target and every `tierdesk` command they mention."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from tierdesk.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# The repository's top level: a path is checked when it starts with one of these.
TOP = sorted(p.name for p in ROOT.iterdir() if not p.name.startswith(".") or p.name == ".ci")
# Made at run time or by a command, not kept in the repository.
MADE = ("var/", "bench/results/", "models/v", "models/ACTIVE", ".venv/")
PATH = re.compile(r"(?<![\w./$-])((?:" + "|".join(re.escape(t) for t in TOP) + r")(?:/[\w.@-]+)*/?(?:::\w+)?)")
CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.S)
MAKE = re.compile(r"(?<![\w-])make ([a-z][\w-]*)")
# A command line: `tierdesk …`, `.venv/bin/tierdesk …`, after VAR=value
# assignments; up to a comment or a shell operator.
COMMAND = re.compile(r"^(?:[A-Z_]+=\S*\s+)*(?:\S*/)?tierdesk\s+([a-z][^#&|;>]*)")
# What a documented command line may leave open: an option named without its
# value, a placeholder (N, VERSION) where a number goes.
OPEN = ("the following arguments are required", "expected one argument",
        re.compile(r"invalid (int|float) value: '[A-Z_]+'"))


def _code(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in CODE.finditer(text)]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def named_paths(doc: Path) -> set[str]:
    text = doc.read_text()
    found = set(PATH.findall(text))
    # Links between documents: [metrics.md](metrics.md).
    found |= {f"{doc.parent.relative_to(ROOT)}/{m}".removeprefix("./")
              for m in re.findall(r"\]\(([\w./-]+\.\w+)(?:#[\w-]*)?\)", text) if "/" not in m}
    return {p.rstrip(".,") for p in found if p.rstrip(".,") not in TOP or p.endswith("/")}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_named_exists(doc: Path) -> None:
    missing = []
    for path in sorted(named_paths(doc)):
        clean, _, test = path.partition("::")
        if clean.startswith(MADE) or "…" in clean:
            continue
        if not (ROOT / clean).exists() or (test and f"def {test}(" not in (ROOT / clean).read_text()):
            missing.append(path)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_named_exists(doc: Path) -> None:
    targets = _make_targets()
    named = {t for chunk in _code(doc.read_text()) for t in MAKE.findall(chunk)}
    assert named - targets == set(), f"{doc.name} names make targets the Makefile lacks"


def _check_command(words: list[str]) -> str | None:
    """None if `tierdesk WORDS` is a command line the CLI accepts (its
    required arguments may be left out); else argparse's complaint."""
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(words)
    except SystemExit as exit_:
        complaint = err.getvalue().strip().splitlines()[-1:] or [""]
        if exit_.code == 0 or any(o.search(complaint[0]) if isinstance(o, re.Pattern) else o in complaint[0]
                                  for o in OPEN):
            return None
        return complaint[0]
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_tierdesk_command_named_exists(doc: Path) -> None:
    bad = []
    for chunk in _code(doc.read_text()):
        for line in chunk.replace("\\\n", " ").splitlines():
            line = re.sub(r"\$\([^)]*\)", "X", line.strip())  # a command substitution: one value
            for m in COMMAND.finditer(line):
                try:
                    words = shlex.split(m.group(1))
                except ValueError:
                    words = m.group(1).split()
                # Placeholders (VERSION, v0002, …) are fine where an argument goes.
                problem = _check_command([w for w in words if w != "…"])
                if problem:
                    bad.append(f"tierdesk {m.group(1).strip()}: {problem}")
    assert not bad, f"{doc.name} names tierdesk commands that do not exist:\n" + "\n".join(bad)


def test_the_checks_catch_what_they_are_for() -> None:
    assert _check_command(["faq", "misses", "/", "suggest"]) is not None  # README before 2026-12
    assert _check_command(["faq", "suggest", "--min-size", "1"]) is None
    assert _check_command(["faq", "eval"]) is None  # --dataset left out: a command all the same
    assert _check_command(["metrics", "reseed"]) is not None
    assert _check_command(["staffing", "--verify-days", "N"]) is None
    assert COMMAND.match("TIERDESK_PORT=8081 .venv/bin/tierdesk serve &").group(1).strip() == "serve"
    assert COMMAND.match("(2) tierdesk console") is None
    assert "test" in _make_targets() and "serve" in _make_targets()
    assert isinstance(build_parser(), argparse.ArgumentParser)
    assert "router/metrics.py" in PATH.findall("see `router/metrics.py`, and docs/")

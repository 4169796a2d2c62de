"""README.md's walk-through, run as written against `tierdesk serve --demo`.

The block under "A walk through with curl" is run by bash, command after
command, in a directory laid out as the project's root is after `make
serve` (var/demo.env). Each `# {…}` line under a command is the response
README promises for it, `…` standing for what differs from run to run;
the command's output must match it whole. So README cannot drift from what
tierdesk does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.models import copy_store
from tests.support.server import ROOT, Server, free_port

README = ROOT / "README.md"
SECTION = "## A walk through with curl"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)  # one pattern per `# {…}` line


def walkthrough() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, "README's walk-through has no ```sh block"
    return block.group(1)


def steps(block: str) -> list[Step]:
    out: list[Step] = []
    pending: list[str] = []
    for line in block.splitlines():
        if pending:
            pending.append(line)
            if not line.endswith("\\"):
                out.append(Step("\n".join(pending)))
                pending = []
        elif line.startswith(("# {", "# [")):
            assert out, f"a response with no command before it: {line}"
            out[-1].expected.append(line[2:])
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        elif line.endswith("\\"):
            pending = [line]
        else:
            out.append(Step(line))
    assert not pending, "README's walk-through ends inside a command"
    return out


def pattern(expected: str) -> re.Pattern[str]:
    """`…` matches anything (the shortest run that fits); the rest is literal."""
    return re.compile(".*?".join(re.escape(part) for part in expected.split("…")), re.S)


def test_the_walkthrough_is_parsed_as_commands_and_responses() -> None:
    parsed = steps(walkthrough())
    assert parsed[0].command.startswith(". var/demo.env")
    assert sum(len(s.expected) for s in parsed) >= 10
    assert pattern('{"a":…,"b":2}').fullmatch('{"a":{"x":1},"b":2}')
    assert not pattern('{"a":…,"b":2}').fullmatch('{"a":1,"b":3}')


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo_store: Path) -> Path:
    return copy_store(demo_store, tmp_path_factory.mktemp("readme") / "models")


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path, models: Path) -> None:
    for tool in ("bash", "curl"):
        assert shutil.which(tool), f"README's walk-through needs {tool}"
    # A project root as `make serve` leaves it: the demo under var/.
    root = tmp_path / "project"
    (root / "var").mkdir(parents=True)
    shutil.copytree(models, root / "models")
    server = Server(f"sqlite:///{root / 'var' / 'tierdesk.db'}", root / "models", free_port(), tmp_path / "server.log",
                    args=["--demo"], cwd=root, TIERDESK_DEMO_DIR=str(root / "var"), TIERDESK_LOG_FORMAT="console")
    server.start()
    try:
        banner = server.log.read_text()
        assert "supervisor token:" in banner and '. var/demo.env' in banner
        assert 'follow README.md, "A walk through with curl"' in banner
        parsed = steps(walkthrough())
        script = ["set -euo pipefail"]
        for n, step in enumerate(parsed):
            script += [step.command, f"printf '\\n@@step {n}@@\\n'"]
        run = subprocess.run(["bash", "-c", "\n".join(script)], cwd=root, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, (run.stdout, run.stderr)
        outputs = re.split(r"\n@@step \d+@@\n", run.stdout)
        assert len(outputs) == len(parsed) + 1 and outputs[-1] == ""
        for step, output in zip(parsed, outputs, strict=False):
            if not step.expected:
                continue
            got = output.strip().splitlines()
            assert len(got) == len(step.expected), (step.command, output)
            for line, expected in zip(got, step.expected, strict=True):
                assert pattern(expected).fullmatch(line), f"\n$ {step.command}\n{line}\nREADME says:\n{expected}"
    finally:
        server.stop()

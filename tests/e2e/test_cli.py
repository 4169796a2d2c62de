"""The `tierdesk` command as an operator runs it, against a database the
service has written to."""

from __future__ import annotations

import argparse
import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def tierdesk(db_url: str, *args: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tierdesk.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TIERDESK_DATABASE_URL": db_url, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


async def test_misses_suggest_rebuild_and_deliveries(app_client, db_url: str) -> None:
    api = app_client
    t0 = api.clock.now()
    for i, q in enumerate(["do you sponsor football teams", "can your company sponsor my football club",
                           "football team sponsorship request"]):
        await api.send(f"q{i}", q, message_id=f"q{i}")
    await api.send("b", "how do I reset my password", message_id="b1")
    await api.call("POST", "/v1/conversations/b/feedback", api.channel_token, json={"rating": 1})
    await api.send("g", "hi", message_id="g1")
    api.clock.advance(7200)

    out = tierdesk(db_url, "faq", "misses", "--days", "3650")
    assert out.startswith("5 missed questions")
    [football] = [line for line in out.splitlines() if "football" in line]
    assert football.split()[0] == "3" and "low_confidence 3" in football

    text = tierdesk(db_url, "faq", "suggest", "--days", "3650")
    draft = yaml.safe_load(text)
    [entry] = draft["intents"]
    assert len(entry["examples"]) == 3 and all("football" in e for e in entry["examples"])
    # The thumbs-down and the greeting, one question each, are below --min-size, and said so.
    assert "# 5 missed questions in the last 3650 days, 3 clusters: 1 drafted." in text
    assert "2 clusters smaller than --min-size 2 (the largest: 1 question)" in text

    # With --min-size 1 the answer a customer rated down is not drafted as a
    # copy of its own intent, nor a greeting as an FAQ entry: both explained.
    text = tierdesk(db_url, "faq", "suggest", "--days", "3650", "--min-size", "1")
    [entry] = yaml.safe_load(text)["intents"]
    assert all("football" in e for e in entry["examples"])
    assert "already examples of intent reset_password; review its answer or threshold instead" in text
    assert "like 'hi': too short to be an FAQ question" in text

    params = {"from": iso(t0), "to": iso(t0 + 3600)}
    before = await api.admin("GET", "/v1/metrics", params=params)
    assert before["source"] == "rollups" and before["groups"][0]["human"]["messages"] == 4
    out = tierdesk(db_url, "metrics", "rebuild")
    assert "rollups rebuilt from the events of 5 conversations" in out
    after = await api.admin("GET", "/v1/metrics", params=params)
    assert after == before

    assert tierdesk(db_url, "deliveries", "list").strip().endswith("0 dead deliveries")
    assert "0 dead letters put back in line" in tierdesk(db_url, "deliveries", "replay")


def test_migrate_is_idempotent(db_url: str) -> None:
    assert "database at head" in tierdesk(db_url, "migrate")
    assert "database at head" in tierdesk(db_url, "migrate")


def test_bad_settings_are_refused_with_a_clear_message(db_url: str) -> None:
    result = subprocess.run([sys.executable, "-m", "tierdesk.cli", "migrate"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "TIERDESK_DATABASE_URL": db_url, "TIERDESK_PORT": "eighty"})
    assert result.returncode == 2
    assert "TIERDESK_PORT='eighty' is not a valid int" in result.stderr


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    """Every parser of the command, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_command_and_option_explains_itself() -> None:
    from tierdesk.cli import build_parser

    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 15
    for path, parser in parsers:
        where = " ".join(("tierdesk", *path))
        assert parser.description and len(parser.description) > 20, where
        text = parser.format_help()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, (where, action.dest)
            # An option with a default says it.
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert f"default: {action.default}" in " ".join(text.split()) or "default" in action.help, (
                    where, action.dest)
    top = build_parser().format_help()
    assert "The `tierdesk` command." not in top and "middleware between customer chat channels" in top
    serve = dict(parsers)[("serve",)].format_help()
    assert "$TIERDESK_HOST" in serve and "$TIERDESK_PORT" in serve
    for path, option in [(("faq", "misses"), "--days"), (("faq", "suggest"), "--min-size"),
                         (("faq", "train"), "--target-precision")]:
        assert option in dict(parsers)[path].format_help()
    # As an operator sees it.
    out = subprocess.run([sys.executable, "-m", "tierdesk.cli", "faq", "suggest", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60).stdout
    assert "(default: 2)" in out and "(default: 7.0)" in out


def test_suggest_with_nothing_missed_says_so(db_url: str) -> None:
    tierdesk(db_url, "migrate")
    text = tierdesk(db_url, "faq", "suggest")
    assert yaml.safe_load(text) == {"intents": []}
    assert "# 0 missed questions in the last 7 days, 0 clusters: 0 drafted." in text
    assert "# Nothing to draft: no missed questions." in text


def test_embeddings_hint_names_the_make_target() -> None:
    from classifier.embeddings import EXTRA_HINT

    assert EXTRA_HINT == "make embeddings"
    assert "make embeddings" in subprocess.run(
        [sys.executable, "-m", "tierdesk.cli", "faq", "train", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=60).stdout


async def test_shadow_prints_a_table_and_json_on_request(aiohttp_client, db_url: str, clock, tmp_path,
                                                         demo_store) -> None:
    from tests.support.api import Api
    from tests.support.models import copy_store

    models = copy_store(demo_store, tmp_path / "models", versions=2)
    api = await Api.start_deployed(aiohttp_client, db_url=db_url, clock=clock, models=models)
    await api.send("a", "how do I reset my password", message_id="a1")
    await api.call("POST", "/v1/conversations/a/feedback", api.channel_token, json={"rating": 5})
    await api.send("b", "do you sponsor football teams", message_id="b1")
    env = {"TIERDESK_MODELS_DIR": str(models)}

    table = tierdesk(db_url, "faq", "shadow", "v0002", "--days", "3650", **env)
    lines = table.splitlines()
    assert lines[0] == ("candidate v0002 against the live v0001 over the last 3650 days: 2 customer messages, "
                        "1 with a known outcome")
    [precision] = [line for line in lines if line.startswith("precision (right / judged)")]
    assert precision.split()[-2:] == ["100.0%", "100.0%"]
    assert any(line.startswith("would change: ") for line in lines)

    report = json.loads(tierdesk(db_url, "faq", "shadow", "v0002", "--days", "3650", "--json", **env))
    assert report["messages"] == 2 and report["live"]["version"] == "v0001"
    assert report["candidate"]["precision"] == 1.0


async def test_long_jobs_show_a_bar_on_a_terminal_and_lines_elsewhere(app_client, db_url: str) -> None:
    api = app_client
    for i in range(3):
        await api.send(f"c{i}", "how do I reset my password", message_id=f"m{i}")
    env = {**os.environ, "TIERDESK_DATABASE_URL": db_url}
    piped = subprocess.run([sys.executable, "-m", "tierdesk.cli", "metrics", "rebuild"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "  … rebuilt 3/3 conversations\n" in piped.stderr and "\r" not in piped.stderr

    # On a terminal: a tqdm bar (carriage returns, a percentage, n/total).
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tierdesk.cli", "metrics", "rebuild"], cwd=ROOT, env=env,
                            stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(300) == 0, seen
    text = seen.decode(errors="replace")
    assert "rebuilt conversations 100%|" in text and "3/3" in text
    assert "rollups rebuilt from the events of 3 conversations" in text

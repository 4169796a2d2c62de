"""The `tierdesk` command as an operator runs it, against a database the
service has written to."""

from __future__ import annotations

import os
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
    api.clock.advance(7200)

    out = tierdesk(db_url, "faq", "misses", "--days", "3650")
    assert out.startswith("4 missed questions")
    [football] = [line for line in out.splitlines() if "football" in line]
    assert football.split()[0] == "3" and "low_confidence 3" in football

    draft = yaml.safe_load(tierdesk(db_url, "faq", "suggest", "--days", "3650"))
    [entry] = draft["intents"]
    assert len(entry["examples"]) == 3 and all("football" in e for e in entry["examples"])

    params = {"from": iso(t0), "to": iso(t0 + 3600)}
    before = await api.admin("GET", "/v1/metrics", params=params)
    assert before["source"] == "rollups" and before["groups"][0]["human"]["messages"] == 3
    out = tierdesk(db_url, "metrics", "rebuild")
    assert "rollups rebuilt from the events of 4 conversations" in out
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

"""`tierdesk metrics seed --history`, `tierdesk simulate` and `tierdesk
staffing` as an operator runs them, and GET /v1/staffing, on both databases."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cli import tierdesk
from tests.support.api import Api

ROOT = Path(__file__).resolve().parents[2]


async def test_seeded_history_replays_and_forecasts(app_client: Api, db_url: str, tmp_path: Path) -> None:
    api = app_client  # its clock: 2026-01-01T00:00Z
    out = tierdesk(db_url, "metrics", "seed", "--history", "--weeks", "2", "--until", "2026-01-01")
    seeded = ast.literal_eval(out.strip().splitlines()[-1])  # the command prints a dict
    assert seeded["from"] == "2025-12-18" and seeded["to"] == "2026-01-01" and seeded["seeded"] > 5000
    assert "already seeded" in tierdesk(db_url, "metrics", "seed", "--history", "--weeks", "2", "--until",
                                        "2026-01-01")

    # The stored traffic replayed through the router, each chooser on the same arrivals.
    sim_json, plots = tmp_path / "sim.json", tmp_path / "plots"
    text = tierdesk(db_url, "simulate", "--from-db", "--until", "2026-01-01", "--days", "14", "--chooser", "all",
                    "--json", str(sim_json), "--plots", str(plots))
    sim = json.loads(sim_json.read_text())
    assert sim["source"]["handoffs"] == seeded["seeded"] and sim["source"]["roster"] == "history"
    assert set(sim["results"]) == {"least-loaded", "round-robin", "random"}
    for r in sim["results"].values():
        assert r["offered"] == seeded["seeded"] and r["answered"] + r["abandoned"] + r["unanswered"] == r["offered"]
        assert 0.5 < r["service_level"] <= 1 and r["violations"] == 0
        assert set(r["skills"]) == {"billing", "general", "tech"}
        assert r["queue"]["samples"] and r["occupancy"]["per_agent"]
    assert "least-loaded" in text and "SL 20s" in text
    assert sorted(p.name for p in plots.iterdir()) == ["occupancy.png", "queue_length.png", "waits.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())

    # The forecast for the last day of history (a Wednesday), by the CLI and over HTTP.
    st_json, chart = tmp_path / "staffing.json", tmp_path / "week.png"
    text = tierdesk(db_url, "staffing", "--date", "2025-12-31", "--json", str(st_json), "--chart", str(chart),
                    "--verify-days", "20")
    cli = json.loads(st_json.read_text())
    assert cli["weekday"] == "Wednesday" and cli["history"]["days"] == ["2025-12-24"]
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert "Staffing for Wednesday 2025-12-31" in text and "Simulated 20 days" in text
    verification = cli.pop("verification")
    assert verification["share"] >= 0.9, verification
    http = await api.admin("GET", "/v1/staffing", params={"date": "2025-12-31"})
    assert http == cli
    # History's agents held up to three conversations at once.
    assert http["target"]["concurrency"] == 3
    assert {s["skill"] for s in http["skills"]} == {"billing", "general", "tech"}
    peak = http["slots"][42]  # 10:30
    assert peak["agents"] >= 3 and peak["scheduled"] > peak["agents"]
    assert peak["actual"]["agents"] >= 3 and peak["actual"]["offered"] > 10
    assert all(v["service_level"] >= 0.8 for row in http["slots"] for v in row["skills"].values())
    # Asked for one conversation at a time, the desk needs more agents.
    single = await api.admin("GET", "/v1/staffing", params={"date": "2025-12-31", "concurrency": "1"})
    assert single["slots"][42]["agents"] > peak["agents"]

    # A day with no history before it: nothing to staff for, said plainly.
    empty = await api.admin("GET", "/v1/staffing", params={"date": "2025-12-01"})
    assert empty["history"]["days"] == [] and empty["skills"] == [] and empty["slots"][0]["agents"] == 0


async def test_staffing_refuses_bad_queries(app_client: Api) -> None:
    api = app_client
    for params in ({}, {"date": "31/12/2025"}, {"date": "2025-12-32"}, {"date": "1969-12-31"},
                   {"date": "2025-12-31", "weeks": "0"}, {"date": "2025-12-31", "weeks": "two"},
                   {"date": "2025-12-31", "service_level": "1"}, {"date": "2025-12-31", "service_level": "nan"},
                   {"date": "2025-12-31", "within": "0"}, {"date": "2025-12-31", "within": "inf"},
                   {"date": "2025-12-31", "concurrency": "1.5"}, {"date": "2025-12-31", "shrinkage": "0.95"},
                   {"date": "2025-12-31", "first_response": "-1"}, {"date": "2025-12-31", "skill": "billing"}):
        body = await api.admin("GET", "/v1/staffing", params=params, expect=422)
        assert body["error"]["code"] == "validation_failed", (params, body)


def test_simulate_a_synthetic_desk() -> None:
    def run(*args: str) -> dict:
        result = subprocess.run([sys.executable, "-m", "tierdesk.cli", "simulate", *args, "--json", "-"], cwd=ROOT,
                                capture_output=True, text=True, timeout=300, env=dict(os.environ))
        assert result.returncode == 0, result.stderr
        assert "conversations in" in result.stderr  # the CPU it took
        return json.loads(result.stdout[result.stdout.index("{"):])

    args = ("--agents", "6", "--skills", "billing,tech,general", "--skills-per-agent", "2", "--capacity", "2",
            "--conversations", "20000", "--handle-dist", "lognormal", "--handle-cv", "1.5", "--patience", "300",
            "--profile", "daily", "--vip-share", "0.1")
    first, again = run(*args), run(*args)
    assert first == again  # seeded
    r = first["results"]["least-loaded"]
    assert first["source"]["offered_load"] == 0.85 and r["conversations"] == 20000
    assert r["abandoned"] > 0 and r["vip"]["offered"] > 0 and set(r["skills"]) == {"billing", "tech", "general"}
    bad = subprocess.run([sys.executable, "-m", "tierdesk.cli", "simulate", "--skills-per-agent", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--skills-per-agent" in bad.stderr

"""`tierdesk serve` installs the collector's policy (tierdesk/heap.py): its
reclaims run on schedule and show on /metrics, as does the event loop's
longest step (tierdesk/loop_watch.py), which those reclaims lengthen."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.models import copy_store
from tests.support.server import Server, free_port


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.finditer(r"^(tierdesk_(?:gc|loop)_[a-z_]+) (\S+)$", text, re.M)
    return {m.group(1): float(m.group(2)) for m in found}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo_store: Path) -> Path:
    return copy_store(demo_store, tmp_path_factory.mktemp("heap") / "models")


@pytest.fixture
def serve(tmp_path: Path, models: Path) -> Iterator[Callable[..., Server]]:
    from storage.migrate import upgrade

    started: list[Server] = []

    def start(**env: str) -> Server:
        db = f"sqlite:///{tmp_path / f'heap{len(started)}.db'}"
        upgrade(db)
        server = Server(db, models, free_port(), tmp_path / "server.log", **env)
        started.append(server)
        server.start()
        return server

    yield start
    for s in started:
        s.stop()


def test_reclaims_run_on_schedule(serve: Callable[..., Server]) -> None:
    server = serve(TIERDESK_GC_RECLAIM_SECONDS="0.2")
    deadline = time.monotonic() + 20
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = scrape(server.url)
        if seen.get("tierdesk_gc_reclaims_total", 0) >= 2:
            break
        time.sleep(0.2)
    assert seen.get("tierdesk_gc_reclaims_total", 0) >= 2, seen
    assert seen["tierdesk_gc_frozen_objects"] > 10_000  # the model and the working set, at least
    assert seen["tierdesk_gc_reclaim_duration_seconds_count"] >= 2
    assert seen["tierdesk_loop_longest_step_cpu_seconds"] > 0


def test_the_policy_can_be_turned_off(serve: Callable[..., Server]) -> None:
    server = serve(TIERDESK_GC_FREEZE_SURVIVORS="false", TIERDESK_GC_RECLAIM_SECONDS="0.2")
    time.sleep(1.0)
    seen = scrape(server.url)
    assert "tierdesk_gc_reclaims_total" not in seen  # no reclaim has run: the counter has no series yet
    assert seen["tierdesk_gc_frozen_objects"] > 0  # the start-up freeze still happens

"""`/metrics` with TIERDESK_WORKERS > 1: every worker's series, whichever
worker the kernel hands the scrape to.

The workers share one port (SO_REUSEPORT), so a scrape cannot choose its
worker, and each worker's counters alone would jump from one worker's to
another's between scrapes (a counter going down reads as a restart to
Prometheus). So each worker labels its series with its number
(``worker="0"``…), publishes them every second to a directory its
supervisor made for the run (tierdesk/workers.py), and answers a scrape
with its own series and the others' latest. Sum them with
``sum without (worker) (...)``. A worker that is restarted keeps its
number: its series go on under the same labels, from zero, which
Prometheus reads as the restart it is.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import structlog

from .prom import Families

log = structlog.get_logger(__name__)

PUBLISH_SECONDS = 1.0


class WorkerMetrics:
    def __init__(self, directory: str | Path, index: int) -> None:
        self.directory = Path(directory)
        self.index = index
        self._file = self.directory / f"worker-{index}.json"

    async def publish(self, families: Families) -> None:
        await asyncio.to_thread(self._write, orjson.dumps(families))

    def _write(self, data: bytes) -> None:
        # Written aside and renamed: a reader sees the old file or the new
        # one, never half of one.
        part = self.directory / f".worker-{self.index}.part"
        part.write_bytes(data)
        os.replace(part, self._file)

    async def others(self) -> list[Families]:
        return await asyncio.to_thread(self._read_others)

    def _read_others(self) -> list[Families]:
        out = []
        for path in sorted(self.directory.glob("worker-*.json")):
            if path == self._file:
                continue
            try:
                out.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError) as exc:
                # Its worker is being replaced, or the run is ending: the
                # next scrape sees it again.
                log.warning("worker_metrics_unreadable", path=str(path), error=repr(exc))
        return out

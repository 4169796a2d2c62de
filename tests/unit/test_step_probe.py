"""bench/step_probe.py: the steps of an event loop, each timed in CPU, by name."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from step_probe import install  # noqa: E402


def burn(cpu_seconds: float) -> None:
    end = time.thread_time() + cpu_seconds
    while time.thread_time() < end:
        pass


async def slow_coroutine() -> None:
    await asyncio.sleep(0)
    burn(0.03)  # one step of 30 ms of CPU, after the first await


def test_the_longest_step_is_named_and_timed_in_cpu(tmp_path: Path) -> None:
    out = tmp_path / "steps.json"
    probe, remove = install(str(out), dump_every=None)
    try:
        probe.recording = True

        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.call_soon(burn, 0.015)
            await asyncio.create_task(slow_coroutine())
            for _ in range(50):
                await asyncio.sleep(0)

        asyncio.run(main())
    finally:
        remove()
    probe.dump()
    report = json.loads(out.read_text())
    first, second = report["slowest"][:2]
    assert first["what"].startswith("task slow_coroutine") and 30 <= first["cpu_ms"] < 40
    assert second["what"] == "callback burn" and 15 <= second["cpu_ms"] < 25
    assert report["steps"] >= 52 and sum(report["histogram"].values()) == report["steps"]
    assert report["histogram"]["<= 50 ms"] == 1 and report["histogram"]["<= 20 ms"] == 1


def test_steps_before_recording_starts_are_not_counted(tmp_path: Path) -> None:
    probe, remove = install(str(tmp_path / "steps.json"), dump_every=None)
    try:
        asyncio.run(slow_coroutine())
    finally:
        remove()
    assert probe.steps == 0 and probe.slowest == []


def test_the_reports_of_several_processes_read_as_one(tmp_path: Path) -> None:
    from steps import read_probe

    def report(name: str, steps: int, slowest: list[float]) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({
            "steps": steps, "histogram": {"<= 0.1 ms": steps - len(slowest), "<= 10 ms": len(slowest)},
            "slowest": [{"cpu_ms": ms, "gc_ms": 0.0, "what": f"{name} step", "at_s": 1.0} for ms in slowest]}))
        return path

    merged = read_probe([report("one", 100, [4.0, 1.5]), report("two", 50, [6.5, 0.5])])
    assert merged["processes"] == 2 and merged["steps_timed"] == 150
    assert merged["longest_step_ms"] == 6.5 and merged["slowest"][0]["what"] == "two step"
    assert [s["cpu_ms"] for s in merged["slowest"]] == [6.5, 4.0, 1.5, 0.5]
    assert merged["histogram_ms"] == {"<= 0.1 ms": 146, "<= 10 ms": 4}

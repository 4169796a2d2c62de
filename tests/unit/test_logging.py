"""Request context in log lines: bound per request, never leaking across requests."""

from __future__ import annotations

import asyncio
import json

import pytest
import structlog

from tierdesk.logging import begin_request, bind, configure


@pytest.fixture(autouse=True)
def _restore_structlog():
    # configure() binds the logger to this test's captured stderr.
    yield
    structlog.reset_defaults()


def _lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_lines_carry_the_request_context(capsys) -> None:
    configure("info", "json")
    log = structlog.get_logger("t")

    async def request(rid: str, channel: str) -> None:
        begin_request(request_id=rid)
        await asyncio.sleep(0)  # interleave the two requests
        bind(channel=channel)
        await asyncio.sleep(0)
        log.info("handled", step=rid)

    async def both() -> None:
        await asyncio.gather(asyncio.create_task(request("r1", "web")),
                             asyncio.create_task(request("r2", "app")))

    asyncio.run(both())
    lines = {line["step"]: line for line in _lines(capsys.readouterr().err)}
    assert (lines["r1"]["request_id"], lines["r1"]["channel"]) == ("r1", "web")
    assert (lines["r2"]["request_id"], lines["r2"]["channel"]) == ("r2", "app")


def test_explicit_fields_win_and_no_context_adds_nothing(capsys) -> None:
    configure("info", "json")
    log = structlog.get_logger("t")

    async def run() -> None:
        begin_request(request_id="r1", channel="web")
        log.info("explicit", channel="override")

    asyncio.run(run())

    async def outside() -> None:
        log.info("bare")

    asyncio.run(outside())
    lines = {line["event"]: line for line in _lines(capsys.readouterr().err)}
    assert lines["explicit"]["channel"] == "override"
    assert lines["explicit"]["request_id"] == "r1"
    assert "request_id" not in lines["bare"]


def test_filtered_levels_write_nothing(capsys) -> None:
    configure("warning", "json")
    structlog.get_logger("t").info("quiet")
    assert _lines(capsys.readouterr().err) == []

"""Requests and responses on the wire, shared by every handler (the
channels' too): JSON bodies, ISO 8601 times, the checks every input gets."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from tierdesk.errors import InvalidInput

from . import keys


def json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# Times a request may name: 1970-01-01 to 9999-12-31 (what a date can show);
# outside it, or not a number at all (nan, inf), is a bad request.
LATEST_TIME = 253402300799.0


def parse_time(value: str | float | None, name: str) -> float | None:
    if value is None:
        return None
    t: float | None = None
    if isinstance(value, (int, float)):
        t = float(value)
    else:
        try:
            t = float(value)  # epoch seconds, as a query string carries them
        except ValueError:
            try:
                dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=UTC)
                t = dt.timestamp()
            except (ValueError, OverflowError):
                raise InvalidInput(f"{name} must be an ISO 8601 time or epoch seconds",
                                   code="validation_failed") from None
    if not (math.isfinite(t) and 0.0 <= t <= LATEST_TIME):
        raise InvalidInput(f"{name} must be a time between 1970-01-01 and 9999-12-31", code="validation_failed")
    return t


def check_text(request: web.Request, text: str) -> str:
    if not text.strip():
        raise InvalidInput("text must not be empty", code="empty_text")
    limit = request.app[keys.SETTINGS].max_text_bytes
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise InvalidInput(f"text is longer than {limit} bytes", code="text_too_long")
    return text


async def body(request: web.Request) -> bytes:
    return await request.read()


def only_params(request: web.Request, *allowed: str) -> None:
    unknown = set(request.query) - set(allowed)
    if unknown:
        raise InvalidInput(f"unknown query parameter(s): {', '.join(sorted(unknown))}", code="validation_failed")

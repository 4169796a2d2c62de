"""structlog set-up: configured once at start-up, JSON in production.

Request context (request id, channel, conversation, agent) is bound per
request and merged into every line the request logs. It lives in one
ContextVar holding a dict, set once per request: structlog's own
``bind_contextvars`` creates a ContextVar per key and per call, which cost 4%
of the CPU of a message request under load (py-spy, before 11feaec).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import structlog

_request_context: ContextVar[dict[str, Any] | None] = ContextVar("tierdesk_request_context", default=None)


def begin_request(**fields: Any) -> None:
    """Start a fresh context for the request being handled (in its own task,
    so the context cannot leak into another request)."""
    _request_context.set(fields)


def bind(**fields: Any) -> None:
    """Add fields to the current request's context."""
    ctx = _request_context.get()
    if ctx is None:
        _request_context.set(fields)
    else:
        ctx.update(fields)


def merge_request_context(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    ctx = _request_context.get()
    if ctx:
        for key, value in ctx.items():
            event_dict.setdefault(key, value)
    return event_dict


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            merge_request_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )

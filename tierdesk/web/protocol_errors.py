"""Requests aiohttp's HTTP parser refuses get the API's JSON error body too.

A request line or header over the parser's limits, a malformed request
line, a bad chunk: aiohttp answers these itself, before any application
code or middleware runs, with a plain-text page. Clients of this API parse
``{"error": {"code", "message"}}`` on every 4xx, so the parser's answers
are given that shape as well. aiohttp has no public hook for it; its
protocol's ``handle_error`` is wrapped once per process.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web, web_protocol
from aiohttp.http_exceptions import LineTooLong

_CODES = {400: "bad_request", 413: "payload_too_large", 414: "uri_too_long", 431: "headers_too_large"}
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    original = web_protocol.RequestHandler.handle_error

    def handle_error(self: Any, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        response = original(self, request, status, exc, message)
        if response.status >= 500:
            return response
        if isinstance(exc, LineTooLong):
            text = "the request line or a header is longer than the server accepts (8190 bytes)"
        else:
            try:
                phrase = HTTPStatus(response.status).phrase
            except ValueError:
                phrase = "Bad Request"
            text = f"{phrase}: the HTTP request could not be parsed ({type(exc).__name__ if exc else 'malformed'})"
        body = {"error": {"code": _CODES.get(response.status, "bad_request"), "message": text}}
        json_response = web.Response(status=response.status, body=orjson.dumps(body),
                                     content_type="application/json")
        json_response.force_close()
        return json_response

    web_protocol.RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
    _installed = True

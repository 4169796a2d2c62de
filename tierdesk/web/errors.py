"""The one place where errors become HTTP responses: each layer's (the
domain's, the classifier's, the storage's, the application's) by its class."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from classifier.errors import KnowledgeBaseError, ModelError, ModelNotFound
from router.errors import Conflict, Forbidden, InvalidInput, NotFound, TierdeskError, Unauthenticated, Unavailable
from tierdesk.errors import BodyTooSlow, PayloadTooLarge, RateLimited

log = structlog.get_logger(__name__)

# Most specific first: the first class that matches decides the status.
STATUS: tuple[tuple[type[TierdeskError], int], ...] = (
    (PayloadTooLarge, 413),
    (BodyTooSlow, 408),
    (KnowledgeBaseError, 422),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (ModelNotFound, 404),
    (NotFound, 404),
    (Conflict, 409),
    (RateLimited, 429),
    (ModelError, 422),
    (Unavailable, 503),
)
CODE_STATUS = {"validation_failed": 422, "text_too_long": 422, "empty_text": 422, "unstorable": 422}


def status_of(exc: TierdeskError) -> int:
    if exc.code in CODE_STATUS:
        return CODE_STATUS[exc.code]
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, code: str, message: str, details: object = None) -> web.Response:
    body: dict[str, object] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    400: "bad_request",
    415: "unsupported_media_type",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except TierdeskError as exc:
        status = status_of(exc)
        response = error_response(status, exc.code, exc.message, exc.details)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if isinstance(exc, BodyTooSlow):
            response.force_close()  # the rest of the body may still be trickling in
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="tierdesk"'
        if status >= 500:
            log.warning("request_unavailable", code=exc.code, error=exc.message)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled_error")
        return error_response(500, "internal_error", "internal server error")

"""The errors the application sees, in one place to import them from.

Each layer has the errors of its own words: the domain's (and the root,
TierdeskError) in router/errors.py, the classifier's in classifier/errors.py,
the storage's in storage/errors.py; they are re-exported here. Defined here
are the application's own: a request too large or too slow, a caller over
its rate. The HTTP layer maps them all to status codes in one table
(tierdesk/web/errors.py); the CLI prints ``code: message``.
"""

from __future__ import annotations

from classifier.errors import CorruptModelError, IncompatibleModelError, KnowledgeBaseError, ModelError, ModelNotFound
from router.errors import (
    CapacityExceeded,
    ChangeRefused,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    TierdeskError,
    Unauthenticated,
    Unavailable,
)
from storage.errors import Unstorable

__all__ = [
    "BodyTooSlow", "CapacityExceeded", "ChangeRefused", "Conflict", "CorruptModelError", "Forbidden",
    "IncompatibleModelError", "InvalidInput", "KnowledgeBaseError", "ModelError", "ModelNotFound", "NotFound",
    "PayloadTooLarge", "RateLimited", "TierdeskError", "Unauthenticated", "Unavailable", "Unstorable",
]


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class BodyTooSlow(InvalidInput):
    """The request body did not arrive within the time allowed for it."""

    code = "request_timeout"


class RateLimited(TierdeskError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

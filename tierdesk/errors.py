"""The one error hierarchy of tierdesk.

Every error the product raises on purpose derives from TierdeskError and
carries a stable machine-readable ``code``. The HTTP layer maps the classes
below to status codes in one table (tierdesk/web/errors.py); the CLI prints
``code: message``. Nothing else decides how an error looks to a user.
"""

from __future__ import annotations

from typing import Any


class TierdeskError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class InvalidInput(TierdeskError):
    """The caller sent something malformed or out of bounds."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class BodyTooSlow(InvalidInput):
    """The request body did not arrive within the time allowed for it."""

    code = "request_timeout"


class Unstorable(InvalidInput):
    """The database cannot hold a value of this change (a character or a
    number it has no room for). Validation at the edge refuses every such
    value it knows of; this is what reaches the caller if one slips past,
    and only that change fails, never the ones committed beside it."""

    code = "unstorable"


class Unauthenticated(TierdeskError):
    code = "unauthenticated"


class Forbidden(TierdeskError):
    """Authenticated, but this caller may not touch that resource."""

    code = "forbidden"


class NotFound(TierdeskError):
    code = "not_found"


class Conflict(TierdeskError):
    """The request is well formed but clashes with the current state."""

    code = "conflict"


class CapacityExceeded(Conflict):
    code = "capacity_exceeded"


class Unavailable(TierdeskError):
    """A dependency (database, model) cannot serve right now; retry later."""

    code = "unavailable"


class ChangeRefused(Unavailable):
    """The database refused one change: decided on a copy another instance
    had changed since, or it would have taken an agent past capacity.
    Nothing of it was stored, so deciding again on what is stored now is
    safe (the Desk does so itself before the caller sees this)."""


class RateLimited(TierdeskError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KnowledgeBaseError(InvalidInput):
    """A knowledge base file is invalid; ``file`` and ``line`` point at the fault."""

    code = "invalid_knowledge_base"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        where = file or "<knowledge base>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}", details={"file": file, "line": line})
        self.file = file
        self.line = line


class ModelError(TierdeskError):
    """A model artifact cannot be used."""

    code = "model_error"


class IncompatibleModelError(ModelError):
    code = "incompatible_model"


class CorruptModelError(ModelError):
    code = "corrupt_model"


class ModelNotFound(ModelError, NotFound):
    code = "model_not_found"

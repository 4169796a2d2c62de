"""The domain's errors, and the root every layer's errors derive from.

Every error the product raises on purpose derives from TierdeskError and
carries a stable machine-readable ``code``. These are the rules' words
(invalid, not found, a conflict, unavailable...); the classifier and the
storage add their own (classifier/errors.py, storage/errors.py), and the
ports' implementations raise these to say what the rules must hear. The
HTTP layer maps them all to status codes in one table (tierdesk/web/errors.py);
the CLI prints ``code: message``.
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

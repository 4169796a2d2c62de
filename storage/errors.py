"""The storage's own errors; beside them it raises the domain's
(router/errors.py: a conflict, a refused change, unavailable), which the
store's callers are written against."""

from __future__ import annotations

from router.errors import Conflict, InvalidInput


class Unstorable(InvalidInput):
    """The database cannot hold a value of this change (a character or a
    number it has no room for). Validation at the edge refuses every such
    value it knows of; this is what reaches the caller if one slips past,
    and only that change fails, never the ones committed beside it."""

    code = "unstorable"


class SomeRefused(Conflict):
    """The database refused some of a batch's changes, named by their place
    in the batch with why; nothing of the batch was written, and the others
    would go in without them."""

    def __init__(self, refused: dict[int, Conflict]) -> None:
        super().__init__(f"{len(refused)} change(s) of the batch refused")
        self.refused = refused

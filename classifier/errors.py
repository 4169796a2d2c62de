"""The classifier's errors: a knowledge base or a model that cannot be
used. They are kinds of the domain's errors (router/errors.py: invalid
input, not found), so a caller handles them as it handles those."""

from __future__ import annotations

from router.errors import InvalidInput, NotFound, TierdeskError


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

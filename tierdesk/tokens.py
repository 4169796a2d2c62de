"""Bearer tokens: random, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from router.model import Role


def new_token(role: Role) -> str:
    return f"td_{role.value}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    # Tokens carry 256 random bits, so an unsalted fast hash is safe here and
    # lets the lookup be an index probe instead of a scan.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

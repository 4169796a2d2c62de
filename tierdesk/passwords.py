"""Password hashing for console sign-in: argon2id (argon2-cffi), with the
library's recommended parameters (RFC 9106, low-memory profile)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified when the email is unknown, so a miss costs as long as a wrong
# password and timing does not tell which emails have accounts.
_DUMMY = _hasher.hash("tierdesk-no-such-person")


def use_parameters(**parameters: int) -> None:
    """Other argon2 parameters (time_cost, memory_cost, parallelism) for new
    hashes; hashes already stored keep theirs. The test suite makes them
    cheap; nothing else needs to."""
    global _hasher, _DUMMY
    _hasher = PasswordHasher(**parameters)
    _DUMMY = _hasher.hash("tierdesk-no-such-person")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    # ~50 ms of CPU by design: off the event loop, or every request waits.
    return await asyncio.to_thread(_verify, stored, password)


async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)

"""Who is calling: bearer token → principal (role and subject)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable

from aiohttp import web

from router.model import Channel, Principal, Role
from storage.accounts import Accounts
from tierdesk.errors import Forbidden, Unauthenticated
from tierdesk.signing import HEADER, verify
from tierdesk.tokens import token_hash

from .read_through import ReadThrough
from .sessions import COOKIE, Sessions


class Authenticator:
    """Resolves tokens through a short-lived cache (tierdesk/web/read_through.py):
    the hot path must not pay a database read per request, and a revocation
    is honoured within ``ttl`` seconds everywhere, at once on
    the instance that revoked."""

    def __init__(self, accounts: Accounts, admin_token: str | None, ttl: float = 30.0,
                 signature_tolerance: float = 300.0) -> None:
        self.accounts = accounts
        self.signature_tolerance = signature_tolerance
        self._admin_hash = token_hash(admin_token) if admin_token else None
        self._principals: ReadThrough[str, Principal | None] = ReadThrough(accounts.principal, ttl)
        self._channels: ReadThrough[str, Channel | None] = ReadThrough(accounts.channel, ttl)
        # Console sign-in (tierdesk/web/sessions.py): a request with the
        # session cookie and no bearer token acts as the signed-in person.
        self.sessions: Sessions | None = None
        self._now: Callable[[], float] = time.time

    def use_clock(self, now: Callable[[], float]) -> None:
        self._now = now

    def forget(self, principal: Principal | None = None) -> None:
        self._principals.forget(None if principal is None else (lambda p: p == principal))

    def forget_channel(self, channel_id: str) -> None:
        self._channels.forget(lambda c: c is not None and c.id == channel_id)

    async def close(self) -> None:
        await self._principals.close()
        await self._channels.close()

    async def principal(self, request: web.Request) -> Principal:
        if (self.sessions is not None and COOKIE in request.cookies and "Authorization" not in request.headers
                and "token" not in request.query):
            return await self.sessions.principal(request)  # type: ignore[no-any-return]
        token = bearer_token(request)
        if token.startswith("td_customer_"):
            # A widget's customer session: signed, not stored.
            from tierdesk.channels.widget import SESSION, verify

            session = await verify(token, self.channel, self._now())
            request[SESSION] = session
            return Principal(Role.CUSTOMER, session.channel_id)
        digest = token_hash(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(Role.ADMIN)
        principal = await self._principals.get(digest)
        if principal is None:
            raise Unauthenticated("unknown or revoked token")
        return principal

    async def channel(self, channel_id: str) -> Channel | None:
        return await self._channels.get(channel_id)

    async def channel_request(self, request: web.Request, clock_now: float) -> tuple[Principal, bytes, Channel]:
        """Authenticate a channel, read the body and check its signature if
        the channel requires signed requests."""
        principal = await self.require(request, Role.CHANNEL)
        body = await request.read()
        channel = await self.channel(principal.subject_id or "")
        if channel is None or channel.disabled_at is not None:
            raise Unauthenticated("the channel of this token no longer exists or is disabled")
        signature = request.headers.get(HEADER)
        # A channel may require signatures; a signature sent anyway is always
        # checked, so a broken signer is noticed before signing is required.
        if channel.require_signature or signature is not None:
            verify(channel.secrets(clock_now), signature, body, clock_now, self.signature_tolerance)
        return principal, body, channel

    async def require(self, request: web.Request, *roles: Role) -> Principal:
        principal = await self.principal(request)
        if principal.role not in roles:
            raise Forbidden(f"this endpoint is for {', '.join(r.value for r in roles)} tokens")
        return principal


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.path.endswith("/ws") and request.query.get("token"):
        # Browsers cannot set headers on a WebSocket handshake.
        return request.query["token"]
    raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")

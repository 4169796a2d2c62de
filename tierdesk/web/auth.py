"""Who is calling: bearer token → principal (role and subject)."""

from __future__ import annotations

import hmac
import time

from aiohttp import web

from router.model import Channel, Principal, Role
from storage.accounts import Accounts
from tierdesk.errors import Forbidden, Unauthenticated
from tierdesk.signing import HEADER, verify
from tierdesk.tokens import token_hash


class Authenticator:
    """Resolves tokens with a short-lived cache: the hot path must not pay a
    database read per request, and a revocation is honoured within ``ttl``
    seconds everywhere (at once on the instance that revoked)."""

    def __init__(self, accounts: Accounts, admin_token: str | None, ttl: float = 30.0,
                 signature_tolerance: float = 300.0) -> None:
        self.accounts = accounts
        self.signature_tolerance = signature_tolerance
        self._channels: dict[str, tuple[float, Channel | None]] = {}
        self._admin_hash = token_hash(admin_token) if admin_token else None
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def forget(self, principal: Principal | None = None) -> None:
        if principal is None:
            self._cache.clear()
            return
        for key, (_, p) in list(self._cache.items()):
            if p == principal:
                del self._cache[key]

    async def principal(self, request: web.Request) -> Principal:
        token = bearer_token(request)
        digest = token_hash(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(Role.ADMIN)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            principal = await self.accounts.principal(digest)
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, principal)
        if principal is None:
            raise Unauthenticated("unknown or revoked token")
        return principal

    async def channel(self, channel_id: str) -> Channel | None:
        now = time.monotonic()
        hit = self._channels.get(channel_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        channel = await self.accounts.channel(channel_id)
        self._channels[channel_id] = (now + self._ttl, channel)
        return channel

    async def channel_request(self, request: web.Request, clock_now: float) -> tuple[Principal, bytes]:
        """Authenticate a channel, read the body and check its signature if
        the channel requires signed requests."""
        principal = await self.require(request, Role.CHANNEL)
        body = await request.read()
        channel = await self.channel(principal.subject_id or "")
        if channel is None:
            raise Unauthenticated("the channel of this token no longer exists")
        signature = request.headers.get(HEADER)
        # A channel may require signatures; a signature sent anyway is always
        # checked, so a broken signer is noticed before signing is required.
        if channel.require_signature or signature is not None:
            verify(channel.webhook_secret or "", signature, body, clock_now, self.signature_tolerance)
        return principal, body

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

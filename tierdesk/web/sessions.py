"""Console sign-in: sessions in a cookie, CSRF tokens, and the throttle on
wrong passwords.

A session is a random id in an HttpOnly, SameSite=Lax cookie; the database
keeps only its sha256 (storage/people.py). Its CSRF token is derived from
the id, so it needs no storage and no page can learn it without the cookie.
Requests that carry the cookie instead of a bearer token act with the
person's role (tierdesk/web/auth.py), the API's rules unchanged."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict, deque
from dataclasses import dataclass

from aiohttp import web

from router.ids import new_id
from router.model import Person, Role
from router.ports import Clock
from storage.people import People
from tierdesk.errors import Forbidden, RateLimited, Unauthenticated
from tierdesk.passwords import verify_password
from tierdesk.settings import Settings
from tierdesk.tokens import token_hash

COOKIE = "td_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_id: str) -> str:
    return hashlib.sha256(f"csrf:{session_id}".encode()).hexdigest()[:40]


def normal_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class SignedIn:
    person: Person
    id_hash: str
    csrf: str
    expires_at: float


# Who a request's cookie signed in, looked up once per request.
SIGNED_IN: web.RequestKey[SignedIn | None] = web.RequestKey("signed_in", object)  # type: ignore[arg-type]


class Throttle:
    """Wrong passwords per key (an email, an address) within a window; at
    ``limit`` the key is refused until the oldest failure leaves the window.
    Kept per instance: behind several instances an attacker gets at most
    that many tries per instance."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
        return q

    def check(self, keys: list[str], now: float) -> None:
        for key in keys:
            q = self._recent(key, now)
            if len(q) >= self.limit:
                raise RateLimited("too many failed sign-ins; wait and try again",
                                  retry_after=q[0] + self.window - now)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._failures[key].append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)


class Sessions:
    def __init__(self, people: People, settings: Settings, clock: Clock) -> None:
        self.people, self.settings, self.clock = people, settings, clock
        self.throttle = Throttle(settings.signin_max_failures, settings.signin_lockout_seconds)

    async def sign_in(self, email: str, password: str, remote: str) -> tuple[SignedIn, str]:
        """The session and the cookie's value. Wrong email and wrong
        password are one error, and cost the same time."""
        email = normal_email(email)
        keys = [f"email:{email}", f"ip:{remote}"]
        self.throttle.check(keys, self.clock.now())
        found = await self.people.by_email(email)
        ok = await verify_password(found[1] if found else None, password)
        now = self.clock.now()
        if not ok or found is None or found[0].disabled:
            self.throttle.failed(keys, now)
            raise Unauthenticated("wrong email or password, or the account is disabled", code="bad_credentials")
        self.throttle.clear(keys[0])
        session_id = secrets.token_urlsafe(32)
        expires = now + self.settings.session_lifetime_seconds
        await self.people.add_session(token_hash(session_id), found[0].id, now, expires)
        return SignedIn(found[0], token_hash(session_id), csrf_token(session_id), expires), session_id

    async def current(self, request: web.Request) -> SignedIn | None:
        """The signed-in person of a request with the session cookie (cached
        on the request), or None."""
        if SIGNED_IN in request:
            return request[SIGNED_IN]
        session_id = request.cookies.get(COOKIE)
        signed_in = None
        if session_id:
            found = await self.people.session(token_hash(session_id), self.clock.now())
            if found is not None:
                signed_in = SignedIn(found[0], token_hash(session_id), csrf_token(session_id), found[1])
        request[SIGNED_IN] = signed_in
        return signed_in

    async def principal(self, request: web.Request):  # type: ignore[no-untyped-def]
        """The principal of a cookie-authenticated API call, with the CSRF
        and same-origin checks a browser's cookie needs."""
        signed_in = await self.current(request)
        if signed_in is None:
            raise Unauthenticated("the session has ended; sign in again")
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), signed_in.csrf.encode()):
                raise Forbidden(f"missing or wrong {CSRF_HEADER} header", code="csrf_failed")
        elif request.headers.get("Upgrade", "").lower() == "websocket" and not same_origin(request):
            # Browsers send cookies on cross-site WebSocket handshakes.
            raise Forbidden("WebSocket from another origin", code="csrf_failed")
        return signed_in.person.principal()

    async def sign_out(self, signed_in: SignedIn, *, everywhere: bool = False) -> None:
        now = self.clock.now()
        if everywhere:
            await self.people.end_sessions(now, person_id=signed_in.person.id)
        else:
            await self.people.end_sessions(now, id_hash=signed_in.id_hash)

    def cookie(self, response: web.StreamResponse, request: web.Request, session_id: str) -> None:
        secure = {"true": True, "false": False}.get(self.settings.session_cookie_secure, request.secure)
        response.set_cookie(COOKIE, session_id, max_age=int(self.settings.session_lifetime_seconds),
                            path="/", httponly=True, samesite="Lax", secure=secure)


def same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser
    return origin.split("://", 1)[-1] == request.host


def new_person(email: str, name: str, role: Role, agent_id: str | None, now: float) -> Person:
    return Person(id=new_id("per"), email=normal_email(email), name=name, role=role, agent_id=agent_id,
                  created_at=now)

"""Console pages. Each checks who is signed in and renders a template; the
data comes from the public API, called by the page's script."""

from __future__ import annotations

import functools
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from pathlib import Path
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from router.model import Role
from tierdesk.errors import Forbidden, NotFound, RateLimited, Unauthenticated
from tierdesk.web import keys
from tierdesk.web.sessions import COOKIE, SignedIn

from .messages import MESSAGES, pick_language, translate

PRE_COOKIE = "td_signin"  # the sign-in form's CSRF token (double submit)
LANG_COOKIE = "td_lang"
HOME = {Role.AGENT: "/console/inbox", Role.SUPERVISOR: "/console/live", Role.ADMIN: "/console/live"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def language(request: web.Request) -> str:
    return pick_language(request.query.get("lang") or request.cookies.get(LANG_COOKIE),
                         request.headers.get("Accept-Language"))


STATIC = Path(__file__).resolve().parent / "static"


@functools.cache
def asset(name: str) -> str:
    """A static file's URL with its content's hash: cached for good by
    browsers, yet a new version is fetched at once."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/console/static/{name}?v={digest}"


def context(request: web.Request) -> dict[str, Any]:
    """What every page's template is given."""
    lang = language(request)
    other = "zh" if lang == "en" else "en"
    return {"lang": lang, "t": lambda key, **v: translate(lang, key, **v), "other_lang": other,
            "path": request.path, "Role": Role, "asset": asset}


def render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    response = aiohttp_jinja2.render_template(template, request, context(request) | ctx, status=status)
    response.headers.update(SECURITY_HEADERS)
    if "lang" in request.query and request.query["lang"] in MESSAGES:
        response.set_cookie(LANG_COOKIE, request.query["lang"], max_age=365 * 86400, path="/", samesite="Lax")
    return response


def error_page(request: web.Request, status: int, key: str, signed_in: SignedIn | None = None) -> web.Response:
    return render(request, "error.html", status=status, message_key=key, me=signed_in)


Page = Callable[[web.Request, SignedIn], Awaitable[web.StreamResponse]]


def page(*roles: Role) -> Callable[[Page], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    def wrap(handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            signed_in = await request.app[keys.SESSIONS].current(request)
            if signed_in is None:
                raise web.HTTPSeeOther(f"/console/sign-in?next={quote(request.path_qs)}")
            if signed_in.person.role not in roles:
                return error_page(request, 403, "error.forbidden", signed_in)
            return await handler(request, signed_in)
        return guarded
    return wrap


def page_data(signed_in: SignedIn, lang: str, **extra: Any) -> str:
    """What the page's script needs: who, the CSRF token, the catalogue."""
    p = signed_in.person
    data = {"person": {"id": p.id, "name": p.name, "role": p.role.value, "agent_id": p.agent_id},
            "csrf": signed_in.csrf, "lang": lang, "messages": MESSAGES[lang], **extra}
    # In a <script type="application/json">: keep "</" out of it.
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def workspace(request: web.Request, signed_in: SignedIn, template: str, **extra: Any) -> web.Response:
    lang = language(request)
    # The server's clock, so times shown ("waited 2 min") do not depend on
    # the viewer's clock being right.
    now_ms = round(request.app[keys.CLOCK].now() * 1000)
    return render(request, template, me=signed_in, data=page_data(signed_in, lang, server_now=now_ms, **extra))


# ------------------------------------------------------------------ sign-in
async def home(request: web.Request) -> web.StreamResponse:
    signed_in = await request.app[keys.SESSIONS].current(request)
    raise web.HTTPSeeOther(HOME[signed_in.person.role] if signed_in else "/console/sign-in")


def _safe_next(value: str | None) -> str | None:
    # Only a path of this console: never an open redirect elsewhere.
    if value and value.startswith("/console/") and not value.startswith("//"):
        return value
    return None


def _sign_in_form(request: web.Request, status: int = 200, error: str | None = None, email: str = "") -> web.Response:
    """``error``: the text to show, already in the reader's language."""
    token = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", status=status, error=error, email=email, form_token=token,
                      next=_safe_next(request.query.get("next")) or "", me=None)
    response.set_cookie(PRE_COOKIE, token, path="/console/sign-in", httponly=True, samesite="Strict",
                        secure=request.secure)
    return response


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    if await request.app[keys.SESSIONS].current(request) is not None and "ended" not in request.query:
        raise web.HTTPSeeOther("/console/")
    ended = translate(language(request), "signin.ended") if "ended" in request.query else None
    return _sign_in_form(request, error=ended)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    expected = request.cookies.get(PRE_COOKIE)
    lang = language(request)
    if not expected or not secrets.compare_digest(expected, str(form.get("form_token", ""))):
        return _sign_in_form(request, 403, translate(lang, "signin.bad_form"), email)
    sessions = request.app[keys.SESSIONS]
    try:
        signed_in, session_id = await sessions.sign_in(email, password, request.remote or "")
    except RateLimited as exc:
        response = _sign_in_form(request, 429, translate(lang, "signin.throttled", seconds=round(exc.retry_after)),
                                 email)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response
    except Unauthenticated:
        return _sign_in_form(request, 401, translate(lang, "signin.failed"), email)
    target = _safe_next(str(form.get("next", ""))) or HOME[signed_in.person.role]
    response = web.HTTPSeeOther(target)
    sessions.cookie(response, request, session_id)
    response.del_cookie(PRE_COOKIE, path="/console/sign-in")
    raise response


async def sign_out(request: web.Request) -> web.StreamResponse:
    sessions = request.app[keys.SESSIONS]
    signed_in = await sessions.current(request)
    if signed_in is not None:
        form = await request.post()
        if not secrets.compare_digest(str(form.get("csrf", "")), signed_in.csrf):
            return error_page(request, 403, "error.forbidden", signed_in)
        everywhere = form.get("everywhere") == "1"
        await sessions.sign_out(signed_in, everywhere=everywhere)
        if signed_in.person.agent_id is not None:
            request.app[keys.SOCKETS].sign_out(signed_in.person.agent_id,
                                               None if everywhere else {signed_in.id_hash})
    response = web.HTTPSeeOther("/console/sign-in")
    response.del_cookie(COOKIE, path="/")
    raise response


# ------------------------------------------------------------------- agents
@page(Role.AGENT)
async def inbox(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    return workspace(request, signed_in, "inbox.html", current=None)


@page(Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
async def conversation(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    """An agent sees only what they hold, by the API's rule (Desk.history);
    supervisors and admins read any conversation."""
    conversation_id = request.match_info["conversation_id"]
    principal = signed_in.person.principal()
    try:
        await request.app[keys.DESK].history(principal.subject_id if principal.role is Role.AGENT else None,
                                             conversation_id)
    except Forbidden:
        return error_page(request, 403, "error.not_your_conversation", signed_in)
    except NotFound:
        return error_page(request, 404, "error.not_found", signed_in)
    if principal.role is Role.AGENT:
        return workspace(request, signed_in, "inbox.html", current=conversation_id)
    return workspace(request, signed_in, "transcript.html", current=conversation_id)


# --------------------------------------------------------------- supervisors
@page(Role.SUPERVISOR, Role.ADMIN)
async def live(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    return workspace(request, signed_in, "live.html")


@page(Role.SUPERVISOR, Role.ADMIN)
async def metrics(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    return workspace(request, signed_in, "metrics.html")


@page(Role.SUPERVISOR, Role.ADMIN)
async def faq(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    return workspace(request, signed_in, "faq.html")


@page(Role.ADMIN)
async def people(request: web.Request, signed_in: SignedIn) -> web.StreamResponse:
    return workspace(request, signed_in, "people.html")

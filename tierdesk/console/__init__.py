"""The web console: sign-in, the agent workspace and the supervisor views.

Pages are server-rendered (jinja2) with a little plain JavaScript that
calls the public HTTP API and the agent WebSocket with the session cookie;
what a person may do is decided by the API's own rules."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from . import pages

HERE = Path(__file__).resolve().parent


def setup(app: web.Application) -> None:
    # No context processors: aiohttp_jinja2 runs them in a middleware, on
    # every request of the API too; pages.render adds the pages' context.
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    r = app.router
    r.add_get("/console", pages.home)
    r.add_get("/console/", pages.home)
    r.add_get("/console/sign-in", pages.sign_in_page)
    r.add_post("/console/sign-in", pages.sign_in)
    r.add_post("/console/sign-out", pages.sign_out)
    r.add_get("/console/inbox", pages.inbox)
    r.add_get("/console/conversations/{conversation_id}", pages.conversation)
    r.add_get("/console/live", pages.live)
    r.add_get("/console/metrics", pages.metrics)
    r.add_get("/console/faq", pages.faq)
    r.add_get("/console/people", pages.people)
    r.add_static("/console/static", HERE / "static")

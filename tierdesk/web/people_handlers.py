"""People: the console's accounts (admin only), managed over the API like
agents and channels."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.model import AgentStatus, Person, Role
from tierdesk.errors import Conflict, InvalidInput, NotFound
from tierdesk.passwords import hash_password_async

from . import keys
from . import schemas as s
from .wire import body, iso, json
from .sessions import new_person, normal_email


def person_view(p: Person) -> dict[str, Any]:
    return {"id": p.id, "email": p.email, "name": p.name, "role": p.role.value, "agent_id": p.agent_id,
            "disabled": p.disabled, "created_at": iso(p.created_at)}


async def list_people(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    return json({"people": [person_view(p) for p in await request.app[keys.PEOPLE].all()]})


async def create_person(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    p = s.decode(await body(request), s.PersonIn)
    role = Role(p.role)
    if (role is Role.AGENT) != (p.agent_id is not None):
        raise InvalidInput("agent_id is required for role agent, and only for it", code="validation_failed")
    people = request.app[keys.PEOPLE]
    if p.agent_id is not None:
        desk = request.app[keys.DESK]
        await desk.ensure_ready()
        desk.agent(p.agent_id)  # NotFound for an unknown agent
    if await people.by_email(normal_email(p.email)) is not None:
        raise Conflict(f"{normal_email(p.email)} already has an account", code="email_taken")
    person = new_person(p.email, p.name, role, p.agent_id, request.app[keys.CLOCK].now())
    await people.create(person, await hash_password_async(p.password))
    return json(person_view(person), status=201)


async def patch_person(request: web.Request) -> web.Response:
    await request.app[keys.AUTH].require(request, Role.ADMIN)
    patch = s.decode(await body(request), s.PersonPatch)
    people = request.app[keys.PEOPLE]
    person = await people.get(request.match_info["person_id"])
    if person is None:
        raise NotFound(f"person {request.match_info['person_id']!r} does not exist")
    now = request.app[keys.CLOCK].now()
    values: dict[str, Any] = {}
    if patch.name is not None:
        values["name"] = patch.name
    if patch.password is not None:
        values["password_hash"] = await hash_password_async(patch.password)
    if patch.disabled is not None and patch.disabled != person.disabled:
        values["disabled_at"] = now if patch.disabled else None
    if values:
        await people.update(person.id, **values)
    if "password_hash" in values or patch.disabled:
        # A reset password or a disabled account signs the person out
        # everywhere, sockets included, at once.
        await people.end_sessions(now, person_id=person.id)
        if person.agent_id is not None:
            request.app[keys.SOCKETS].sign_out(person.agent_id)
    if patch.disabled and person.agent_id is not None:
        # Nobody works as this agent now: take no new conversations.
        desk = request.app[keys.DESK]
        await desk.ensure_ready()
        if desk.agent(person.agent_id).status is not AgentStatus.OFFLINE:
            await desk.update_agent(person.agent_id, status=AgentStatus.OFFLINE)
    updated = await people.get(person.id)
    assert updated is not None
    return json(person_view(updated))

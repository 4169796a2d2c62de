"""Console accounts over HTTP (no browser): people, sign-in, the session
cookie and its CSRF token, expiry, sign-out (here and everywhere), the
throttle on wrong passwords, and what disabling an account ends."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.support.api import ADMIN_TOKEN, Api
from tests.support.console import PASSWORD, Person, add_person
from tierdesk.web import keys

BILLING = "I was charged twice for my order and want my money back"


@pytest.fixture
async def team(app_client: Api):  # type: ignore[no-untyped-def]
    api = app_client
    ann = await api.add_agent("ann", ["billing"], capacity=2)
    bob = await api.add_agent("bob", ["billing"], capacity=2, status="offline")
    await add_person(api, "ann@example.test", "agent", ann["id"])
    await add_person(api, "Bob@Example.test", "agent", bob["id"])
    await add_person(api, "sue@example.test", "supervisor")
    await add_person(api, "ada@example.test", "admin")
    people: list[Person] = []

    def person() -> Person:
        p = Person(api)
        people.append(p)
        return p

    yield api, person, {"ann": ann, "bob": bob}
    for p in people:
        await p.close()


async def test_sign_in_sets_a_safe_cookie_and_acts_with_the_persons_role(team) -> None:  # type: ignore[no-untyped-def]
    api, person, agents = team
    ann = person()
    resp = await ann.sign_in("ANN@example.test")  # emails are case-insensitive
    assert resp.headers["Location"] == "/console/inbox"
    cookie = resp.headers["Set-Cookie"]
    assert "td_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here; TLS (or TIERDESK_SESSION_COOKIE_SECURE=true) adds it
    session_id = re.search(r"td_session=([^;]+)", cookie).group(1)  # type: ignore[union-attr]
    # only the hash is stored
    async with api.app[keys.ENGINES].read.connect() as conn:
        from sqlalchemy import select

        from storage.tables import sessions
        stored = [r[0] for r in (await conn.execute(select(sessions.c.id_hash))).all()]
    assert session_id not in stored and len(stored) == 1

    assert (await ann.call("GET", "/v1/agents/me"))[1]["id"] == agents["ann"]["id"]
    status, data = await ann.call("GET", "/v1/queue")
    assert (status, data["error"]["code"]) == (403, "forbidden")  # an agent is an agent, cookie or token
    sue = person()
    assert (await sue.sign_in("sue@example.test")).headers["Location"] == "/console/live"
    assert (await sue.call("GET", "/v1/queue"))[0] == 200
    status, data = await sue.call("POST", "/v1/admin/agents", {"name": "x", "skills": [], "capacity": 1})
    assert (status, data["error"]["code"]) == (403, "forbidden")  # a supervisor cannot do an admin's work
    status, _, _ = await sue.page("/console/people")
    assert status == 403


async def test_every_state_change_needs_the_csrf_token(team) -> None:  # type: ignore[no-untyped-def]
    api, person, agents = team
    ann = person()
    await ann.sign_in("ann@example.test")
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        status, data = await ann.call("PUT", "/v1/agents/me/status", {"status": "away"}, csrf=False, headers=headers)
        assert (status, data["error"]["code"]) == (403, "csrf_failed")
    assert (await ann.call("GET", "/v1/agents/me"))[1]["status"] == "online"
    status, data = await ann.call("PUT", "/v1/agents/me/status", {"status": "away"})
    assert (status, data["status"]) == (200, "away")
    # sign-out needs it too
    ann.csrf, real = "nope", ann.csrf
    assert await ann.sign_out() == 403
    ann.csrf = real
    assert (await ann.call("GET", "/v1/agents/me"))[0] == 200


async def test_cross_site_websocket_handshakes_are_refused(team) -> None:  # type: ignore[no-untyped-def]
    api, person, _ = team
    ann = person()
    await ann.sign_in("ann@example.test")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await ann.http.ws_connect(ann.url("/v1/agents/ws"), headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403
    ws = await ann.http.ws_connect(ann.url("/v1/agents/ws"), headers={"Origin": ann.url("/").rstrip("/")})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.close()


async def test_wrong_passwords_are_refused_alike_and_throttled(team) -> None:  # type: ignore[no-untyped-def]
    api, person, _ = team
    ann = person()
    await ann.sign_in("ann@example.test", "wrong password!", expect=401)
    await ann.sign_in("nobody@example.test", PASSWORD, expect=401)
    limit = api.app[keys.SETTINGS].signin_max_failures
    for _ in range(limit - 2):  # the address has failed twice already
        await ann.sign_in("ann@example.test", "wrong password!", expect=401)
    # the limit is reached: even the right password waits out the lockout
    resp = await ann.sign_in("ann@example.test", PASSWORD, expect=429)
    assert int(resp.headers["Retry-After"]) >= 1
    api.clock.advance(api.app[keys.SETTINGS].signin_lockout_seconds + 1)
    await ann.sign_in("ann@example.test", PASSWORD)


async def test_sessions_expire_and_sign_out_ends_them(team) -> None:  # type: ignore[no-untyped-def]
    api, person, _ = team
    laptop, phone = person(), person()
    await laptop.sign_in("ann@example.test")
    await phone.sign_in("ann@example.test")
    assert await laptop.sign_out() == 303
    assert (await laptop.call("GET", "/v1/agents/me"))[0] == 401
    assert (await phone.call("GET", "/v1/agents/me"))[0] == 200  # the other browser stays in
    status, _, location = await laptop.page("/console/inbox")
    assert status == 303 and location.startswith("/console/sign-in")
    await laptop.sign_in("ann@example.test")
    assert await phone.sign_out(everywhere=True) == 303
    for browser in (laptop, phone):
        assert (await browser.call("GET", "/v1/agents/me"))[0] == 401
    await laptop.sign_in("ann@example.test")
    api.clock.advance(api.app[keys.SETTINGS].session_lifetime_seconds + 1)
    assert (await laptop.call("GET", "/v1/agents/me"))[0] == 401


async def test_disabling_a_person_signs_them_out_and_closes_their_sockets(team) -> None:  # type: ignore[no-untyped-def]
    api, person, agents = team
    ann = person()
    await ann.sign_in("ann@example.test")
    ws = await ann.http.ws_connect(ann.url("/v1/agents/ws"))
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    people = (await api.admin("GET", "/v1/admin/people"))["people"]
    ann_id = next(p["id"] for p in people if p["email"] == "ann@example.test")
    bob_id = next(p["id"] for p in people if p["email"] == "bob@example.test")
    data = await api.admin("PATCH", f"/v1/admin/people/{ann_id}", json={"disabled": True})
    assert data["disabled"] is True
    closed = await ws.receive(timeout=5)
    assert closed.type is aiohttp.WSMsgType.CLOSE and closed.data == 4401
    assert (await ann.call("GET", "/v1/agents/me"))[0] == 401
    await ann.sign_in("ann@example.test", expect=401)
    # nobody works as ann now: no new conversations go to her
    assert (await api.admin("GET", "/v1/admin/agents"))["agents"][0]["status"] == "offline"
    # enabled again, she signs in; a reset password signs bob out
    await api.admin("PATCH", f"/v1/admin/people/{ann_id}", json={"disabled": False})
    await ann.sign_in("ann@example.test")
    bob = person()
    await bob.sign_in("bob@example.test")
    await api.admin("PATCH", f"/v1/admin/people/{bob_id}", json={"password": "a new secret 42"})
    assert (await bob.call("GET", "/v1/agents/me"))[0] == 401
    await bob.sign_in("bob@example.test", expect=401)
    await bob.sign_in("bob@example.test", "a new secret 42")


async def test_people_are_validated(team) -> None:  # type: ignore[no-untyped-def]
    api, _, agents = team
    base = {"email": "new@example.test", "name": "New", "role": "supervisor", "password": PASSWORD}
    cases = [
        ({**base, "email": "ANN@example.test"}, 409, "email_taken"),
        ({**base, "role": "agent"}, 422, "validation_failed"),  # an agent's account needs its agent
        ({**base, "agent_id": agents["ann"]["id"]}, 422, "validation_failed"),  # and only an agent's
        ({**base, "role": "agent", "agent_id": "agt_missing"}, 404, "not_found"),
        ({**base, "password": "short"}, 422, "validation_failed"),
        ({**base, "email": "not-an-email"}, 422, "validation_failed"),
        ({**base, "role": "channel"}, 422, "validation_failed"),
    ]
    for body, status, code in cases:
        data = await api.call("POST", "/v1/admin/people", ADMIN_TOKEN, json=body, expect=status)
        assert data["error"]["code"] == code, (body, data)
    assert len((await api.admin("GET", "/v1/admin/people"))["people"]) == 4
    await api.call("PATCH", "/v1/admin/people/per_missing", ADMIN_TOKEN, json={"disabled": True}, expect=404)


async def test_an_agent_cannot_open_another_agents_conversation_page(team) -> None:  # type: ignore[no-untyped-def]
    api, person, agents = team
    await api.send("order-1", BILLING)
    (conv,) = (await api.as_agent("ann", "GET", "/v1/agents/me/conversations"))["conversations"]
    bob, ann, sue = person(), person(), person()
    await bob.sign_in("bob@example.test")
    status, html, _ = await bob.page(f"/console/conversations/{conv['id']}")
    assert status == 403 and "not assigned to you" in html
    await ann.sign_in("ann@example.test")
    assert (await ann.page(f"/console/conversations/{conv['id']}"))[0] == 200
    await sue.sign_in("sue@example.test")
    assert (await sue.page(f"/console/conversations/{conv['id']}"))[0] == 200  # supervisors read any
    assert (await ann.page("/console/conversations/conv_missing"))[0] == 404

"""A person at the console without a browser: an HTTP session with its own
cookies that signs in through the form and calls the API as the page's
script does (session cookie and CSRF header)."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from tests.support.api import ADMIN_TOKEN, Api

PASSWORD = "correct horse battery"


async def add_person(api: Api, email: str, role: str, agent_id: str | None = None,
                     password: str = PASSWORD, name: str | None = None) -> dict[str, Any]:
    body = {"email": email, "name": name or email.split("@")[0], "role": role, "password": password}
    if agent_id is not None:
        body["agent_id"] = agent_id
    return await api.call("POST", "/v1/admin/people", ADMIN_TOKEN, json=body, expect=201)  # type: ignore[no-any-return]


class Person:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    def url(self, path: str) -> str:
        return str(self.api.client.make_url(path))

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, email: str, password: str = PASSWORD, *, expect: int = 303) -> aiohttp.ClientResponse:
        async with self.http.get(self.url("/console/sign-in")) as resp:
            page = await resp.text()
        token = re.search(r'name="form_token" value="([^"]+)"', page)
        assert token, page
        resp = await self.http.post(self.url("/console/sign-in"), allow_redirects=False,
                                    data={"email": email, "password": password, "form_token": token.group(1)})
        assert resp.status == expect, (resp.status, await resp.text())
        if expect == 303:
            async with self.http.get(self.url(resp.headers["Location"])) as page_resp:
                self.csrf = page_data(await page_resp.text())["csrf"]
        return resp

    async def call(self, method: str, path: str, body: Any = None, *, csrf: bool = True,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = dict(headers or {})
        if csrf and method != "GET":
            h["X-CSRF-Token"] = self.csrf
        async with self.http.request(method, self.url(path), json=body, headers=h, allow_redirects=False) as resp:
            data = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, data

    async def page(self, path: str) -> tuple[int, str, str | None]:
        async with self.http.get(self.url(path), allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp.headers.get("Location")

    async def sign_out(self, everywhere: bool = False) -> int:
        data = {"csrf": self.csrf}
        if everywhere:
            data["everywhere"] = "1"
        async with self.http.post(self.url("/console/sign-out"), data=data, allow_redirects=False) as resp:
            return resp.status


def page_data(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="td-data">(.*?)</script>', html, re.S)
    assert m, html[:2000]
    return json.loads(m.group(1))  # type: ignore[no-any-return]

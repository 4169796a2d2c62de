"""A driver for the HTTP API as a channel, agents and an admin use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.ports import FakeClock
from tierdesk.models import LiveModel
from tierdesk.settings import Settings
from tierdesk.web.app import create_app

ADMIN_TOKEN = "td_admin_test-token"
# A test waits longer for a PostgreSQL connection than a deployment would:
# on a machine busy with other test runs, 5 s is not enough to get one, and
# a neighbour's load is not what these tests judge.
PATIENT = 60.0
KNOWLEDGE_BASE = Path(__file__).resolve().parents[2] / "knowledge_base"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    client: Any
    clock: FakeClock
    channel_token: str = ""
    channel_id: str = ""
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    async def start(cls, aiohttp_client: Any, *, db_url: str, clock: FakeClock, model: Any, **overrides: Any) -> Api:
        overrides = {"db_wait_seconds": PATIENT, **overrides}
        settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN,
                                     sweep_interval_seconds=3600.0, log_format="console", **overrides)
        app = create_app(settings, clock=clock, model=LiveModel.of(model))
        client = await aiohttp_client(app)
        api = cls(client=client, clock=clock)
        channel = await api.admin("POST", "/v1/admin/channels", json={"name": "web chat"}, expect=201)
        api.channel_token, api.channel_id = channel["token"], channel["id"]
        return api

    @classmethod
    async def start_deployed(cls, aiohttp_client: Any, *, db_url: str, clock: FakeClock, models: Path,
                             **settings_overrides: Any) -> Api:
        """The server as deployed: models and knowledge base read from disk."""
        settings_overrides = {"db_wait_seconds": PATIENT, **settings_overrides}
        settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN, models_dir=models,
                                     knowledge_base=KNOWLEDGE_BASE, sweep_interval_seconds=3600.0,
                                     model_watch_seconds=3600.0, **settings_overrides)
        api = cls(client=await aiohttp_client(create_app(settings, clock=clock)), clock=clock)
        channel = await api.admin("POST", "/v1/admin/channels", json={"name": "web"}, expect=201)
        api.channel_token, api.channel_id = channel["token"], channel["id"]
        return api

    @property
    def app(self) -> Any:
        return self.client.server.app

    async def call(self, method: str, path: str, token: str | None, *, expect: int | None = 200,
                   **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers.update(bearer(token))
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        data = await resp.json() if resp.content_type == "application/json" else await resp.text()
        if expect is not None:
            assert resp.status == expect, f"{method} {path}: {resp.status} {data}"
        return data

    async def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.call(method, path, ADMIN_TOKEN, **kwargs)

    async def add_agent(self, name: str, skills: list[str], capacity: int, status: str = "online") -> dict[str, Any]:
        agent = await self.admin("POST", "/v1/admin/agents",
                                 json={"name": name, "skills": skills, "capacity": capacity, "status": status},
                                 expect=201)
        self.agents[name] = agent
        return agent

    async def send(self, conversation_id: str, text: str, *, message_id: str | None = None, vip: bool = False,
                   customer: str | None = None, expect: int | None = 200) -> Any:
        body = {
            "message_id": message_id or f"{conversation_id}-{self.clock.now():.3f}-{text[:20]}",
            "conversation_id": conversation_id,
            "customer": {"id": customer or f"cust-{conversation_id}", "vip": vip},
            "text": text,
        }
        return await self.call("POST", "/v1/messages", self.channel_token, json=body, expect=expect)

    async def as_agent(self, name: str, method: str, path: str, **kwargs: Any) -> Any:
        return await self.call(method, path, self.agents[name]["token"], **kwargs)

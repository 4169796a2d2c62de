"""The demo set-up behind `make serve`: a migrated SQLite database, a trained
demo model, one channel and three agents, and their tokens printed."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.artifact import ModelStore
from classifier.training import train_and_save
from router.ids import new_id
from router.model import AgentStatus, Channel, Principal, Role
from router.ports import SystemClock
from router.services import Desk
from storage.accounts import Accounts
from storage.engine import create_engines
from storage.migrate import upgrade
from storage.store import SqlStore
from tierdesk.settings import Settings
from tierdesk.tokens import new_token, token_hash

DEMO_AGENTS = (
    ("Alice (billing)", ["billing", "general"], 3),
    ("Bao (tech)", ["tech", "general"], 3),
    ("Carmen (general)", ["general"], 2),
)


@dataclass(frozen=True)
class DemoTokens:
    admin: str
    channel: str
    channel_id: str
    agents: dict[str, dict[str, str]]


class _NoClassifier:
    async def classify(self, text: str) -> Any:  # pragma: no cover - never called by set-up
        raise RuntimeError("the demo set-up classifies nothing")


def ensure_model(settings: Settings, progress: Any = print) -> str:
    store = ModelStore(settings.models_dir)
    active = store.active_version()
    if active is not None:
        return active
    progress(f"no model in {settings.models_dir}: training the demo knowledge base…")
    return train_and_save(settings.knowledge_base, settings.models_dir, activate=True, progress=progress)


async def _ensure_accounts(settings: Settings, state_file: Path) -> DemoTokens:
    saved: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    engines = create_engines(settings.database_url)
    store = SqlStore(engines)
    accounts = Accounts(engines)
    clock = SystemClock()
    try:
        channel = await accounts.channel(saved.get("channel_id", "")) if saved.get("channel_id") else None
        if channel is None:
            channel = await accounts.create_channel(Channel(
                id=new_id("chn"), name="demo web chat", webhook_url=None,
                webhook_secret="whsec_" + secrets.token_urlsafe(24), created_at=clock.now(),
            ))
            token = new_token(Role.CHANNEL)
            await accounts.add_credential(token_hash(token), Principal(Role.CHANNEL, channel.id), clock.now())
            saved["channel_id"], saved["channel_token"] = channel.id, token
            saved["agents"] = {}
        desk = Desk(store, _NoClassifier(), clock)
        await desk.start()
        known = {a.id for a in desk.agents()}
        agents: dict[str, dict[str, str]] = saved.get("agents", {})
        for name, skills, capacity in DEMO_AGENTS:
            if name in agents and agents[name]["id"] in known:
                continue
            agent = await desk.create_agent(name, skills, capacity, AgentStatus.ONLINE)
            token = new_token(Role.AGENT)
            await accounts.add_credential(token_hash(token), Principal(Role.AGENT, agent.id), clock.now())
            agents[name] = {"id": agent.id, "token": token, "skills": ",".join(skills)}
        saved["agents"] = agents
        saved.setdefault("admin_token", new_token(Role.ADMIN))
    finally:
        await store.close()
        await engines.dispose()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2))
    os.chmod(tmp, 0o600)
    tmp.replace(state_file)
    return DemoTokens(admin=saved["admin_token"], channel=saved["channel_token"], channel_id=saved["channel_id"],
                      agents=agents)


def set_up(settings: Settings, state_file: Path) -> DemoTokens:
    from tierdesk.progress import Progress

    upgrade(settings.database_url)
    with Progress() as progress:
        ensure_model(settings, progress)
    return asyncio.run(_ensure_accounts(settings, state_file))


def banner(settings: Settings, tokens: DemoTokens, admin_token: str) -> str:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        "",
        "tierdesk demo is ready.",
        f"  admin token:    {admin_token}",
        f"  channel token:  {tokens.channel}   (channel {tokens.channel_id})",
    ]
    for name, a in tokens.agents.items():
        lines.append(f"  agent token:    {a['token']}   ({name}; skills {a['skills']})")
    lines += [
        "",
        "Try a FAQ question:",
        f"  curl -s {base}/v1/messages -H 'Authorization: Bearer {tokens.channel}' \\",
        "    -H 'Content-Type: application/json' \\",
        """    -d '{"message_id":"m1","conversation_id":"c1","customer":{"id":"u1"},"text":"how do I reset my password"}'""",
        "and a question for a person:",
        f"  curl -s {base}/v1/messages -H 'Authorization: Bearer {tokens.channel}' \\",
        "    -H 'Content-Type: application/json' \\",
        """    -d '{"message_id":"m2","conversation_id":"c2","customer":{"id":"u2"},"text":"I was charged twice for my order and want my money back"}'""",
        "",
    ]
    return "\n".join(lines)

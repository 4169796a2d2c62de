"""The demo set-up behind `make serve`: a migrated SQLite database, a trained
demo model, one channel (its webhook is the server's own demo inbox,
tierdesk/web/demo_inbox.py), three agents and a supervisor, and their
tokens printed and written for a shell (demo.env)."""

from __future__ import annotations

import asyncio
import json
import os
import dataclasses
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.artifact import METADATA_FILE, MODEL_FORMAT_VERSION, ModelStore
from classifier.training import train_and_save
from router.ids import new_id
from router.model import AgentStatus, Channel, Principal, Role
from router.ports import SystemClock
from router.services import Desk
from storage.accounts import Accounts
from storage.engine import create_engines
from storage.migrate import upgrade
from storage.people import People
from storage.store import SqlStore
from tierdesk.passwords import hash_password
from tierdesk.settings import Settings
from tierdesk.tokens import new_token, token_hash
from tierdesk.web.sessions import new_person

DEMO_AGENTS = (
    ("Alice (billing)", ["billing", "general"], 3),
    ("Bao (tech)", ["tech", "general"], 3),
    ("Carmen (general)", ["general"], 2),
)
# Console sign-in for the demo: (email, name, role, the agent it works as).
DEMO_PEOPLE = (
    ("admin@demo.tierdesk", "Ada (admin)", Role.ADMIN, None),
    ("supervisor@demo.tierdesk", "Sam (supervisor)", Role.SUPERVISOR, None),
    ("alice@demo.tierdesk", "Alice", Role.AGENT, "Alice (billing)"),
    ("bao@demo.tierdesk", "Bao", Role.AGENT, "Bao (tech)"),
    ("carmen@demo.tierdesk", "Carmen", Role.AGENT, "Carmen (general)"),
)


@dataclass(frozen=True)
class DemoTokens:
    admin: str
    supervisor: str
    channel: str
    channel_id: str
    webhook_secret: str
    agents: dict[str, dict[str, str]]
    widget_channel_id: str = ""
    # email -> (role, password), for the console
    people: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


def base_url(settings: Settings) -> str:
    """Where this server is reached from this machine."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def inbox_url(settings: Settings) -> str:
    return f"{base_url(settings)}/demo/inbox"


class _NoClassifier:
    async def classify(self, text: str, locale: str | None = None) -> Any:  # pragma: no cover - never called by set-up
        raise RuntimeError("the demo set-up classifies nothing")


def ensure_model(settings: Settings, progress: Any = print) -> str:
    store = ModelStore(settings.models_dir)
    active = store.active_version()
    if active is not None:
        fmt = _format_version(store.path(active))
        if fmt == MODEL_FORMAT_VERSION or not isinstance(fmt, int):
            # Current, or unreadable: loading it says what is wrong.
            return active
        # An older tierdesk's model cannot be loaded (docs/classifier.md, section 5);
        # the demo trains a current one next to it rather than answer nothing.
        progress(f"model {active} has format version {fmt!r}, this tierdesk reads "
                 f"{MODEL_FORMAT_VERSION}: training the demo knowledge base again…")
    else:
        progress(f"no model in {settings.models_dir}: training the demo knowledge base…")
    return train_and_save(settings.knowledge_base, settings.models_dir, activate=True, progress=progress)


def _format_version(version_dir: Path) -> object:
    try:
        return json.loads((version_dir / METADATA_FILE).read_text(encoding="utf-8")).get("format_version")
    except (OSError, ValueError, AttributeError):
        return None


async def _ensure_accounts(settings: Settings, state_file: Path) -> DemoTokens:
    webhook = inbox_url(settings)
    saved: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    engines = create_engines(settings.database_url)
    store = SqlStore(engines)
    accounts = Accounts(engines)
    clock = SystemClock()
    try:
        channel = await accounts.channel(saved.get("channel_id", "")) if saved.get("channel_id") else None
        if channel is None:
            channel = await accounts.create_channel(Channel(
                id=new_id("chn"), name="demo web chat", webhook_url=webhook,
                webhook_secret="whsec_" + secrets.token_urlsafe(24), created_at=clock.now(),
            ))
            token = new_token(Role.CHANNEL)
            await accounts.add_credential(token_hash(token), Principal(Role.CHANNEL, channel.id), clock.now())
            saved["channel_id"], saved["channel_token"] = channel.id, token
            saved["agents"] = {}
        elif channel.webhook_url != webhook:  # served on another host or port than last time
            await accounts.set_webhook_url(channel.id, webhook)
        saved["webhook_secret"] = channel.webhook_secret
        widget = await accounts.channel(saved.get("widget_channel_id", "")) if saved.get("widget_channel_id") else None
        if widget is None:
            # The built-in web chat: the demo page at /widget/demo/<id> embeds it.
            widget = await accounts.create_channel(Channel(
                id=new_id("chn"), name="Acme support", webhook_url=None,
                webhook_secret="whsec_" + secrets.token_urlsafe(24), created_at=clock.now(), kind="widget",
            ))
            saved["widget_channel_id"] = widget.id
        if settings.matrix_channel_id and await accounts.channel(settings.matrix_channel_id) is None:
            # The Matrix bridge's rooms belong to the channel its settings name.
            await accounts.create_channel(Channel(
                id=settings.matrix_channel_id, name="Matrix", webhook_url=None,
                webhook_secret="whsec_" + secrets.token_urlsafe(24), created_at=clock.now(), kind="matrix",
            ))
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
        if "supervisor_token" not in saved:
            token = new_token(Role.SUPERVISOR)
            await accounts.add_credential(token_hash(token), Principal(Role.SUPERVISOR, new_id("sup")), clock.now())
            saved["supervisor_token"] = token
        saved["people"] = await _ensure_people(engines, agents, saved.get("people", {}), clock.now())
    finally:
        await store.close()
        await engines.dispose()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(saved, indent=2))
    os.chmod(tmp, 0o600)
    tmp.replace(state_file)
    return DemoTokens(admin=saved["admin_token"], supervisor=saved["supervisor_token"],
                      channel=saved["channel_token"], channel_id=saved["channel_id"],
                      webhook_secret=saved["webhook_secret"], agents=agents,
                      people={e: (p["role"], p["password"]) for e, p in saved["people"].items()},
                      widget_channel_id=saved["widget_channel_id"])


async def _ensure_people(engines: Any, agents: dict[str, dict[str, str]], saved: dict[str, Any],
                         now: float) -> dict[str, Any]:
    """The demo people, with passwords made up once and kept in var/demo.json
    (a demo: a real deployment creates people with POST /v1/admin/people)."""
    people = People(engines)
    out: dict[str, Any] = {}
    for email, name, role, agent_name in DEMO_PEOPLE:
        agent_id = agents[agent_name]["id"] if agent_name else None
        found = await people.by_email(email)
        if found is not None and email in saved and found[0].agent_id == agent_id:
            out[email] = saved[email]
            continue
        password = secrets.token_urlsafe(9)
        if found is None:
            await people.create(new_person(email, name, role, agent_id, now), hash_password(password))
        else:  # the database was reset, or the state file lost: a fresh password
            await people.update(found[0].id, password_hash=hash_password(password), agent_id=agent_id,
                                disabled_at=None)
        out[email] = {"role": role.value, "password": password}
    return out


def set_up(settings: Settings) -> DemoTokens:
    """Everything the demo needs, made once and kept in settings.demo_dir."""
    from tierdesk.progress import Progress

    upgrade(settings.database_url)
    with Progress() as progress:
        ensure_model(settings, progress)
    return asyncio.run(_ensure_accounts(settings, settings.demo_dir / "demo.json"))


def write_env(settings: Settings, tokens: DemoTokens, admin_token: str) -> Path:
    """demo.env: the walk-through's shell variables (README.md), for `. var/demo.env`."""
    first_agent = tokens.agents.get(DEMO_AGENTS[0][0]) or next(iter(tokens.agents.values()))
    path = settings.demo_dir / "demo.env"
    lines = [
        "# tierdesk demo: `. var/demo.env` sets what README.md's walk-through uses.",
        f"export TD={base_url(settings)}",
        f"export CH={tokens.channel}",
        f"export AG={first_agent['token']}",
        f"export SV={tokens.supervisor}",
        f"export AD={admin_token}",
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def banner(settings: Settings, tokens: DemoTokens, admin_token: str) -> str:
    env = settings.demo_dir / "demo.env"
    try:
        shown = env.relative_to(Path.cwd())
    except ValueError:
        shown = env
    lines = [
        "",
        f"tierdesk demo is ready at {base_url(settings)}",
        f"  admin token:       {admin_token}   ($AD)",
        f"  supervisor token:  {tokens.supervisor}   ($SV: metrics, queue, FAQ misses)",
        f"  channel token:     {tokens.channel}   ($CH; channel {tokens.channel_id})",
    ]
    for n, (name, a) in enumerate(tokens.agents.items()):
        lines.append(f"  agent token:       {a['token']}   ({name}; skills {a['skills']}"
                     + ("; $AG" if n == 0 else "") + ")")
    lines.append(f"  demo inbox:        {inbox_url(settings)}   (the channel's webhook: agent replies arrive here)")
    base = base_url(settings)
    lines += ["", f"Web chat demo (a customer's view): {base}/widget/demo/{tokens.widget_channel_id}",
              f"  embed it on a page: <script src=\"{base}/widget/widget.js\" "
              f"data-channel=\"{tokens.widget_channel_id}\" async></script>"]
    if settings.matrix_homeserver:
        lines += [f"Matrix bridge: write to {settings.matrix_user_id} on {settings.matrix_homeserver} "
                  f"(channel {settings.matrix_channel_id})"]
    lines += ["", f"Console: {base}/console/   sign in as (email / password):"]
    for email, (role, password) in tokens.people.items():
        lines.append(f"  {role:<11} {email:<26} {password}")
    lines += [
        "",
        "Next, in another terminal at the project's root:",
        f"  . {shown}        # sets TD, CH, AG, SV and AD",
        "and follow README.md, \"A walk through with curl\". For example:",
        """  curl -s $TD/v1/messages -H "Authorization: Bearer $CH" -H 'Content-Type: application/json' \\""",
        """    -d '{"message_id":"m1","conversation_id":"c1","customer":{"id":"u1"},"text":"how do I reset my password"}'""",
        "",
    ]
    return "\n".join(lines)

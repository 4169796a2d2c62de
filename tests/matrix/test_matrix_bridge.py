"""The Matrix bridge against a real Synapse on 127.0.0.1 (`make matrix`):
a customer in a Matrix room is answered by the bot, handed to a person, and
gets the agent's replies; the homeserver restarts mid-conversation and the
bridge restarts, resuming from its stored sync token; no message is lost or
delivered twice in either direction."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from router.model import Channel
from router.ports import SystemClock
from storage.accounts import Accounts
from storage.channels import ChannelData
from storage.engine import create_engines
from tests.support.browser import ThreadedServer
from tests.support.server import free_port
from tests.support.synapse import SYNAPSE_PYTHON, MatrixUser, Synapse
from tierdesk.channels.matrix import CURSOR
from tierdesk.settings import Settings
from tierdesk.web import keys

if not SYNAPSE_PYTHON.exists():  # pragma: no cover - `make matrix` makes it
    pytest.skip(f"{SYNAPSE_PYTHON} is missing: `make matrix` installs Synapse", allow_module_level=True)

ADMIN = "td_admin_matrix-tests"
CHANNEL = "chn_matrix_test"
FAQ = "how do I reset my password"
HUMAN = "I want to talk to a human"
WAIT = 90.0  # generous: Synapse and the machine are slow and shared


def until(condition: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except OSError as exc:  # the homeserver is (re)starting
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synapse]:
    hs = Synapse(tmp_path_factory.mktemp("synapse"))
    hs.generate()
    hs.start()
    try:
        hs.register("tierdesk", "bot password 1")
        hs.register("alice", "alice password 1")
        yield hs
    finally:
        hs.stop()


class Desk:
    """tierdesk with the bridge on, started and stopped at will on one database."""

    def __init__(self, db: Path, synapse: Synapse, demo_model: Any) -> None:
        self.db, self.synapse, self.model = db, synapse, demo_model
        self.server: ThreadedServer | None = None
        self.port = free_port()

    def start(self) -> ThreadedServer:
        settings = Settings.from_env(
            {}, database_url=f"sqlite:///{self.db}", admin_token=ADMIN, port=self.port, log_format="console",
            log_level="warning", sweep_interval_seconds=3600.0, outbox_poll_seconds=0.2,
            outbox_backoff_base_seconds=0.5, outbox_backoff_cap_seconds=2.0, rate_limit_ip_per_second=0.0,
            matrix_homeserver=self.synapse.url, matrix_user_id="@tierdesk:tierdesk.test",
            matrix_password="bot password 1", matrix_channel_id=CHANNEL, matrix_sync_timeout_seconds=2.0)
        self.server = ThreadedServer(settings, SystemClock(), self.model)  # type: ignore[arg-type]
        self.server.start()
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def http(self, *args: Any, **kw: Any) -> Any:
        assert self.server is not None
        return self.server.http(*args, **kw)

    @property
    def bridge(self) -> Any:
        assert self.server is not None
        return self.server.app[keys.MATRIX]


async def _make_channel(url: str) -> None:
    engines = create_engines(url)
    try:
        await Accounts(engines).create_channel(Channel(id=CHANNEL, name="Matrix", webhook_secret="whsec_matrix",
                                                       created_at=time.time(), kind="matrix"))
    finally:
        await engines.dispose()


async def _rewind(url: str, token: str) -> None:
    engines = create_engines(url)
    try:
        await ChannelData(engines).set_cursor(CHANNEL, CURSOR, token, time.time())
    finally:
        await engines.dispose()


async def _cursor(url: str) -> str | None:
    engines = create_engines(url)
    try:
        return await ChannelData(engines).cursor(CHANNEL, CURSOR)
    finally:
        await engines.dispose()


@pytest.fixture
def desk(tmp_path: Path, sqlite_template: Path, synapse: Synapse, demo_model: Any) -> Iterator[Desk]:
    db = tmp_path / "tierdesk.db"
    shutil.copy(sqlite_template, db)
    asyncio.run(_make_channel(f"sqlite:///{db}"))
    d = Desk(db, synapse, demo_model)
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_a_conversation_in_a_matrix_room_survives_homeserver_and_bridge_restarts(synapse: Synapse,
                                                                                  desk: Desk) -> None:
    bot = "@tierdesk:tierdesk.test"
    ann = desk.http("POST", "/v1/admin/agents", ADMIN, {"name": "Ann", "skills": ["general"], "capacity": 2,
                                                         "status": "online"}, expect=201)
    alice = MatrixUser(synapse, "alice", "alice password 1")
    room = alice.create_room(invite=bot)
    until(lambda: bot in alice.joined(room), "the bridge to accept the invite")

    def from_bot() -> list[str]:
        return alice.messages_from(room, bot)

    def customer_texts() -> list[str]:
        held = desk.http("GET", "/v1/agents/me/conversations", ann["token"])["conversations"]
        if not held:
            return []
        history = desk.http("GET", f"/v1/conversations/{held[0]['id']}", ann["token"])["messages"]
        return [m["text"] for m in history if m["sender"] == "customer"]

    # the bot answers an FAQ question in the room
    alice.send(room, FAQ)
    answer = until(lambda: [b for b in from_bot() if "password" in b.lower()], "the bot's answer")
    url = f"sqlite:///{desk.db}"
    early = until(lambda: asyncio.run(_cursor(url)), "a stored sync token")
    # asking for a person: connected to Ann, who replies
    alice.send(room, HUMAN)
    until(lambda: [b for b in from_bot() if "Ann is here to help you" in b], "the connecting notice")
    [conv] = until(lambda: desk.http("GET", "/v1/agents/me/conversations", ann["token"])["conversations"],
                   "the handoff to Ann")
    assert conv["external_id"] == room and conv["customer"]["id"] == alice.user_id
    desk.http("POST", f"/v1/conversations/{conv['id']}/replies", ann["token"], {"text": "Hello from Ann"},
              expect=201)
    until(lambda: "Ann: Hello from Ann" in from_bot(), "Ann's reply in the room")

    # the homeserver restarts mid-conversation; Ann replies while it is down
    synapse.stop()
    desk.http("POST", f"/v1/conversations/{conv['id']}/replies", ann["token"], {"text": "While it was down"},
              expect=201)
    time.sleep(3)  # the delivery fails and is retried meanwhile
    synapse.start()
    until(lambda: "Ann: While it was down" in from_bot(), "the reply sent while the homeserver was down")
    alice.send(room, "back after the restart")
    until(lambda: "back after the restart" in customer_texts(), "the customer's message after the restart")

    # the bridge restarts; the customer writes meanwhile
    desk.stop()
    stored = asyncio.run(_cursor(url))
    assert stored and stored != early, "the bridge stores its sync token as it goes"
    alice.send(room, "while the bridge was down 1")
    alice.send(room, "while the bridge was down 2")
    desk.start()
    until(lambda: "while the bridge was down 2" in customer_texts(), "the messages sent while the bridge was down")
    assert desk.bridge.resumed_from == stored

    # a bridge that died before storing its token reads events again from an
    # older one: the same messages by their event ids, nothing done twice
    desk.stop()
    asyncio.run(_rewind(url, early))
    desk.start()
    until(lambda: desk.bridge.batches >= 2, "the bridge to read the room again")
    assert desk.bridge.resumed_from == early
    desk.http("POST", f"/v1/conversations/{conv['id']}/replies", ann["token"], {"text": "After the bridge restart"},
              expect=201)
    until(lambda: "Ann: After the bridge restart" in from_bot(), "a reply after the bridge restart")

    # nothing lost, nothing twice, either way
    assert customer_texts() == [FAQ, HUMAN, "back after the restart", "while the bridge was down 1",
                                "while the bridge was down 2"]
    bot_said = from_bot()
    for text in (answer[0], "Ann: Hello from Ann", "Ann: While it was down", "Ann: After the bridge restart"):
        assert bot_said.count(text) == 1, (text, bot_said)
    assert len([b for b in bot_said if "Ann is here to help you" in b]) == 1, bot_said

    # resolved: the customer is asked for a rating and answers with a number
    desk.http("POST", f"/v1/conversations/{conv['id']}/resolve", ann["token"])
    until(lambda: [b for b in from_bot() if "How did we do?" in b], "the rating request")
    alice.send(room, "5")

    def rated() -> bool:
        report = desk.http("GET", "/v1/metrics?exact=true", ADMIN)
        return report["groups"][0]["human"]["satisfaction"]["denominator"] == 1

    until(rated, "the rating in the satisfaction metric")

"""`tierdesk serve --demo`: the demo channel delivers to the server's own
demo inbox, which checks signatures and lists what arrived."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson

from router.ports import FakeClock
from storage.accounts import Accounts
from storage.engine import create_engines
from tests.support.api import ADMIN_TOKEN
from tests.support.models import copy_store
from tierdesk.demo import set_up
from tierdesk.settings import Settings
from tierdesk.signing import HEADER, sign
from tierdesk.web.app import create_app
from tierdesk.web.demo_inbox import DemoInbox

SECRET = "whsec_demo-test"


async def test_the_inbox_keeps_signed_deliveries_once_and_refuses_unsigned_ones(aiohttp_client, db_url, demo_model,
                                                                                clock: FakeClock) -> None:
    from tierdesk.models import LiveModel

    settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN, log_format="console")
    app = create_app(settings, clock=clock, model=LiveModel.of(demo_model), demo_inbox=DemoInbox("chn_demo", SECRET))
    client = await aiohttp_client(app)
    body = orjson.dumps({"type": "agent_message", "text": "Sorry about that"})
    signed = {HEADER: sign(SECRET, int(clock.now()), body), "Idempotency-Key": "msg_1",
              "Content-Type": "application/json"}
    for _ in range(2):  # the second is a repeat (its acknowledgement was lost): kept once
        resp = await client.post("/demo/inbox", data=body, headers=signed)
        assert resp.status == 200
    assert (await resp.json()) == {"ok": True, "repeat": True}
    for headers, code in (({"Idempotency-Key": "msg_2"}, "signature_required"),
                          ({HEADER: sign("another secret", int(clock.now()), body)}, "bad_signature")):
        resp = await client.post("/demo/inbox", data=body, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == code
    listing = await (await client.get("/demo/inbox", params={"wait": "5"})).json()  # not empty: at once
    assert listing["channel_id"] == "chn_demo" and listing["repeats"] == 1
    for bad in ("-1", "31", "nan", "soon"):
        resp = await client.get("/demo/inbox", params={"wait": bad})
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "validation_failed"
    [kept] = listing["received"]
    assert kept["payload"]["text"] == "Sorry about that" and kept["signature"] == "valid"
    assert kept["idempotency_key"] == "msg_1" and kept["received_at"] == "2026-01-01T00:00:00Z"


async def test_without_demo_there_is_no_inbox(app_client) -> None:
    assert (await app_client.client.get("/demo/inbox")).status == 404


def test_the_demo_channel_delivers_to_the_inbox_where_the_server_listens(tmp_path: Path, demo_store: Path) -> None:
    models = copy_store(demo_store, tmp_path / "models")
    base = dict(database_url=f"sqlite:///{tmp_path / 'demo.db'}", models_dir=models, demo_dir=tmp_path / "var")
    first = set_up(Settings.from_env({}, port=8080, **base))
    again = set_up(Settings.from_env({}, port=9090, host="0.0.0.0", **base))
    assert again.channel_id == first.channel_id and again.supervisor == first.supervisor
    saved = json.loads((tmp_path / "var" / "demo.json").read_text())
    assert saved["supervisor_token"] == first.supervisor

    async def webhook() -> str | None:
        engines = create_engines(base["database_url"])
        try:
            channel = await Accounts(engines).channel(first.channel_id)
            assert channel is not None
            return channel.webhook_url
        finally:
            await engines.dispose()

    assert asyncio.run(webhook()) == "http://127.0.0.1:9090/demo/inbox"


async def test_waiting_on_an_empty_inbox_returns_with_the_first_delivery(aiohttp_client, db_url, demo_model,
                                                                         clock: FakeClock) -> None:
    from tierdesk.models import LiveModel

    settings = Settings.from_env({}, database_url=db_url, admin_token=ADMIN_TOKEN, log_format="console")
    app = create_app(settings, clock=clock, model=LiveModel.of(demo_model), demo_inbox=DemoInbox("chn_demo", SECRET))
    client = await aiohttp_client(app)
    waiting = asyncio.ensure_future(client.get("/demo/inbox", params={"wait": "30"}))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # empty: it waits
    body = orjson.dumps({"type": "agent_message", "text": "Here it is"})
    await client.post("/demo/inbox", data=body, headers={HEADER: sign(SECRET, int(clock.now()), body),
                                                          "Idempotency-Key": "msg_9"})
    listing = await (await asyncio.wait_for(waiting, 30)).json()
    assert [d["payload"]["text"] for d in listing["received"]] == ["Here it is"]

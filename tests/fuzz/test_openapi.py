"""Schemathesis generates requests from the OpenAPI description the server
serves and sends them to a real server process: no 5xx, schema-invalid
requests refused, and every response (status, headers, body) as the
description says. Bounded examples per operation: `make fuzz`, about a
minute, run by CI beside `make test`.

Not under pytest-xdist (`make test`'s `-n`): schemathesis gives every
operation's case the same node id, and xdist runs a node id once, so all
but one operation would go untested without a word."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.models import copy_store
from tests.support.server import ADMIN, Server, free_port

if os.environ.get("PYTEST_XDIST_WORKER"):
    raise pytest.UsageError("tests/fuzz runs without -n (make fuzz): under pytest-xdist only one of its "
                            "operations would run")

SPEC = Path(__file__).resolve().parents[2] / "tierdesk" / "web" / "openapi.yaml"
schema = schemathesis.openapi.from_path(str(SPEC))
# An invalid body can also be refused for its size before it is parsed
# (413, TIERDESK_MAX_BODY_BYTES): a refusal too.
_negative = schema.config.checks.negative_data_rejection
_negative.expected_statuses = [*_negative.expected_statuses, "413"]
EXAMPLES = 12
# The same cases on every run, so that `make test` is green or red for the
# code, never for the draw; TIERDESK_FUZZ_RANDOM=1 explores new ones (what
# it finds becomes a fix and, where it helps, a case in test_bad_input.py).
RANDOM = os.environ.get("TIERDESK_FUZZ_RANDOM") == "1"


def _post(url: str, token: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory,
                demo_store: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    models = copy_store(demo_store, tmp / "models")
    from storage.migrate import upgrade

    db = f"sqlite:///{tmp / 'fuzz.db'}"
    upgrade(db)
    server = Server(db, models, free_port(), tmp / "server.log",
                    TIERDESK_RATE_LIMIT_CHANNEL_PER_SECOND="0", TIERDESK_RATE_LIMIT_IP_PER_SECOND="0")
    server.start()
    try:
        channel = _post(f"{server.url}/v1/admin/channels", ADMIN, {"name": "fuzz"})
        agent = _post(f"{server.url}/v1/admin/agents", ADMIN,
                      {"name": "fuzz agent", "skills": ["general", "billing"], "capacity": 3, "status": "online"})
        supervisor = _post(f"{server.url}/v1/admin/supervisor-tokens", ADMIN, {})
        web = _post(f"{server.url}/v1/admin/channels", ADMIN, {"name": "fuzz web", "kind": "widget"})
        customer = _post(f"{server.url}/v1/widget/channels/{web['id']}/sessions", ADMIN, {})
        tokens = {"admin": ADMIN, "channel": channel["token"], "agent": agent["token"],
                  "supervisor": supervisor["token"], "customer": customer["session"]}
        yield server, tokens
    finally:
        server.stop()


@schema.exclude(path="/v1/agents/ws").exclude(path="/v1/widget/ws").parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_no_server_errors_and_responses_match_the_description(case, live_server) -> None:  # type: ignore[no-untyped-def]
    server, tokens = live_server
    # The first role the operation is for ("public" ones need no token).
    roles = [r for r in case.operation.definition.raw.get("x-roles") or ["admin"] if r in tokens] or ["admin"]
    token = tokens[roles[0]]
    # Every check but "schema-valid requests are accepted": a request can be
    # valid by the schema and still refused for what no schema can say (an
    # unknown conversation, a range that ends before it starts).
    case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                           excluded_checks=[positive_data_acceptance])

"""A real Synapse homeserver for the Matrix bridge's tests: configuration
generated into a temporary folder, SQLite, listening on 127.0.0.1 only,
nothing that reaches the internet (no federation, no URL previews, no key
servers), rate limits out of the way; users made with
register_new_matrix_user and the generated shared secret. Synapse lives in
its own virtualenv (.venv-synapse, made by `make matrix`): its pinned
dependencies stay out of tierdesk's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SYNAPSE_PYTHON = Path(os.environ.get("TIERDESK_TEST_SYNAPSE_PYTHON", ROOT / ".venv-synapse" / "bin" / "python"))
SERVER_NAME = "tierdesk.test"
LIMITS = {"per_second": 1000, "burst_count": 1000}


class Synapse:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.config = root / "homeserver.yaml"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "synapse.out"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def generate(self) -> None:
        subprocess.run([str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "--server-name", SERVER_NAME,
                        "--config-path", str(self.config), "--data-directory", str(self.root),
                        "--generate-config", "--report-stats=no"], check=True, cwd=self.root,
                       capture_output=True, timeout=300)
        config = yaml.safe_load(self.config.read_text())
        config.update({
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                           "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}],
            "enable_registration_without_verification": True,
            "trusted_key_servers": [], "suppress_key_server_warning": True,
            "federation_domain_whitelist": [], "url_preview_enabled": False, "report_stats": False,
            "presence": {"enabled": False},
            "rc_message": LIMITS, "rc_registration": LIMITS, "rc_login": {
                "address": LIMITS, "account": LIMITS, "failed_attempts": LIMITS},
            "rc_joins": {"local": LIMITS, "remote": LIMITS}, "rc_invites": {
                "per_room": LIMITS, "per_user": LIMITS, "per_issuer": LIMITS},
            "rc_3pid_validation": LIMITS, "rc_admin_redaction": LIMITS,
        })
        self.config.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 180.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "--config-path",
                                          str(self.config)], cwd=self.root, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Synapse exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/_matrix/client/versions", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("Synapse did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def register(self, user: str, password: str) -> str:
        script = SYNAPSE_PYTHON.parent / "register_new_matrix_user"
        subprocess.run([str(script), "-u", user, "-p", password, "--no-admin", "-c", str(self.config), self.url],
                       check=True, capture_output=True, timeout=120)
        return f"@{user}:{SERVER_NAME}"


class MatrixUser:
    """A customer's Matrix client, just the calls the tests need."""

    def __init__(self, synapse: Synapse, user: str, password: str) -> None:
        self.synapse = synapse
        self.user_id = f"@{user}:{SERVER_NAME}"
        self.token = self.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password})["access_token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self.synapse.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if getattr(self, "token", None):
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def create_room(self, invite: str) -> str:
        return self.call("POST", "/_matrix/client/v3/createRoom", {  # type: ignore[no-any-return]
            "invite": [invite], "is_direct": True, "preset": "trusted_private_chat"})["room_id"]

    def send(self, room_id: str, text: str) -> str:
        txn = uuid.uuid4().hex
        return self.call("PUT", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/{txn}",
                         {"msgtype": "m.text", "body": text})["event_id"]  # type: ignore[no-any-return]

    def timeline(self, room_id: str) -> list[dict[str, Any]]:
        """Every event of the room, oldest first."""
        events: list[dict[str, Any]] = []
        token = ""
        while True:
            q = "dir=b&limit=100" + (f"&from={urllib.parse.quote(token)}" if token else "")
            page = self.call("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?{q}")
            events += page.get("chunk", [])
            if not page.get("end") or not page.get("chunk"):
                break
            token = page["end"]
        return list(reversed(events))

    def messages_from(self, room_id: str, sender: str) -> list[str]:
        return [e["content"].get("body", "") for e in self.timeline(room_id)
                if e["type"] == "m.room.message" and e["sender"] == sender]

    def joined(self, room_id: str) -> set[str]:
        return set(self.call("GET", f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/joined_members")
                   ["joined"])

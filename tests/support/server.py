"""A real tierdesk server process for tests that need one (faults, fuzzing)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "td_admin_faults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db_url: str, models: Path, port: int, log: Path, *, args: Sequence[str] = (),
                 cwd: Path = ROOT, **env: str) -> None:
        """``args``: after `tierdesk serve` (``--demo``); ``cwd``: where it runs."""
        # Rate limits off: the load generators of fault tests retry hard
        # while the server is down, which is not what they test.
        self.env = {**os.environ, "TIERDESK_DATABASE_URL": db_url, "TIERDESK_ADMIN_TOKEN": ADMIN,
                    "TIERDESK_MODELS_DIR": str(models), "TIERDESK_LOG_LEVEL": "warning",
                    "TIERDESK_PORT": str(port), "TIERDESK_RATE_LIMIT_CHANNEL_PER_SECOND": "0",
                    "TIERDESK_RATE_LIMIT_IP_PER_SECOND": "0", **env}
        self.port = port
        self.log = log
        self.args = list(args)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tierdesk.cli", "serve", *self.args], env=self.env,
                                         cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

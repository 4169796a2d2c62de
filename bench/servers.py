"""The processes under load: a server started, probed, and stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from common import HOST, ROOT, BenchError


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise BenchError(f"{method} {url}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
    ctype = resp.headers.get("Content-Type", "")
    return json.loads(raw) if "json" in ctype else raw.decode()


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, log_path: Path,
                 cwd: Path = ROOT) -> None:
        """``cwd``: where it runs, first on its sys.path (another source tree's)."""
        self.name, self.argv, self.env, self.port, self.log_path, self.cwd = name, argv, env, port, log_path, cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://{HOST}:{port}"

    def start(self, ready_path: str | None, timeout: float = 90.0) -> None:
        self._log = open(self.log_path, "wb")
        # A session of its own: a Ctrl-C at the terminal reaches this script,
        # which then stops the server in its `finally`.
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if ready_path is None:
                    with socket.create_connection((HOST, self.port), timeout=1):
                        return
                else:
                    http("GET", self.base + ready_path, timeout=2)
                    return
            except (OSError, BenchError):
                time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_problems(self) -> dict[str, int]:
        """Warning/error log events by name (the server logs JSON lines)."""
        found: Counter[str] = Counter()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return {}
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    found["unstructured: " + line.strip()[:80]] += 1
                continue
            if isinstance(rec, dict) and rec.get("level") in ("warning", "error", "critical"):
                found[f"{rec.get('level')}: {rec.get('event')}"] += 1
        return dict(found)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if kill:
                # The session's whole group: a server with workers dies at once, as in a crash.
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

"""`tierdesk serve` with TIERDESK_WORKERS > 1: several server processes on
one port.

One Python process serves on one core at most (the event loop and the
classifier hold the GIL). Workers share the port through SO_REUSEPORT, the
kernel spreading connections over them, and share their working sets the
way separate instances do, through PostgreSQL (docs/deployment.md). This
process only starts them, restarts one that dies, and passes SIGTERM on.
"""

from __future__ import annotations

import ctypes
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from types import FrameType

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
# How long workers get to drain after SIGTERM (each has a 10 s shutdown
# timeout of its own) before they are killed.
STOP_GRACE_SECONDS = 20.0
RESTART_DELAY_SECONDS = 1.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # A supervisor killed outright (SIGKILL) must not leave workers behind.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def supervise(workers: int, host: str, port: int) -> int:
    # Where the workers publish their /metrics series to one another
    # (tierdesk/web/worker_metrics.py): one directory per run.
    try:
        metrics_dir: str | None = tempfile.mkdtemp(prefix="tierdesk-metrics-")
    except OSError as exc:
        # No writable temporary directory (a read-only container without
        # TMPDIR): serve anyway, each worker's /metrics its own.
        log.warning("worker_metrics_not_shared", error=repr(exc))
        metrics_dir = None
    try:
        return _supervise(workers, host, port, metrics_dir)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(workers: int, host: str, port: int, metrics_dir: str | None) -> int:
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        # A replacement takes the number of the worker it replaces.
        argv = [sys.executable, "-m", "tierdesk.cli", "serve", "--host", host, "--port", str(port), "--reuse-port"]
        if metrics_dir is not None:
            argv += ["--worker", str(index), "--worker-metrics-dir", metrics_dir]
        return subprocess.Popen(argv, preexec_fn=_die_with_parent)

    running = [start(i) for i in range(workers)]
    print(f"tierdesk: {workers} workers on http://{host}:{port}", flush=True)
    while not stopping:
        time.sleep(0.2)
        for i, proc in enumerate(running):
            if proc.poll() is not None and not stopping:
                log.error("worker_exited", pid=proc.pid, code=proc.returncode)
                time.sleep(RESTART_DELAY_SECONDS)
                running[i] = start(i)
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return 0

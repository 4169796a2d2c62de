"""How a long job shows that it is moving: a bar redrawn in place on a
terminal, plain lines otherwise (logs, CI, pipes), so nothing is lost and no
control characters get in.

Two forms: ``Progress`` takes the messages a job already reports
(training, evaluation, a shadow run, seeding or rebuilding the metrics:
"cross-validation fold 2/5", "replayed 512/3000 messages"), where a count
"i/n" moves a tqdm bar and the other messages print above it;
``ProgressBar`` is told a count directly (the simulator and the staffing
forecast).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

_COUNT = re.compile(r"(\d[\d,]*)\s*/\s*(\d[\d,]*)")


def _number(s: str) -> int:
    return int(s.replace(",", ""))


class Progress:
    """A callable taking progress messages; close it (or use it as a
    context manager) when the job ends. Thread-safe: `faq eval --workers`
    reports from a second thread."""

    def __init__(self, stream: TextIO | None = None, *, prefix: str = "  … ", tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.prefix = prefix
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self._bar: Any = None
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        with self._lock:
            if not self.tty:
                # One write per line: print() writes the text and its newline
                # separately, which another thread could split.
                self.stream.write(f"{self.prefix}{message}\n")
                self.stream.flush()
                return
            count = _COUNT.search(message)
            if count is None:
                self._write(message)
                return
            done, total = _number(count.group(1)), _number(count.group(2))
            label = re.sub(r"\s+", " ", message[: count.start()] + message[count.end():]).strip(" :,")
            self._advance(label, done, total)

    def _write(self, message: str) -> None:
        from tqdm import tqdm

        if self._bar is not None:
            self._bar.write(f"{self.prefix}{message}", file=self.stream)
        else:
            tqdm.write(f"{self.prefix}{message}", file=self.stream)

    def _advance(self, label: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bar
        if bar is not None and (bar.total != total or done < bar.n):
            self._finish()
            bar = None
        if bar is None:
            # A terminal that reports no size (a pty nobody sized) would get
            # no bar at all (tqdm reads it as -1 rows): 80 x 24 then.
            sized = self._columns() > 0
            bar = self._bar = tqdm(total=total, file=self.stream, desc=label, leave=True, dynamic_ncols=sized,
                                   ncols=None if sized else 80, nrows=None if sized else 24,
                                   bar_format="  {desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                                              "[{elapsed}<{remaining}]")
        bar.set_description_str(label, refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            self._finish()

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return 0

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        with self._lock:
            self._finish()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ProgressBar:
    def __init__(self, label: str, total: int | None, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.started = time.monotonic()
        self._last_tenth = -1
        self._last_draw = 0.0

    def update(self, done: int) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < 0.1 and (self.total is None or done < self.total):
                return
            self._last_draw = now
            if self.total:
                share = min(1.0, done / self.total)
                bar = "█" * int(share * self.width) + "·" * (self.width - int(share * self.width))
                self.stream.write(f"\r{self.label} [{bar}] {share:4.0%} {done:,}/{self.total:,} {elapsed:5.1f} s")
            else:
                self.stream.write(f"\r{self.label} {done:,} {elapsed:5.1f} s")
            self.stream.flush()
            return
        tenth = int(10 * done / self.total) if self.total else done // 100_000
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            of = f"/{self.total:,}" if self.total else ""
            print(f"{self.label}: {done:,}{of} ({elapsed:.1f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

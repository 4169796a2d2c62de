"""Progress of a long command: a bar redrawn in place on a terminal, a few
plain lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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

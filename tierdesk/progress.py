"""How a long job (training, evaluation, a shadow run, seeding or
rebuilding the metrics) shows that it is moving.

The jobs report plain messages ("cross-validation fold 2/5", "replayed
512/3000 messages"). On a terminal a message that carries a count "i/n"
moves a progress bar (tqdm) and the others are printed above it; anywhere
else (a pipe, a log file, CI) each message is one plain line, so nothing is
lost and no control characters get in.
"""

from __future__ import annotations

import os
import re
import sys
import threading
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

"""The Prometheus text exposition (format 0.0.4): counters, gauges and
histograms, kept by hand rather than with prometheus-client (why:
docs/deployment.md, "Prometheus").

Conventions followed: a counter's name ends in ``_total`` and it is typed
``counter`` (a figure that only goes up is a counter even when it is read
from a component's attribute at scrape time); label values and HELP texts
are escaped; numbers are written exactly.

With several workers (TIERDESK_WORKERS) every series carries the worker's
number, and a scrape, which the kernel hands to any one of them, shows each
worker's series (tierdesk/web/worker_metrics.py): ``render`` takes the
others' latest ``families()`` and groups each metric's lines together, as
the text format requires.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4"

# One metric's series lines ("name{labels} value"), by metric name.
Families = Mapping[str, list[str]]
Labels = tuple[tuple[str, str], ...]


def escape_label_value(v: str) -> str:
    """Backslash, double quote and line feed, escaped as the format asks."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _number(v: float) -> str:
    """Exactly: whole numbers as integers (``{:g}`` would write 1234567 as
    1.23457e+06), others as the shortest repr that reads back the same."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


class Registry:
    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        """``labels``: put on every series (the worker's number)."""
        self._const: Labels = tuple(sorted((labels or {}).items()))
        self._counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}
        self._hist: dict[str, dict[Labels, list[float]]] = defaultdict(dict)
        self._read: dict[str, Callable[[], float]] = {}
        self._read_by_label: dict[str, tuple[str, Callable[[], Mapping[str, float]]]] = {}

    def _declare(self, name: str, kind: str, help_: str) -> None:
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r}: a counter's name ends in _total")
        if kind != "counter" and name.endswith("_total"):
            raise ValueError(f"{kind} {name!r}: only a counter's name ends in _total")
        self._help[name] = (kind, help_)

    def counter(self, name: str, help_: str, read: Callable[[], float] | None = None) -> None:
        """A counter, increased with ``inc``, or read at each scrape from
        ``read`` (a component's own running count)."""
        self._declare(name, "counter", help_)
        if read is not None:
            self._read[name] = read

    def counter_by(self, name: str, help_: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
        """A counter read at each scrape, one series per value of ``label``."""
        self._declare(name, "counter", help_)
        self._read_by_label[name] = (label, read)

    def histogram(self, name: str, help_: str) -> None:
        self._declare(name, "histogram", help_)

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self._declare(name, "gauge", help_)
        self._read[name] = read

    def gauge_by(self, name: str, help_: str, label: str, read: Callable[[], Mapping[str, float]]) -> None:
        """A gauge read at each scrape, one series per value of ``label``."""
        self._declare(name, "gauge", help_)
        self._read_by_label[name] = (label, read)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._hist[name]
        state = series.get(key)
        if state is None:
            state = series[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)  # buckets…, count, sum
        i = bisect.bisect_left(LATENCY_BUCKETS, value)
        if i < len(LATENCY_BUCKETS):
            state[i] += 1
        state[-2] += 1
        state[-1] += value

    def families(self) -> dict[str, list[str]]:
        """This process's series lines, by metric name."""
        out: dict[str, list[str]] = {}
        const = self._const
        for name, (kind, _) in self._help.items():
            lines = out[name] = []
            if name in self._read:
                lines.append(f"{name}{_labels(const)} {_number(self._read[name]())}")
            elif name in self._read_by_label:
                label, read = self._read_by_label[name]
                for value, v in sorted(read().items()):
                    lines.append(f"{name}{_labels(const + ((label, value),))} {_number(v)}")
            elif kind == "counter":
                for key, v in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(const + key)} {_number(v)}")
            else:
                for key, state in sorted(self._hist.get(name, {}).items()):
                    cumulative = 0.0
                    for le, n in zip(LATENCY_BUCKETS, state, strict=False):
                        cumulative += n
                        lines.append(f"{name}_bucket{_labels(const + key + (('le', repr(le)),))} "
                                     f"{_number(cumulative)}")
                    lines.append(f"{name}_bucket{_labels(const + key + (('le', '+Inf'),))} {_number(state[-2])}")
                    lines.append(f"{name}_count{_labels(const + key)} {_number(state[-2])}")
                    lines.append(f"{name}_sum{_labels(const + key)} {_number(state[-1])}")
        return out

    def render(self, others: Iterable[Families] = ()) -> str:
        """The exposition: this process's series, then those of ``others``
        (other workers' ``families()``) under each metric's one header."""
        own = self.families()
        rest = list(others)
        lines: list[str] = []
        for name, (kind, help_) in sorted(self._help.items()):
            lines.append(f"# HELP {name} {_escape_help(help_)}")
            lines.append(f"# TYPE {name} {kind}")
            lines += own[name]
            for families in rest:
                lines += families.get(name, ())
        return "\n".join(lines) + "\n"

"""A minimal Prometheus text exposition: counters, gauges and histograms.

With several workers (TIERDESK_WORKERS) every series carries the worker's
number, and a scrape, which the kernel hands to any one of them, shows each
worker's series (tierdesk/web/worker_metrics.py): ``render`` takes the
others' latest ``families()`` and groups each metric's lines together, as
the text format requires.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# One metric's series lines ("name{labels} value"), by metric name.
Families = Mapping[str, list[str]]


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


class Registry:
    def __init__(self, labels: Mapping[str, str] | None = None) -> None:
        """``labels``: put on every series (the worker's number)."""
        self._const = tuple(sorted((labels or {}).items()))
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}
        self._hist: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], float]] = {}

    def counter(self, name: str, help_: str) -> None:
        self._help[name] = ("counter", help_)

    def histogram(self, name: str, help_: str) -> None:
        self._help[name] = ("histogram", help_)

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help_)
        self._gauges[name] = read

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
            if kind == "counter":
                for key, v in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(const + key)} {v:g}")
            elif kind == "gauge":
                lines.append(f"{name}{_labels(const)} {self._gauges[name]():g}")
            else:
                for key, state in sorted(self._hist.get(name, {}).items()):
                    cumulative = 0.0
                    for le, n in zip(LATENCY_BUCKETS, state, strict=False):
                        cumulative += n
                        lines.append(f"{name}_bucket{_labels(const + key + (('le', repr(le)),))} {cumulative:g}")
                    lines.append(f"{name}_bucket{_labels(const + key + (('le', '+Inf'),))} {state[-2]:g}")
                    lines.append(f"{name}_count{_labels(const + key)} {state[-2]:g}")
                    lines.append(f"{name}_sum{_labels(const + key)} {state[-1]:.6f}")
        return out

    def render(self, others: Iterable[Families] = ()) -> str:
        """The exposition: this process's series, then those of ``others``
        (other workers' ``families()``) under each metric's one header."""
        own = self.families()
        rest = list(others)
        lines: list[str] = []
        for name, (kind, help_) in sorted(self._help.items()):
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines += own[name]
            for families in rest:
                lines += families.get(name, ())
        return "\n".join(lines) + "\n"

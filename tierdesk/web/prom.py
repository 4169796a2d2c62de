"""A minimal Prometheus text exposition: counters, gauges and histograms."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


class Registry:
    def __init__(self) -> None:
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

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, help_) in sorted(self._help.items()):
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "counter":
                for key, v in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(key)} {v:g}")
            elif kind == "gauge":
                lines.append(f"{name} {self._gauges[name]():g}")
            else:
                for key, state in sorted(self._hist.get(name, {}).items()):
                    cumulative = 0.0
                    for le, n in zip(LATENCY_BUCKETS, state, strict=False):
                        cumulative += n
                        lines.append(f"{name}_bucket{_labels(key + (('le', repr(le)),))} {cumulative:g}")
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {state[-2]:g}")
                    lines.append(f"{name}_count{_labels(key)} {state[-2]:g}")
                    lines.append(f"{name}_sum{_labels(key)} {state[-1]:.6f}")
        return "\n".join(lines) + "\n"

"""Charts of simulations and staffing (PNG). matplotlib is imported inside
each function, so that serving never pays for it (and never needs it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from router.simulation import Result


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def simulation_charts(results: Mapping[str, Result], directory: Path) -> list[Path]:
    """Queue length over time, the distribution of waits, and occupancy per
    agent and per skill; one series per chooser."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    within = next(iter(results.values())).within

    fig, ax = plt.subplots(figsize=(9, 3.8))
    for name, r in results.items():
        if r.samples:
            ax.plot([(t - r.samples[0][0]) / 3600 for t, _, _ in r.samples], [n for _, n, _ in r.samples],
                    label=name, linewidth=0.9)
    ax.set_xlabel("hours from the first arrival")
    ax.set_ylabel("handoffs waiting")
    ax.set_title("Queue length over time")
    ax.legend()
    fig.tight_layout()
    paths.append(directory / "queue_length.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, r in results.items():
        waits = sorted(r.total.waits)
        if not waits:
            continue
        answered_share = r.total.answered / r.total.offered if r.total.offered else 0.0
        n = len(waits)
        step = max(1, n // 2000)
        xs = waits[::step] + [waits[-1]]
        ys = [answered_share * (i * step + 1) / n for i in range(len(xs) - 1)] + [answered_share]
        ax.plot(xs, ys, label=f"{name} (SL {r.total.within / r.total.offered:.1%})" if r.total.offered else name)
    ax.axvline(within, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("wait for an agent (s)")
    ax.set_ylabel("share of handoffs answered within")
    ax.set_title(f"Waits (service level: answered within {within:g} s)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    paths.append(directory / "waits.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(results)
    for k, (name, r) in enumerate(results.items()):
        occ = r.occupancies()
        a1.bar([i + k * width for i in range(len(occ))], [100 * v for v in occ.values()], width=width, label=name)
        if k == 0 and len(occ) <= 40:
            a1.set_xticks([i + 0.4 - width / 2 for i in range(len(occ))], list(occ), rotation=60, fontsize=7,
                          ha="right")
        summary = r.summary(samples=False, per_agent=False)["skills"]
        skills = sorted(summary)
        a2.bar([i + k * width for i in range(len(skills))],
               [100 * (summary[s]["occupancy_of_its_agents"] or 0) for s in skills], width=width, label=name)
        a2.set_xticks([i + 0.4 - width / 2 for i in range(len(skills))], skills, rotation=30)
    a1.set_ylabel("occupancy (% of staffed slot time)")
    a1.set_title("Occupancy per agent")
    a1.legend(loc="lower right")
    a2.set_title("per skill (its agents)")
    fig.tight_layout()
    paths.append(directory / "occupancy.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def staffing_week(days: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """A week of staffing reports (tierdesk/planning.py week_review): agents
    the forecast asked for against agents at work, and the service level
    achieved against the one predicted and the target."""
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    x: list[float] = []
    forecast, scheduled, worked, predicted = [], [], [], []
    hours: list[float] = []
    achieved: list[float] = []  # per hour: a quarter hour holds too few handoffs at night
    for d, report in enumerate(days):
        hour = [0, 0]
        for i, row in enumerate(report["slots"]):
            x.append(d + i / 96)
            forecast.append(row["agents"])
            scheduled.append(row["scheduled"])
            actual = row["actual"] or {}
            worked.append(actual.get("agents", 0))
            hour[0] += actual.get("offered", 0)
            hour[1] += actual.get("answered_within", 0)
            if i % 4 == 3:
                if hour[0]:
                    hours.append(d + (i - 1.5) / 96)
                    achieved.append(100 * hour[1] / hour[0])
                hour = [0, 0]
            rates = [(v["arrivals_per_hour"], v["service_level"]) for v in row["skills"].values()
                     if v["arrivals_per_hour"] and v["service_level"] is not None]
            total = sum(r for r, _ in rates)
            predicted.append(100 * sum(r * s for r, s in rates) / total if total else None)
    target = days[0]["target"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.step(x, forecast, where="post", label="forecast: agents on the desk", linewidth=1.2)
    top.step(x, scheduled, where="post", label=f"forecast: to schedule (shrinkage {target['shrinkage']:.0%})",
             linewidth=0.6, alpha=0.45)
    top.step(x, worked, where="post", label="agents at work (held a conversation)", linewidth=1.2)
    top.set_ylabel("agents")
    top.legend(loc="upper right", fontsize=8)
    top.set_title(f"Staffing forecast against the week it forecast: {days[0]['date']} – {days[-1]['date']} "
                  f"({target['concurrency']} conversations per agent)")
    bottom.plot(hours, achieved, ".", markersize=3.5, label="achieved (per hour)")
    bottom.plot(x, [v if v is not None else float("nan") for v in predicted], linewidth=0.8,
                label="predicted with the forecast desk")
    bottom.axhline(100 * target["service_level"], color="grey", linestyle=":", linewidth=1,
                   label=f"target ({target['service_level']:.0%} within {target['within_seconds']:g} s)")
    bottom.set_ylim(0, 102)
    bottom.set_ylabel("service level (%)")
    bottom.legend(loc="lower right", fontsize=8)
    bottom.set_xticks([d + 0.5 for d in range(len(days))],
                      [f"{r['weekday'][:3]} {r['date'][5:]}" for r in days])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

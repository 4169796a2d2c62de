"""Simulator benchmark: speed, the Erlang checks at full length, and the
routing-quality figures.

    .venv/bin/python bench/simulate_bench.py            # everything (~4 min of one core)
    .venv/bin/python bench/simulate_bench.py --no-doc   # without rewriting docs/routing.md

Exit status: 0 every target met, 3 some target missed (results written
anyway), 1 error. Single process: every figure is CPU time of one core
(time.process_time), whatever else the machine runs.

1. **Speed.** 1,000,000 conversations on a desk of 50 agents (4 skills, 2
   each, 3 conversations at once, 85 % load, lognormal handling, patience,
   VIPs): conversations a minute of CPU. Target ≥ 100,000.
2. **Erlang C** (one skill, 10 agents, concurrency 1, 85 % load, exponential
   handling, nobody leaves): 16 seeds × 250,000 conversations, the first 100
   handling times of each left out. The mean over seeds of the mean wait
   and of the service level (answered within 20 s), with their standard
   errors (sd over seeds ÷ 4), against Erlang C. Targets: mean wait within
   ±5 %, service level within ±1.5 points.
3. **Erlang A**: the same with exponential patience (mean 10 min), 16 ×
   100,000: time in queue, abandonment (±5 %) and service level (±1.5
   points) against Erlang A.
4. **Routing quality.** 20 agents, 4 skills, each agent two of them (a
   ring: agent i holds skills i and i+1), 85 % load, exponential handling:
   least loaded, round-robin and random on the same arrivals (8 seeds ×
   200,000), at concurrency 1 and 3. Targets for the served rule: mean wait
   ≤ 1.35 × pooled Erlang C (all slots serving every skill), no worse than
   the baselines (paired over seeds: mean difference + 2 standard errors
   ≥ 0), Gini of agent occupancy ≤ 0.015 and max − min ≤ 8 points. And the
   same desk with mixed capacities (1 to 4) for fairness, where the choosers
   differ most.
5. **A starved skill with fallback on**: 10 general agents (concurrency 1,
   exponential handling, 5 min); 10 % of the handoffs need billing, whose
   agents are all away; billing falls back to general after 30 s
   (router/rules.py) with the default wait credit (docs/routing.md). 4
   seeds × 100,000 at 60, 70 and 85 % load: billing's mean wait (target ≤
   45 s), and what general's own customers pay for it (mean wait, service
   level).

Writes bench/results/simulate.json and the section between
``<!-- simulate-bench:begin -->`` and ``<!-- simulate-bench:end -->`` of
docs/routing.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router.queueing import erlang_a, erlang_c_performance  # noqa: E402
from router.simulation import (  # noqa: E402
    CHOOSERS,
    AgentSpec,
    Exponential,
    LogNormal,
    SkillTraffic,
    Simulation,
    poisson_arrivals,
)

DOC = ROOT / "docs" / "routing.md"
RESULTS = ROOT / "bench" / "results" / "simulate.json"
BEGIN, END = "<!-- simulate-bench:begin -->", "<!-- simulate-bench:end -->"
H = 300.0  # mean handling time, seconds


def ring_desk(agents: int, skills: int, capacities: list[int]) -> list[AgentSpec]:
    """Agent i holds skills i and i+1 (mod skills); capacities go round by
    i // skills, so every skill has the same slots."""
    names = [f"s{i}" for i in range(skills)]
    return [AgentSpec(f"a{i:02d}", frozenset({names[i % skills], names[(i + 1) % skills]}),
                      capacities[(i // skills) % len(capacities)]) for i in range(agents)]


def cpu(fn: Any) -> tuple[Any, float]:
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def mean_se(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), statistics.stdev(xs) / math.sqrt(len(xs))


def speed(n: int) -> dict[str, Any]:
    desk = ring_desk(50, 4, [3])
    lam = 0.85 * 50 * 3 / H
    traffic = [SkillTraffic(f"s{i}", lam / 4, LogNormal(H, 1.2), Exponential(600.0), vip_share=0.05)
               for i in range(4)]
    r, t = cpu(lambda: Simulation(desk, seed=1, slot_seconds=900.0).run(poisson_arrivals(traffic, seed=1, count=n)))
    one = [AgentSpec(f"a{i}", frozenset({"general"}), 1) for i in range(10)]
    r1, t1 = cpu(lambda: Simulation(one, seed=1).run(
        poisson_arrivals([SkillTraffic("general", 8.5 / H, Exponential(H))], seed=1, count=n)))
    return {"desk": "50 agents, 4 skills (2 each), concurrency 3, 85 % load, lognormal, patience, VIP",
            "conversations": r.conversations, "cpu_seconds": t, "per_minute": r.conversations / t * 60,
            "events": r.events,
            "one_skill": {"conversations": r1.conversations, "cpu_seconds": t1, "per_minute": r1.conversations / t1 * 60},
            "target_per_minute": 100_000, "ok": r.conversations / t * 60 >= 100_000}


def erlang_runs(seeds: int, n: int, patience: float | None) -> tuple[list[dict[str, Any]], float]:
    one = [AgentSpec(f"a{i}", frozenset({"general"}), 1) for i in range(10)]
    traffic = [SkillTraffic("general", 8.5 / H, Exponential(H), Exponential(patience) if patience else None)]
    out, total = [], 0.0
    for seed in range(1, seeds + 1):
        r, t = cpu(lambda seed=seed: Simulation(one, seed=seed, warmup=100 * H).run(
            poisson_arrivals(traffic, seed=seed, count=n)))
        total += t
        out.append(r.summary(samples=False, per_agent=False))
    return out, total


def check(name: str, runs: list[float], theory: float, *, rel: float | None = None,
          points: float | None = None) -> dict[str, Any]:
    m, se = mean_se(runs)
    dev = m - theory
    tol = rel * theory if rel is not None else points  # type: ignore[operator]
    return {"figure": name, "simulated": m, "standard_error": se, "theory": theory, "deviation": dev,
            "relative_deviation": dev / theory if theory else None, "tolerance": tol,
            "margin_in_se": (tol - abs(dev)) / se if se else None, "ok": abs(dev) <= tol}


def erlang_c_check(seeds: int, n: int) -> dict[str, Any]:
    theory = erlang_c_performance(10, 8.5 / H, 1 / H, 20.0)
    runs, t = erlang_runs(seeds, n, None)
    return {"seeds": seeds, "conversations_each": n, "cpu_seconds": t, "checks": [
        check("mean wait (s)", [r["mean_wait"] for r in runs], theory.mean_wait, rel=0.05),
        check("service level (answered within 20 s)", [r["service_level"] for r in runs], theory.service_level,
              points=0.015),
    ]}


def erlang_a_check(seeds: int, n: int) -> dict[str, Any]:
    patience = 600.0
    theory = erlang_a(10, 8.5 / H, 1 / H, 1 / patience, 20.0)
    runs, t = erlang_runs(seeds, n, patience)
    return {"seeds": seeds, "conversations_each": n, "cpu_seconds": t, "patience_seconds": patience, "checks": [
        check("mean time in queue, everyone (s)", [r["mean_time_in_queue"] for r in runs], theory.mean_wait,
              rel=0.05),
        check("mean wait of those answered (s)", [r["mean_wait"] for r in runs], theory.mean_answer_wait, rel=0.05),
        check("abandonment", [r["abandonment"] for r in runs], theory.abandonment, rel=0.05),
        check("service level (answered within 20 s)", [r["service_level"] for r in runs], theory.service_level,
              points=0.015),
    ]}


def quality(concurrency: int, capacities: list[int] | None, seeds: int, n: int) -> dict[str, Any]:
    caps = capacities or [concurrency]
    desk = ring_desk(20, 4, caps)
    slots = sum(a.capacity for a in desk)
    lam = 0.85 * slots / H
    traffic = [SkillTraffic(f"s{i}", lam / 4, Exponential(H)) for i in range(4)]
    pooled = erlang_c_performance(slots, lam, 1 / H, 20.0)
    per: dict[str, dict[str, list[float]]] = {c: {"wait": [], "sl": [], "gini": [], "spread": []} for c in CHOOSERS}
    total = 0.0
    for seed in range(1, seeds + 1):
        for chooser in CHOOSERS:
            r, t = cpu(lambda seed=seed, chooser=chooser: Simulation(desk, chooser=chooser, seed=seed,
                                                                      warmup=50 * H).run(
                poisson_arrivals(traffic, seed=seed, count=n)))
            total += t
            s = r.summary(samples=False, per_agent=False)
            per[chooser]["wait"].append(s["mean_wait"])
            per[chooser]["sl"].append(s["service_level"])
            per[chooser]["gini"].append(s["occupancy"]["gini"])
            per[chooser]["spread"].append(s["occupancy"]["max"] - s["occupancy"]["min"])
    rows = {}
    for chooser, v in per.items():
        w, wse = mean_se(v["wait"])
        rows[chooser] = {"mean_wait": w, "mean_wait_se": wse, "ratio_to_pooled": w / pooled.mean_wait,
                         "service_level": statistics.mean(v["sl"]), "gini": statistics.mean(v["gini"]),
                         "gini_max": max(v["gini"]), "spread_points": 100 * statistics.mean(v["spread"]),
                         "spread_points_max": 100 * max(v["spread"])}
    ll = per["least-loaded"]["wait"]
    versus = {}
    for other in ("round-robin", "random"):
        diffs = [b - a for a, b in zip(ll, per[other]["wait"], strict=True)]
        d, se = mean_se(diffs)
        versus[other] = {"baseline_minus_served": d, "se": se, "ok": d + 2 * se >= 0}
    served = rows["least-loaded"]
    targets = {
        "ratio_to_pooled_le_1_35": served["ratio_to_pooled"] <= 1.35,
        "no_worse_than_baselines": all(v["ok"] for v in versus.values()),
        "gini_le_0_015": served["gini_max"] <= 0.015,
        "spread_le_8_points": served["spread_points_max"] <= 8.0,
    }
    return {"agents": 20, "skills": 4, "skills_per_agent": 2, "capacities": caps, "slots": slots, "load": 0.85,
            "seeds": seeds, "conversations_each": n, "cpu_seconds": total,
            "pooled_erlang_c": {"mean_wait": pooled.mean_wait, "service_level": pooled.service_level},
            "choosers": rows, "versus": versus, "targets": targets}


def starved(seeds: int, n: int) -> dict[str, Any]:
    from router.routing import WAIT_CREDIT_SECONDS, Fallback

    handle = 300.0
    agents = [AgentSpec(f"g{i}", frozenset({"general"}), 1) for i in range(10)]
    rows, total = [], 0.0
    for load in (0.6, 0.7, 0.85):
        rate = load * 10 / handle
        traffic = [SkillTraffic("general", rate * 0.9, Exponential(handle)),
                   SkillTraffic("billing", rate * 0.1, Exponential(handle))]
        waits, general, general_sl = [], [], []
        for seed in range(1, seeds + 1):
            t0 = time.process_time()
            sim = Simulation(agents, seed=seed, warmup=100 * handle,
                             fallback={"billing": (Fallback("general", 30.0),)})
            s = sim.run(poisson_arrivals(traffic, seed=seed, count=n)).summary(samples=False, per_agent=False)
            total += time.process_time() - t0
            waits.append(s["skills"]["billing"]["mean_wait"])
            general.append(s["skills"]["general"]["mean_wait"])
            general_sl.append(s["skills"]["general"]["service_level"])
        m, se = mean_se(waits)
        gm, gse = mean_se(general)
        rows.append({"load": load, "billing_mean_wait": m, "se": se, "general_mean_wait": gm, "general_se": gse,
                     "general_service_level": statistics.fmean(general_sl), "ok": m <= 45.0})
    return {"seeds": seeds, "conversations_each": n, "cpu_seconds": total, "fallback_after_seconds": 30.0,
            "wait_credit_seconds": WAIT_CREDIT_SECONDS, "rows": rows,
            "targets": {f"mean_wait_le_45_s_at_{100 * r['load']:.0f}": r["ok"] for r in rows}}


def render(r: dict[str, Any], command: str) -> str:
    sp = r["speed"]
    out = [
        f"Measured {r['date']} with `{command}` ({r['python']}, {r['machine']}); "
        f"CPU time of one core.",
        "",
        "**Speed** (target ≥ 100,000 conversations a minute of CPU):",
        "",
        "| desk | conversations | CPU | a minute | |",
        "|---|---|---|---|---|",
        f"| {sp['desk']} | {sp['conversations']:,} | {sp['cpu_seconds']:.1f} s | {sp['per_minute']:,.0f} | "
        f"{'PASS' if sp['ok'] else 'FAIL'} |",
        f"| one skill, 10 agents, concurrency 1 | {sp['one_skill']['conversations']:,} | "
        f"{sp['one_skill']['cpu_seconds']:.1f} s | {sp['one_skill']['per_minute']:,.0f} | |",
        "",
    ]
    for key, title in (("erlang_c", "Erlang C: one skill, 10 agents, concurrency 1, 85 % load, exponential "
                                    "handling (5 min), nobody leaves"),
                       ("erlang_a", "Erlang A: the same, exponential patience (mean 10 min)")):
        e = r[key]
        out += [f"**{title}**: {e['seeds']} seeds × {e['conversations_each']:,} conversations "
                f"({e['cpu_seconds']:.0f} s of CPU).", "",
                "| figure | simulated ± se | theory | deviation | tolerance | margin | |",
                "|---|---|---|---|---|---|---|"]
        for c in e["checks"]:
            pct = "points" in c["figure"] or "service level" in c["figure"]
            if pct:
                sim = f"{100 * c['simulated']:.2f} % ± {100 * c['standard_error']:.2f}"
                th = f"{100 * c['theory']:.2f} %"
                dev = f"{100 * c['deviation']:+.2f} points"
                tol = f"±{100 * c['tolerance']:.1f} points"
            elif c["figure"] == "abandonment":
                sim = f"{100 * c['simulated']:.3f} % ± {100 * c['standard_error']:.3f}"
                th = f"{100 * c['theory']:.3f} %"
                dev = f"{100 * c['relative_deviation']:+.2f} %"
                tol = "±5 %"
            else:
                sim = f"{c['simulated']:.2f} ± {c['standard_error']:.2f}"
                th = f"{c['theory']:.2f}"
                dev = f"{100 * c['relative_deviation']:+.2f} %"
                tol = "±5 %"
            out.append(f"| {c['figure']} | {sim} | {th} | {dev} | {tol} | {c['margin_in_se']:.1f} se | "
                       f"{'PASS' if c['ok'] else 'FAIL'} |")
        out.append("")
    for key, title in (("quality_1", "concurrency 1"), ("quality_3", "concurrency 3"),
                       ("fairness_mixed", "mixed capacities 1–4")):
        q = r[key]
        p = q["pooled_erlang_c"]
        out += [f"**Routing quality, {title}**: 20 agents, 4 skills, 2 each (ring), {q['slots']} slots, 85 % load, "
                f"{q['seeds']} seeds × {q['conversations_each']:,} conversations, the same arrivals for each "
                f"chooser ({q['cpu_seconds']:.0f} s of CPU). Pooled Erlang C ({q['slots']} slots serving every "
                f"skill): mean wait {p['mean_wait']:.2f} s, service level {100 * p['service_level']:.1f} %.", "",
                "| chooser | mean wait ± se | × pooled | service level | Gini of occupancy (worst seed) | "
                "max − min occupancy (worst seed) |",
                "|---|---|---|---|---|---|"]
        for name, c in q["choosers"].items():
            out.append(f"| {name} | {c['mean_wait']:.2f} ± {c['mean_wait_se']:.2f} s | {c['ratio_to_pooled']:.3f} | "
                       f"{100 * c['service_level']:.1f} % | {c['gini']:.4f} ({c['gini_max']:.4f}) | "
                       f"{c['spread_points']:.2f} ({c['spread_points_max']:.2f}) points |")
        v = q["versus"]
        out += ["", "Least loaded against the baselines, paired by seed (baseline − least loaded): "
                + "; ".join(f"{k} {x['baseline_minus_served']:+.2f} ± {x['se']:.2f} s" for k, x in v.items()) + "."]
        if key != "fairness_mixed":  # the targets are set for the uniform desks
            names = {"ratio_to_pooled_le_1_35": "mean wait ≤ 1.35 × pooled",
                     "no_worse_than_baselines": "no worse than round-robin and random",
                     "gini_le_0_015": "Gini ≤ 0.015", "spread_le_8_points": "max − min ≤ 8 points"}
            out.append("Targets: " + ", ".join(f"{names[k]} {'PASS' if ok else 'FAIL'}"
                                               for k, ok in q["targets"].items()) + ".")
        out.append("")
    st = r["starved"]
    out += [f"**A starved skill with fallback on** (10 general agents, 10 % of the handoffs need billing, whose "
            f"agents are all away; billing → general after {st['fallback_after_seconds']:g} s, wait credit "
            f"{st['wait_credit_seconds']:g} s; {st['seeds']} seeds × {st['conversations_each']:,}, "
            f"{st['cpu_seconds']:.0f} s of CPU; target: billing's mean wait ≤ 45 s):", "",
            "| load | billing's mean wait ± se | | general's mean wait ± se | general's service level |",
            "|---|---|---|---|---|"]
    for row in st["rows"]:
        out.append(f"| {100 * row['load']:.0f} % | {row['billing_mean_wait']:.1f} ± {row['se']:.1f} s | "
                   f"{'PASS' if row['ok'] else 'FAIL'} | {row['general_mean_wait']:.1f} ± "
                   f"{row['general_se']:.1f} s | {100 * row['general_service_level']:.1f} % |")
    out += ["", "Without fallback the same billing handoffs are never answered. With it, nobody holding billing "
            "is online, so a billing handoff does not wait out the delay, and it competes with general's own "
            "work as if it had waited the credit longer: general's customers pay for the billing load their "
            "agents now carry (the desk's mean wait over both skills is what the pool's size sets).", ""]
    return "\n".join(out)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC} has no {BEGIN} … {END} section")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/routing.md")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every run's length (a quick look: 0.1)")
    args = p.parse_args()
    s = args.scale
    command = "python bench/simulate_bench.py" + (f" --scale {s:g}" if s != 1.0 else "")
    r: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(),
                         "machine": f"{platform.machine()}, {platform.processor() or platform.system()}"}
    steps = [
        ("speed", lambda: speed(int(1_000_000 * s))),
        ("erlang_c", lambda: erlang_c_check(16, int(250_000 * s))),
        ("erlang_a", lambda: erlang_a_check(16, int(100_000 * s))),
        ("quality_1", lambda: quality(1, None, 8, int(200_000 * s))),
        ("quality_3", lambda: quality(3, None, 8, int(200_000 * s))),
        ("fairness_mixed", lambda: quality(0, [1, 2, 3, 4], 4, int(200_000 * s))),
        ("starved", lambda: starved(4, int(100_000 * s))),
    ]
    for name, step in steps:
        print(f"{name}…", file=sys.stderr, flush=True)
        r[name] = step()
    text = render(r, command)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=2) + "\n")
    if not args.no_doc:
        write_doc(text)
    oks = [r["speed"]["ok"]]
    oks += [c["ok"] for k in ("erlang_c", "erlang_a") for c in r[k]["checks"]]
    oks += [ok for k in ("quality_1", "quality_3", "starved") for ok in r[k]["targets"].values()]
    return 0 if all(oks) else 3


if __name__ == "__main__":
    sys.exit(main())

"""`tierdesk simulate` and `tierdesk staffing`, and the staffing report that
GET /v1/staffing serves too. The rules are router/'s (simulation, staffing,
queueing); this module reads what they need through storage/ and renders
what they give."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from router.history import SLOT_SECONDS, HandoffRecord, actual_slots, replay_arrivals, roster_from_history
from router.simulation import (
    CHOOSERS,
    AgentSpec,
    Arrival,
    Exponential,
    LogNormal,
    Result,
    SkillTraffic,
    Simulation,
    daily_profile,
    poisson_arrivals,
)
from router.staffing import SLOTS_PER_DAY, Target, measure, plan, verify
from storage.history import HandoffHistory
from tierdesk.errors import InvalidInput
from tierdesk.progress import ProgressBar

DAY = 86400.0
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def iso(t: float) -> str:
    return datetime.fromtimestamp(round(t), UTC).isoformat().replace("+00:00", "Z")


def day_start(value: str) -> float:
    """A date given as YYYY-MM-DD → the epoch second its day starts (UTC)."""
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise InvalidInput("date must be YYYY-MM-DD", code="validation_failed")
    try:
        d = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput("date must be a real date, YYYY-MM-DD", code="validation_failed") from None
    if d.year < 1970:
        raise InvalidInput("date must be in 1970 or later", code="validation_failed")
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


# --------------------------------------------------------------- staffing
async def staffing_report(history: HandoffHistory, start: float, target: Target, *, weeks: int, now: float,
                          verify_days: int = 0) -> dict[str, Any]:
    """The forecast for the day starting at ``start`` from the same weekday of
    the ``weeks`` weeks before it (complete days within the stored history
    only), and, for a day already past, what it had: agents at work and the
    service level achieved. A target with concurrency 0 takes the one history
    shows (default_concurrency). The reads are awaited; the sizing (tens of
    milliseconds, a simulation with ``verify_days``) runs in a thread."""
    span = await history.span()
    starts = [start - 7 * DAY * k for k in range(1, weeks + 1)]
    first = math.floor(span[0] / DAY) * DAY if span else math.inf
    used = [s for s in starts if s >= first and s + DAY <= now]
    days = await history.days(used)
    if not target.concurrency:
        target = replace(target, concurrency=await default_concurrency(history, [r for d in days for r in d]))
    past = await history.between(start, start + DAY) if span and start < now and start + DAY > first else None
    return await asyncio.to_thread(build_report, start, target, weeks, used, days, past, verify_days)


def build_report(start: float, target: Target, weeks: int, used: Sequence[float],
                 days: Sequence[Sequence[HandoffRecord]], past: Sequence[HandoffRecord] | None,
                 verify_days: int = 0) -> dict[str, Any]:
    demand = measure(list(zip(used, days, strict=True)))
    plans = plan(demand, target)
    actual = actual_slots(past, start, 1, target.within) if past is not None else None
    slots = []
    for i in range(SLOTS_PER_DAY):
        by_skill = {}
        for skill, p in plans.items():
            sp = p[i]
            by_skill[skill] = {
                "arrivals_per_hour": round(sp.rate * 3600, 3), "agents": sp.agents, "scheduled": sp.scheduled,
                "service_level": _num(sp.predicted.service_level),
                "mean_wait_seconds": _num(sp.predicted.mean_answer_wait),
                "abandonment": _num(sp.predicted.abandonment), "occupancy": _num(sp.predicted.occupancy),
            }
        row: dict[str, Any] = {
            "start": iso(start + i * SLOT_SECONDS), "skills": by_skill,
            "agents": sum(v["agents"] for v in by_skill.values()),
            "scheduled": sum(v["scheduled"] for v in by_skill.values()),
            "actual": None,
        }
        if actual is not None:
            cell = actual.get((i, None))
            row["actual"] = {"agents": len(cell.agents) if cell else 0, "offered": cell.offered if cell else 0,
                             "answered_within": cell.within if cell else 0,
                             "service_level": _num(cell.service_level) if cell else None}
        slots.append(row)
    skills = []
    for skill, d in demand.items():
        p = plans[skill]
        skills.append({
            "skill": skill, "model": "erlang_a" if d.patience else "erlang_c", "handoffs": d.handoffs,
            "abandoned": d.abandoned, "handle_seconds": _num(d.handle), "patience_seconds": _num(d.patience),
            "first_reply_seconds": _num(d.reaction),
            "peak_agents": max((s.agents for s in p), default=0),
            "agent_hours": sum(s.agents for s in p) / 4, "scheduled_hours": sum(s.scheduled for s in p) / 4,
        })
    report: dict[str, Any] = {
        "date": iso(start)[:10], "weekday": WEEKDAYS[datetime.fromtimestamp(start, UTC).weekday()],
        "slot_minutes": int(SLOT_SECONDS // 60),
        "target": {"service_level": target.service_level, "within_seconds": target.within,
                   "first_response_seconds": target.first_response, "concurrency": target.concurrency,
                   "shrinkage": target.shrinkage},
        "history": {"weeks": weeks, "days": [iso(s)[:10] for s in used], "handoffs": sum(len(d) for d in days)},
        "skills": skills, "slots": slots,
    }
    if verify_days:
        v = verify(demand, plans, target, days=verify_days)
        report["verification"] = {"days": v.days, "slots": v.slots, "met": v.met, "share": v.share,
                                  "worst": None if v.worst is None else
                                  {"start": iso(start + v.worst[0] * SLOT_SECONDS)[11:16], "skill": v.worst[1],
                                   "service_level": v.worst[2]}}
    return report


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, 6)


async def week_review(history: HandoffHistory, end: float, target: Target, *, weeks: int,
                      now: float) -> list[dict[str, Any]]:
    """The seven days before ``end`` (or before today, if ``end`` is later),
    each forecast from its own past weeks, with what each had: the chart's
    data."""
    end = min(end, math.floor(now / DAY) * DAY)
    return [await staffing_report(history, end - (7 - d) * DAY, target, weeks=weeks, now=now) for d in range(7)]


async def default_concurrency(history: HandoffHistory, records: Sequence[HandoffRecord]) -> int:
    """Conversations per agent when none is asked for: the median over the
    agents of those days of the most they held at once; without history, the
    median capacity of the agents stored; 1 if neither."""
    held = sorted(a.capacity for a in roster_from_history(records))
    if not held:
        held = sorted(c for _, _, c in await history.agents())
    return max(1, held[len(held) // 2]) if held else 1


def _staffing(args: argparse.Namespace) -> int:
    from tierdesk.cli import _with_engines
    from tierdesk.settings import Settings

    settings = Settings.from_env()
    start = day_start(args.date)
    _check_target_args(args)
    now = time.time()

    async def work(engines: Any) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
        history = HandoffHistory(engines)
        target = Target(args.service_level, args.within,
                        args.first_response if args.first_response is not None
                        else settings.sla_human_first_response_seconds,
                        args.concurrency or 0, args.shrinkage)
        report = await staffing_report(history, start, target, weeks=args.weeks, now=now,
                                       verify_days=args.verify_days)
        target = replace(target, concurrency=report["target"]["concurrency"])  # the chart's days alike
        week = await week_review(history, start, target, weeks=args.weeks, now=now) if args.chart else None
        return report, week

    report, week = asyncio.run(_with_engines(work))
    print(render_staffing(report))
    if args.json:
        _write_json(args.json, report)
    if week is not None:
        from tierdesk.charts import staffing_week

        staffing_week(week, Path(args.chart))
        print(f"chart of the week before: {args.chart}")
    return 0


def _check_target_args(args: argparse.Namespace) -> None:
    if not 0 < args.service_level < 1:
        raise InvalidInput("--service-level must be between 0 and 1")
    if args.within <= 0:
        raise InvalidInput("--within must be positive")
    if args.first_response is not None and args.first_response <= 0:
        raise InvalidInput("--first-response must be positive")
    if not 0 <= args.shrinkage < 1:
        raise InvalidInput("--shrinkage must be in [0, 1)")
    if not 1 <= args.weeks <= 52:
        raise InvalidInput("--weeks must be between 1 and 52")
    if args.concurrency is not None and args.concurrency < 1:
        raise InvalidInput("--concurrency must be at least 1")


def render_staffing(report: dict[str, Any]) -> str:
    t = report["target"]
    skills = [s["skill"] for s in report["skills"]]
    fr = f", mean first response ≤ {t['first_response_seconds']:g} s" if t["first_response_seconds"] else ""
    lines = [
        f"Staffing for {report['weekday']} {report['date']} (UTC), per 15 minutes: "
        f"{t['service_level']:.0%} answered within {t['within_seconds']:g} s{fr}; "
        f"{t['concurrency']} conversation(s) per agent, shrinkage {t['shrinkage']:.0%}.",
        f"History: {len(report['history']['days'])} {report['weekday']}(s) "
        f"({', '.join(report['history']['days']) or 'none stored'}), {report['history']['handoffs']} handoffs.",
    ]
    if not skills:
        lines.append("No handoffs on those days: nothing to staff for.")
        return "\n".join(lines)
    for s in report["skills"]:
        patience = f"{s['patience_seconds']:.0f} s" if s["patience_seconds"] else "nobody left"
        handle = f"{s['handle_seconds']:.0f} s" if s["handle_seconds"] else "unknown"
        lines.append(f"  {s['skill']}: {s['handoffs']} handoffs, handling {handle}, patience {patience} "
                     f"({s['model'].replace('_', ' ')}); peak {s['peak_agents']} agents, "
                     f"{s['agent_hours']:g} agent-hours on the desk, {s['scheduled_hours']:g} scheduled")
    head = "  time  " + "".join(f"{s[:12]:>22}" for s in skills) + f"{'desk':>8}{'sched.':>8}"
    sub = "        " + "".join(f"{'per h':>7}{'agents':>7}{'SL':>8}" for _ in skills)
    lines += ["", head, sub]
    for row in report["slots"]:
        if not any(v["arrivals_per_hour"] for v in row["skills"].values()):
            continue
        cells = "".join(f"{v['arrivals_per_hour']:7.1f}{v['agents']:7d}{_pct(v['service_level']):>8}"
                        for v in (row["skills"][s] for s in skills))
        lines.append(f"  {row['start'][11:16]} {cells}{row['agents']:8d}{row['scheduled']:8d}")
    if "verification" in report:
        v = report["verification"]
        worst = v["worst"]
        lines.append(f"\nSimulated {v['days']} days of this profile on the recommended desk: the target was met in "
                     f"{v['met']} of {v['slots']} slots ({v['share']:.1%})"
                     + (f"; lowest {worst['service_level']:.1%} ({worst['skill']} at {worst['start']})" if worst
                        else ""))
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def _write_json(path: str, data: Any) -> None:
    text = json.dumps(data, indent=2)
    if path == "-":
        print(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
        print(f"JSON written to {path}", file=sys.stderr)


# --------------------------------------------------------------- simulate
def synthetic_desk(args: argparse.Namespace) -> tuple[list[AgentSpec], list[SkillTraffic], float]:
    """Agents with skills dealt round a ring (agent i holds skills i, i+1, …),
    and a rate per skill giving the asked load over the slots. Returns the
    desk, its traffic and the arrival rate per second."""
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    if not skills or len(set(skills)) != len(skills):
        raise InvalidInput("--skills must name distinct skills, comma-separated")
    if args.agents < 1 or args.capacity < 1:
        raise InvalidInput("--agents and --capacity must be at least 1")
    if not 1 <= args.skills_per_agent <= len(skills):
        raise InvalidInput("--skills-per-agent must be between 1 and the number of skills")
    if args.handle <= 0 or (args.patience is not None and args.patience <= 0):
        raise InvalidInput("--handle and --patience must be positive")
    if not 0 <= args.vip_share <= 1:
        raise InvalidInput("--vip-share must be in [0, 1]")
    if not 1 <= args.vip_weight <= 10:
        raise InvalidInput("--vip-weight must be from 1 to 10")
    agents = [AgentSpec(f"agent-{i:03d}", frozenset(skills[(i + j) % len(skills)] for j in range(args.skills_per_agent)),
                        args.capacity) for i in range(args.agents)]
    if args.rate is not None:
        if args.rate <= 0:
            raise InvalidInput("--rate must be positive")
        rate = args.rate / 3600
    else:
        if not 0 < args.load:
            raise InvalidInput("--load must be positive")
        rate = args.load * args.agents * args.capacity / args.handle
    handle = Exponential(args.handle) if args.handle_dist == "exponential" else LogNormal(args.handle, args.handle_cv)
    patience = Exponential(args.patience) if args.patience else None
    per_skill = rate / len(skills)
    traffic = [SkillTraffic(s, daily_profile(per_skill) if args.profile == "daily" else per_skill, handle, patience,
                            args.vip_share) for s in skills]
    return agents, traffic, rate


async def stored_traffic(history: HandoffHistory, days: float, now: float, roster: str,
                         seed: int) -> tuple[list[AgentSpec], list[Arrival], dict[str, Any]]:
    records = await history.between(now - days * DAY, now)
    replay = replay_arrivals(records, seed=seed)
    if not replay.arrivals:
        raise InvalidInput(f"no finished handoffs stored in the last {days:g} days: nothing to replay "
                           "(`tierdesk metrics seed --history` stores some)")
    if roster == "history":
        agents = roster_from_history(records)
    else:
        agents = [AgentSpec(aid, frozenset(skills), capacity) for aid, skills, capacity in await history.agents()]
    if not agents:
        raise InvalidInput("no agents to simulate with")
    meta = {"handoffs": len(replay.arrivals), "skipped_open": replay.skipped_open,
            "from": iso(replay.first or now), "to": iso(replay.last or now), "roster": roster,
            "agents": len(agents)}
    return agents, replay.arrivals, meta


def _simulate(args: argparse.Namespace) -> int:
    choosers = list(CHOOSERS) if args.chooser == "all" else [args.chooser]
    if args.within <= 0:
        raise InvalidInput("--within must be positive")
    source: dict[str, Any]
    if args.from_db:
        from tierdesk.cli import _with_engines

        if args.days <= 0:
            raise InvalidInput("--days must be positive")

        until = day_start(args.until) if args.until else time.time()

        async def work(engines: Any) -> tuple[list[AgentSpec], list[Arrival], dict[str, Any]]:
            return await stored_traffic(HandoffHistory(engines), args.days, until, args.roster, args.seed)

        agents, stored, meta = asyncio.run(_with_engines(work))
        source = {"kind": "stored traffic", **meta}
        total: int | None = len(stored)
        warmup = args.warmup or 0.0

        def arrivals() -> Any:
            return iter(stored)
    else:
        agents, traffic, rate = synthetic_desk(args)
        if args.conversations is not None and args.conversations < 1:
            raise InvalidInput("--conversations must be at least 1")
        until = args.hours * 3600 if args.hours else None
        count = None if until else (args.conversations or 100_000)
        total = count
        warmup = args.warmup if args.warmup is not None else 20 * args.handle
        source = {"kind": "synthetic", "agents": args.agents, "skills": args.skills.split(","),
                  "skills_per_agent": args.skills_per_agent, "capacity": args.capacity,
                  "profile": args.profile, "arrivals_per_hour": rate * 3600,
                  "offered_load": rate * args.handle / (args.agents * args.capacity),
                  "handle": {"mean_seconds": args.handle, "distribution": args.handle_dist,
                             "cv": args.handle_cv if args.handle_dist == "lognormal" else 1.0},
                  "patience_seconds": args.patience, "vip_share": args.vip_share, "seed": args.seed}

        def arrivals() -> Any:
            return poisson_arrivals(traffic, seed=args.seed, count=count, until=until)

    results: dict[str, Result] = {}
    for chooser in choosers:
        bar = ProgressBar(f"simulating ({chooser})", total)
        started = time.process_time()
        sim = Simulation(agents, chooser=chooser, seed=args.seed, within=args.within, warmup=warmup,
                         slot_seconds=SLOT_SECONDS, vip_weight=args.vip_weight)
        results[chooser] = sim.run(arrivals(), progress=bar.update, progress_every=5000)
        bar.close()
        cpu = time.process_time() - started
        print(f"{results[chooser].conversations:,} conversations in {cpu:.1f} s of CPU "
              f"({results[chooser].conversations / cpu * 60 if cpu else 0:,.0f} a minute)", file=sys.stderr)
    out = {"source": source, "service_level_seconds": args.within,
           "results": {c: r.summary() for c, r in results.items()}}
    print(render_simulation(out))
    if args.json:
        _write_json(args.json, out)
    if args.plots:
        from tierdesk.charts import simulation_charts

        for path in simulation_charts(results, Path(args.plots)):
            print(f"plot: {path}", file=sys.stderr)
    return 0


def render_simulation(out: dict[str, Any]) -> str:
    src = out["source"]
    if src["kind"] == "synthetic":
        head = (f"Synthetic desk: {src['agents']} agents × {src['capacity']} slots, skills {','.join(src['skills'])} "
                f"({src['skills_per_agent']} each), {src['arrivals_per_hour']:.1f} handoffs an hour "
                f"({src['profile']}), load {src['offered_load']:.0%}, handling {src['handle']['mean_seconds']:g} s "
                f"({src['handle']['distribution']}), patience "
                f"{'none' if not src['patience_seconds'] else str(src['patience_seconds']) + ' s'}")
    else:
        head = (f"Stored traffic {src['from']} – {src['to']}: {src['handoffs']:,} handoffs on the {src['roster']} "
                f"roster ({src['agents']} agents)")
    lines = [head, ""]
    w = out["service_level_seconds"]
    lines.append(f"{'chooser':<14}{'offered':>10}{f'SL {w:g}s':>9}{'mean wait':>11}{'p90 wait':>10}"
                 f"{'abandoned':>11}{'occupancy':>11}{'gini':>8}{'min–max':>13}")
    for name, s in out["results"].items():
        occ = s["occupancy"]
        spread = f"{occ['min']:.0%}–{occ['max']:.0%}" if occ["min"] is not None else "-"
        lines.append(f"{name:<14}{s['offered']:>10,}{_pct(s['service_level']):>9}{_secs(s['mean_wait']):>11}"
                     f"{_secs(s['p90_wait']):>10}{_pct(s['abandonment']):>11}{_pct(occ['mean']):>11}"
                     f"{(occ['gini'] if occ['gini'] is not None else 0):>8.3f}{spread:>13}")
    first = next(iter(out["results"].values()))
    if len(first["skills"]) > 1:
        lines += ["", "per skill (" + next(iter(out["results"])) + "):"]
        for skill, s in first["skills"].items():
            lines.append(f"  {skill:<12}{s['offered']:>9,} offered, SL {_pct(s['service_level'])}, mean wait "
                         f"{_secs(s['mean_wait'])}, abandoned {_pct(s['abandonment'])}, "
                         f"load {s['load_erlangs'] or 0:.2f} Erlangs, its agents {_pct(s['occupancy_of_its_agents'])} busy")
    return "\n".join(lines)


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} s"


def register(sub: Any, formatter_class: Any = argparse.HelpFormatter) -> None:
    sim = sub.add_parser(
        "simulate", help="run the routing rules on a virtual clock: synthetic or stored traffic",
        formatter_class=formatter_class,
        description="Run the routing rules on a virtual clock: synthetic or stored traffic.\n\n"
                    "The real Dispatcher routes simulated handoffs (Poisson or daily arrivals, handling times, "
                    "patience) or the handoffs stored in the database (--from-db), and reports waits, "
                    "service level and occupancy; docs/routing.md explains the model.")
    sim.add_argument("--from-db", action="store_true", help="replay the handoffs stored in the last --days days")
    sim.add_argument("--days", type=float, default=28.0, help="with --from-db (default 28)")
    sim.add_argument("--until", metavar="YYYY-MM-DD", help="with --from-db: the days before that one "
                                                           "(default: up to now)")
    sim.add_argument("--roster", choices=("history", "stored"), default="history",
                     help="with --from-db: the agents as history shows them (default; skills taken, most "
                          "conversations at once, online in the quarter hours they worked), or the agents stored "
                          "now, online throughout")
    sim.add_argument("--agents", type=int, default=10, help="agents on the simulated desk")
    sim.add_argument("--skills", default="general", help="comma-separated (default general)")
    sim.add_argument("--skills-per-agent", type=int, default=1, help="skills each simulated agent holds")
    sim.add_argument("--capacity", type=int, default=1, help="conversations an agent holds at once")
    sim.add_argument("--load", type=float, default=0.85, help="offered load ÷ slots (default 0.85)")
    sim.add_argument("--rate", type=float, help="handoffs an hour instead of --load")
    sim.add_argument("--profile", choices=("flat", "daily"), default="flat",
                     help="daily: peaks at 10:30 and 15:00, the rate the busiest quarter hour's")
    sim.add_argument("--handle", type=float, default=300.0, help="mean handling time, seconds")
    sim.add_argument("--handle-dist", choices=("exponential", "lognormal"), default="exponential",
                     help="distribution of handling times")
    sim.add_argument("--handle-cv", type=float, default=1.0, help="lognormal: sd ÷ mean")
    sim.add_argument("--patience", type=float, help="mean patience, seconds (exponential); default: nobody leaves")
    sim.add_argument("--vip-share", type=float, default=0.0, help="share of handoffs from VIP customers")
    sim.add_argument("--vip-weight", type=int, default=1,
                     help="slots of an agent's capacity a VIP conversation takes (the rules file's vip_weight)")
    sim.add_argument("--conversations", type=int, help="default 100,000")
    sim.add_argument("--hours", type=float, help="simulated hours instead of --conversations")
    sim.add_argument("--warmup", type=float, help="seconds left out at the start (default 20 handling times; "
                                                   "0 with --from-db)")
    sim.add_argument("--chooser", choices=(*CHOOSERS, "all"), default="least-loaded",
                     help="how an agent is chosen (all: compare them)")
    sim.add_argument("--within", type=float, default=20.0, help="service-level threshold, seconds")
    sim.add_argument("--seed", type=int, default=1, help="random seed (the same seed, the same run)")
    sim.add_argument("--json", metavar="PATH", help="write the figures as JSON ('-': standard output)")
    sim.add_argument("--plots", metavar="DIR", help="write PNG plots there")
    sim.set_defaults(func=_simulate)

    st = sub.add_parser(
        "staffing", help="agents needed per quarter hour and skill for a date, from history",
        formatter_class=formatter_class,
        description="Agents needed per quarter hour and skill for a date, from history.\n\n"
                    "Forecasts the handoffs from the same weekday of past weeks and sizes each quarter hour by "
                    "Erlang C or A for the service level asked; docs/routing.md explains the model.")
    st.add_argument("--date", required=True, help="YYYY-MM-DD (UTC)")
    st.add_argument("--weeks", type=int, default=4, help="same weekday of this many weeks before (default 4)")
    st.add_argument("--service-level", type=float, default=0.8, help="share to answer within --within")
    st.add_argument("--within", type=float, default=20.0, help="seconds (default 20)")
    st.add_argument("--first-response", type=float,
                    help="mean first response bound, seconds (default TIERDESK_SLA_HUMAN_FIRST_RESPONSE_SECONDS)")
    st.add_argument("--concurrency", type=int, help="conversations per agent (default: the stored agents' median "
                                                     "capacity)")
    st.add_argument("--shrinkage", type=float, default=0.3,
                    help="share of paid time agents are not available (breaks, training)")
    st.add_argument("--verify-days", type=int, default=0,
                    help="simulate this many days of the profile on the recommended desk and report the slots "
                         "that met the target")
    st.add_argument("--json", metavar="PATH", help="write the forecast as JSON ('-': standard output)")
    st.add_argument("--chart", metavar="PNG", help="chart the week before the date: forecast, agents at work, "
                                                   "service level achieved")
    st.set_defaults(func=_staffing)

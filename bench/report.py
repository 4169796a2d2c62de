"""The results as the Markdown tables in docs/benchmarks.md, and the
projection's block in docs/performance.md."""

from __future__ import annotations

from typing import Any

from common import BEGIN, DOC, END, PERF_DOC, PROJ_BEGIN, PROJ_END
from targets import ALL_TARGETS, SCALE_OUT
from verdicts import total_cpu_ms


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def show(v: Any, unit: str) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if unit == "x":
        return f"{v:.2f}×"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "cpu_ms":
        return f"{v:.3f} ms"
    if unit == "mib":
        return f"{v:,.0f} MiB"
    return fmt(v)


# What each process of a target is, by its place in the process tree (bench/accounting.py).
ROLES = {
    "sqlite": {"root": "server", "child": "SQLite writer"},
    "postgresql-workers": {"root": "supervisor", "child": "workers"},
    "postgresql-instances": {"root": "instances", "child": "children"},
}
LOADS = (("faq", "saturated", "FAQ answer"), ("faq", "half", "FAQ answer"), ("faq", "share", "FAQ answer"),
         ("handoff", "saturated", "handoff"), ("handoff", "half", "handoff"), ("handoff", "share", "handoff"),
         ("mix", "open", "mix"))


def by_process(name: str, r: dict[str, Any]) -> str:
    roles = ROLES.get(name, {"root": "server", "child": "children"})
    parts = [f"{roles[k]} {v:.3f}" for k, v in sorted(r.get("process_cpu_ms_per_req", {}).items(),
                                                       key=lambda kv: kv[0] != "root") if v]
    return ", ".join(parts) or "–"


def share_lines(t: dict[str, Any]) -> list[str]:
    """The scale-out ratio split in two: 2 processes against one at the same
    rate (the target), and against one at each process's share of it."""
    lines = []
    one = t.get("postgresql", {})
    for name in SCALE_OUT:
        for path, plabel in (("faq", "FAQ"), ("handoff", "handoff")):
            many = t.get(name, {}).get(path, {}).get("half")
            same, share = one.get(path, {}).get("half"), one.get(path, {}).get("share")
            b, a, alone = total_cpu_ms(many), total_cpu_ms(same), total_cpu_ms(share)
            if not (a and b and alone):
                continue
            lines.append(
                f"- {t[name].get('label', name)}, {plabel}: {b:.3f} ms per message (server + PostgreSQL) at "
                f"{many['target_rate']:,.0f}/s; one process {a:.3f} ms at that rate ({b / a:.2f}×, the target's "
                f"ratio) and {alone:.3f} ms at each process's share, {share['target_rate']:,.0f}/s "
                f"({b / alone:.2f}×): what one process costs at a lower rate, not what a second one adds")
    return lines


def markdown(results: dict[str, Any]) -> str:
    t = results["targets"]
    m = results["machine"]
    pg = m.get("postgresql") or {}
    bare_cpu = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("server_cpu_ms_per_req")
    lines = [
        BEGIN,
        f"### Last run: {results['started_at']}",
        "",
        f"- command: `{results['command']}`: {fmt(results['duration_s'], 0)} s per measurement, "
        f"{results['rounds']} interleaved round(s) per saturated point, wrk {results['wrk_threads']} threads × "
        f"{results['connections']} connections, open-loop generator with the same {results['connections']}",
        f"- machine: {m['nproc']} CPUs ({m['cpu_model']}), {fmt(m['mem_total_mib'])} MiB, Linux {m['kernel']}, "
        f"Python {m['python']}, SQLite {m['sqlite']} (tierdesk synchronous={results['sqlite_synchronous']}), "
        + (f"PostgreSQL {pg.get('server_version')} (synchronous_commit={pg.get('synchronous_commit')}, "
           f"fsync={pg.get('fsync')})" if pg else "no PostgreSQL"),
        f"- each tierdesk database held {fmt(results.get('stored_seed'))} stored messages at start "
        "(a copy of bench/metrics_bench.py's seed)"
        + ("; PostgreSQL's statistics gathered (ANALYZE) after the warm-up"
           if results.get("analyzed_after_warmup") else "; PostgreSQL's statistics as copied (--no-analyze)")
        + f"; handoffs were sent at the end until {fmt(results.get('queued_wanted'))} waited",
        f"- load average at start {results['loadavg_start']}, at end {results['loadavg_end']}; CPU taken by "
        f"other processes during the measurements: mean {fmt(results['other_processes_cores_mean'], 2)}, "
        f"max {fmt(results['other_processes_cores_max'], 2)} of {m['nproc']} cores"
        + (" — **the machine was shared; rates and latencies are worse than on a quiet machine, CPU per "
           "message much less so**" if (results["other_processes_cores_max"] or 0) >= 0.25 else ""),
        f"- code: commit {results['code']['commit']}"
        + (f" plus uncommitted changes to {len(results['code']['modified_files'])} file(s) outside bench/ and "
           f"docs/ ({', '.join(results['code']['modified_files'][:6])}"
           f"{', …' if len(results['code']['modified_files']) > 6 else ''})"
           if results["code"]["modified_files"] else ""),
        f"- wall time {fmt(results['wall_s'], 0)} s; everything in `{results['output']}`",
        "",
        "CPU per message from /proc over each measurement: the server's processes (by process), and the "
        "PostgreSQL backends serving the target's database. Open-loop latencies count from when each "
        "message was due.",
        "",
        "| target | path | load | msg/s | p50 ms | p99 ms | errors | commit batch | server CPU ms/msg (× bare) "
        "| by process | PostgreSQL CPU ms/msg | server + PostgreSQL | longest loop step so far, ms CPU |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name in ALL_TARGETS:
        if name not in t:
            continue
        label = t[name].get("label", name)
        for path, kind, plabel in LOADS:
            r = t[name].get(path, {}).get(kind)
            if not r:
                continue
            errs = int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
            if kind == "saturated":
                load = f"saturated, {results['connections']} conns"
            else:
                load = f"open loop {fmt(r['target_rate'], 0)}/s" + ("" if r.get("sustained") else " (not sustained)")
            if path == "mix":
                plabel = f"{1 - results['mix_handoff_share']:.0%}/{results['mix_handoff_share']:.0%} FAQ/handoff"
            if name == "bare":
                plabel = "echo"
            cpu = r.get("server_cpu_ms_per_req")
            times = f" ({cpu / bare_cpu:.1f}×)" if cpu and bare_cpu and name != "bare" else ""
            db = r.get("database_cpu_ms_per_req")
            lines.append(
                f"| {label} | {plabel} | {load} | {fmt(r['req_s'], 0)} | {fmt(r['p50_ms'], 2)} | "
                f"{fmt(r['p99_ms'], 2)} | {errs} | {fmt(r.get('group_commit_mean_batch'))} | "
                f"{fmt(cpu, 3)}{times} | {by_process(name, r) if name != 'bare' else '–'} | {fmt(db, 3)} | "
                f"{fmt(total_cpu_ms(r), 3)} | {fmt(r.get('loop_longest_step_ms'), 1)} |")
    lines += ["", "| target | measured | required | result | |", "|---|---:|---:|---|---|"]
    for c in results["checks"]:
        lines.append(f"| {c['check']} | {show(c['value'], c['unit'])} | {c['op']} {show(c['threshold'], c['unit'])} "
                     f"| {'PASS' if c['pass'] else '**FAIL**'} | {c.get('note', '')} |")
    lines += projection_lines(results.get("projection") or {})
    extra = [""]
    for name in ALL_TARGETS[1:]:
        if name not in t:
            continue
        x = t[name]
        cap = x["capacity"]["after"]
        rss = ", ".join(f"{ROLES.get(name, {'root': 'server', 'child': 'child'})[p['role']]} {p['mib']:,.0f}"
                        for p in x.get("rss_end_per_process", []))
        extra.append(
            f"- {name}: RSS {fmt(x.get('rss_mib_after_faq'))} MiB (all processes) after the saturated FAQ runs; "
            + (f"{mark['rss_mib']:,.0f} MiB (the largest process) when {mark['queued']:,} handoffs first waited; "
               if (mark := x["capacity"]["during"].get("at_queued_mark")) else "")
            + f"at the end, per process (MiB): {rss or '–'}, with {x.get('queued_at_end', 0):,} handoffs queued "
            f"({cap['open_assigned']} assigned of {cap['slots']} slots) and {x.get('stored_messages_at_end', 0):,} "
            f"messages stored; {x['capacity']['during']['samples']} capacity samples during the runs; longest "
            f"event loop step {fmt(x.get('loop_longest_step_ms'), 1)} ms CPU; server warnings/errors logged: "
            f"{x.get('log_problems') or 'none'}")
        probed = x.get("steps_probed")
        if probed:
            slowest = "; ".join(f"{st['cpu_ms']:.1f} ms {st['what']}" for st in probed["slowest"][:3])
            extra.append(
                f"- {name}, every event loop step timed (bench/steps.py: FAQ and handoffs saturated, then the mix, "
                f"{probed.get('queued') or 0:,} handoffs queued): {probed['steps_timed']:,} steps, the longest: "
                f"{slowest}")
    extra += share_lines(t)
    if "bare" in t:
        extra.append(f"- bare: RSS {fmt(t['bare'].get('rss_mib_after_faq'))} MiB")
        bh = t["bare"].get("faq", {}).get("half")
        if bh:
            extra.append(
                f"- the open-loop apparatus in this run: the bare handler at half its rate "
                f"({fmt(bh['target_rate'], 0)}/s) measured p50 {fmt(bh['p50_ms'], 2)} ms, p99 "
                f"{fmt(bh['p99_ms'], 2)} ms, with the generator's own scheduling lag at p99 "
                f"{fmt(bh.get('sched_lag_p99_ms'), 1)} ms (what the machine and generator add)")
    lines += extra
    for key, what in (("profile_faq", "saturated FAQ"), ("profile_faq_half", "FAQ at half rate, open loop"),
                      ("profile_handoff", "saturated handoff")):
        profiled = next((name for name in t if t[name].get(key)), None)
        if profiled is None:
            continue
        prof = t[profiled][key]
        threads = ", ".join(f"{x['thread'].split(': ', 1)[-1]} {x['samples'] / max(1, prof['samples']):.0%}"
                            for x in prof["threads"][:3])
        lines += ["", f"Profile, {t[profiled].get('label', profiled)}, {what} (py-spy --gil, {prof['samples']} samples; "
                      f"GIL held by: {threads}; `{prof['raw_file']}`):", "",
                  "| who holds the GIL (innermost matching frame) | share |", "|---|---:|"]
        lines += [f"| {c['category']} | {c['share']:.0%} |" for c in prof.get("categories", [])]
        lines += ["", "| frame (inclusive; request plumbing left out) | share of GIL samples |", "|---|---:|"]
        # Frames every request passes through (the loop, aiohttp's dispatch,
        # the middleware chain) are left out here; the JSON has them all.
        skip = ("<module>", "main (tierdesk/cli.py)", "_serve (", "run_app (", "Thread.", "_WorkItem.run",
                "_worker (concurrent", "RequestHandler._handle_request", "Application._handle",
                "_fix_request_current_app", "context_middleware", "error_middleware", "request_guards",
                "post_message (")
        shown = 0
        for f in prof["top_inclusive"]:
            if f["frame"].startswith(skip):
                continue
            lines.append(f"| `{f['frame']}` | {f['share']:.0%} |")
            shown += 1
            if shown >= 10:
                break
    lines.append(END)
    return "\n".join(lines)


def write_doc(block: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)


def projection_lines(proj: dict[str, Any]) -> list[str]:
    """The projection of bench/projection.py as a table per path."""
    paths = proj.get("paths") or {}
    if not paths:
        return []
    names = {"faq": "FAQ answers", "handoff": "handoffs", "mix": "70/30 FAQ/handoff mix"}
    out = ["", "Projection from the CPU per message above (bench/projection.py; docs/performance.md, "
               "\"Capacity on more cores\"): **arithmetic, not measured on those machines**.", "",
           "| path | CPU ms/msg: server (event loop) + PostgreSQL | per extra process × | cores | workers "
           "| msg/s, all cores busy | plan at 70 % | tierdesk cores | PostgreSQL cores | bound by "
           "| PostgreSQL alone on that many cores: full at msg/s | with processes |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for path, p in paths.items():
        c = p["costs"]
        for one, lim in zip(p["one_machine"], p["postgresql_limit"]):
            limit = (f"{lim['rate']:,.0f} | {lim['processes']}" if lim["rate"] is not None
                     else f"never (processes top out at {lim['tierdesk_ceiling']:,.0f}) | –")
            out.append(
                f"| {names.get(path, path)} | {c['server_ms']:.3f} ({c['loop_ms']:.3f}) + {c['db_ms']:.3f} | "
                f"{c['k_server']:.2f} / {c['k_db']:.2f} | {one['cores']} | {one['processes']} | "
                f"{one['rate']:,.0f} | {one['plan_rate']:,.0f} | {one['tierdesk_cores']:.1f} | "
                f"{one['postgresql_cores']:.1f} | {one['bound']} | {limit} |")
    return out


def projection_block(results: dict[str, Any]) -> str:
    """The block of docs/performance.md the bench rewrites: the projection
    with the run it comes from."""
    lines = [PROJ_BEGIN,
             f"Projected from `{results['command']}` of {results['started_at']} at commit "
             f"{results['code']['commit']} on {results['machine']['nproc']} cores "
             f"({results['machine']['cpu_model']}); the measured figures are in docs/benchmarks.md."]
    lines += projection_lines(results.get("projection") or {})
    lines.append(PROJ_END)
    return "\n".join(lines)


def write_projection(block: str) -> None:
    text = PERF_DOC.read_text()
    if PROJ_BEGIN in text and PROJ_END in text:
        head, rest = text.split(PROJ_BEGIN, 1)
        _, tail = rest.split(PROJ_END, 1)
        PERF_DOC.write_text(head + block + tail)

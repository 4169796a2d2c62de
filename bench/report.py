"""The results as the Markdown table in docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from common import BEGIN, DOC, END
from targets import ALL_TARGETS, DB_TARGETS
from verdicts import failed_requests


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
    if unit == "ratio":
        return f"{v:.1%}" if v < 0.1 else f"{v:.0%}"
    if unit == "ms":
        return f"{v:.1f} ms"
    return fmt(v)


def markdown(results: dict[str, Any]) -> str:
    t = results["targets"]
    m = results["machine"]
    pg = m.get("postgresql") or {}
    bare = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("req_s")
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
        f"- load average at start {results['loadavg_start']}, at end {results['loadavg_end']}; CPU taken by "
        f"other processes during the measurements: mean {fmt(results['other_processes_cores_mean'], 2)}, "
        f"max {fmt(results['other_processes_cores_max'], 2)} of {m['nproc']} cores"
        + (" — **the machine was shared; every figure is lower than on a quiet machine**"
           if (results["other_processes_cores_max"] or 0) >= 0.25 else ""),
        f"- code: commit {results['code']['commit']}"
        + (f" plus uncommitted changes to {len(results['code']['modified_files'])} file(s) outside bench/ and "
           f"docs/ ({', '.join(results['code']['modified_files'][:6])}"
           f"{', …' if len(results['code']['modified_files']) > 6 else ''})"
           if results["code"]["modified_files"] else ""),
        f"- wall time {fmt(results['wall_s'], 0)} s; everything in `{results['output']}`",
        "",
        "| target | path | load | req/s | vs bare | p50 ms | p99 ms | errors | commit batch | server CPU ms/req |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(label: str, path: str, r: dict[str, Any] | None, half: bool) -> None:
        if not r:
            return
        errs = int(r.get("non2xx", 0)) + int(r.get("socket_errors", 0)) + sum(r.get("errors", {}).values())
        if half:
            load = f"open loop {fmt(r['target_rate'], 0)}/s" + ("" if r.get("sustained") else " (not sustained)")
            ratio = "–"
        else:
            load = f"saturated, {results['connections']} conns"
            ratio = show(r["req_s"] / bare, "ratio") if bare else "–"
        lines.append(
            f"| {label} | {path} | {load} | {fmt(r['req_s'], 0)} | {ratio} | {fmt(r['p50_ms'], 2)} | "
            f"{fmt(r['p99_ms'], 2)} | {errs} | {fmt(r.get('group_commit_mean_batch'))} | "
            f"{fmt(r.get('server_cpu_ms_per_req'), 3)}"
            + (f" + {fmt(r['database_cpu_ms_per_req'], 3)} (PostgreSQL)" if r.get("database_cpu_ms_per_req") else "")
            + " |")

    for name in ALL_TARGETS:
        if name not in t:
            continue
        label = t[name].get("label", name)
        for path, plabel in (("faq", "echo" if name == "bare" else "FAQ answer"), ("handoff", "handoff")):
            row(label, plabel, t[name].get(path, {}).get("saturated"), False)
            row(label, plabel, t[name].get(path, {}).get("half"), True)
    lines += ["", "| target | measured | required | result |", "|---|---:|---:|---|"]
    for c in results["checks"]:
        lines.append(f"| {c['check']} | {show(c['value'], c['unit'])} | {c['op']} {show(c['threshold'], c['unit'])} "
                     f"| {'PASS' if c['pass'] else '**FAIL**'} |")
    if results.get("cpu_budget"):
        lines += ["", "What the ratio targets would take at the CPU per request measured above (saturated; "
                      "server + PostgreSQL + load generator, which all share the machine):", "",
                  "| target | rate required | CPU ms per request | cores needed | cores here "
                  "| of which the event loop's thread: ms per request | its cores needed (one at most) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for b in results["cpu_budget"]:
            parts = f"{b['server_ms']:.3f}" + (f" + {b['database_ms']:.3f}" if b["database_ms"] else "") \
                + f" + {b['load_generator_ms']:.3f}"
            lines.append(f"| {b['target']} | {b['ratio']:.0%} of bare = {b['rate']:,}/s | {parts} | "
                         f"{b['cores_needed']:.2f} | {b['cores']} | {fmt(b['loop_ms'], 3)} | "
                         f"{fmt(b['loop_cores_needed'], 2)} |")
    extra = [""]
    for name in ALL_TARGETS[1:]:
        if name in t:
            x = t[name]
            cap = x["capacity"]["after"]
            extra.append(
                f"- {name}: RSS {fmt(x.get('rss_mib_after_faq'))} MiB after the saturated FAQ runs, "
                f"{fmt(x.get('rss_mib_end'))} MiB at the end; after the handoff runs {cap['open_assigned']} "
                f"handoffs assigned of {cap['slots']} slots and {cap['open_queued']} queued, "
                f"{x['capacity']['during']['samples']} capacity samples during the runs; "
                f"server warnings/errors logged: {x.get('log_problems') or 'none'}")
    if "postgresql-workers" in t:
        refused = (t["postgresql-workers"].get("log_problems") or {}).get("warning: change_refused", 0)
        extra.append(
            f"- postgresql-workers: {refused} changes refused by the database over all its runs, because the "
            "other worker had changed the same agent or conversation first (mostly two workers giving away an "
            "agent's last slot at once while the slots fill); each was decided again on what the database "
            f"held, and {failed_requests(t['postgresql-workers'])} requests were answered 503 (refused three "
            "times in a row; docs/deployment.md)")
    if "bare" in t:
        extra.append(f"- bare: RSS {fmt(t['bare'].get('rss_mib_after_faq'))} MiB")
        bh = t["bare"].get("faq", {}).get("half")
        if bh:
            extra.append(
                f"- the open-loop apparatus in this run: the bare handler at half its rate "
                f"({fmt(bh['target_rate'], 0)}/s) measured p50 {fmt(bh['p50_ms'], 2)} ms, p99 "
                f"{fmt(bh['p99_ms'], 2)} ms, with the generator's own scheduling lag at p99 "
                f"{fmt(bh.get('sched_lag_p99_ms'), 1)} ms (what the machine and generator add, at a far higher "
                f"rate than tierdesk's half-rate runs)")
    bare_cpu = t.get("bare", {}).get("faq", {}).get("saturated", {}).get("server_cpu_ms_per_req")
    if bare_cpu:
        parts = []
        for name, label in DB_TARGETS:
            for path in ("faq", "handoff"):
                c = t.get(name, {}).get(path, {}).get("saturated", {}).get("server_cpu_ms_per_req")
                if c:
                    parts.append(f"{label} {path} {c / bare_cpu:.0f}× ({fmt(c, 2)} ms)")
        if parts:
            extra.append(
                f"- server CPU per request at saturation, relative to bare ({fmt(bare_cpu, 3)} ms): "
                + ", ".join(parts) + " (a figure neighbours disturb less than req/s)")
    lines += extra
    for key, what in (("profile_faq", "saturated FAQ"), ("profile_faq_half", "FAQ at half rate, open loop"),
                      ("profile_handoff", "saturated handoff")):
        profiled = next((name for name, _ in DB_TARGETS if t.get(name, {}).get(key)), None)
        if profiled is None:
            continue
        prof = t[profiled][key]
        threads = ", ".join(f"{x['thread'].split(': ', 1)[-1]} {x['samples'] / max(1, prof['samples']):.0%}"
                            for x in prof["threads"][:3])
        lines += ["", f"Profile, tierdesk/{dict(DB_TARGETS)[profiled]}, {what} (py-spy --gil, {prof['samples']} samples; "
                      f"GIL held by: {threads}; `{prof['raw_file']}`):", "",
                  "| who holds the GIL (innermost matching frame) | share |", "|---|---:|"]
        lines += [f"| {c['category']} | {c['share']:.0%} |" for c in prof.get("categories", [])]
        lines += ["", "| frame (inclusive; request plumbing left out) | share of GIL samples |", "|---|---:|"]
        # Frames every request passes through (the loop, aiohttp's dispatch,
        # the middleware chain) are left out here; the JSON has them all.
        skip = ("<module>", "main (tierdesk/cli.py)", "_serve (", "run_app (", "Thread.", "_WorkItem.run",
                "_worker (concurrent", "RequestHandler._handle_request", "Application._handle",
                "_fix_request_current_app", "context_middleware", "error_middleware", "ip_rate_limit",
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

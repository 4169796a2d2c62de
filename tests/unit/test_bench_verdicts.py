"""`make bench`'s verdicts (bench/verdicts.py), read from a results dict of
the shape bench/run.py writes, and its projection's arithmetic
(bench/projection.py)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from loadgen import is_handoff  # noqa: E402
from projection import Costs, mixed, one_machine, postgres_limit, project_run  # noqa: E402
from verdicts import TARGETS, evaluate  # noqa: E402


def run(server: float, db: float | None, *, rate: float = 1000.0, p99: float = 5.0) -> dict[str, Any]:
    r: dict[str, Any] = {"server_cpu_ms_per_req": server, "server_main_thread_cpu_ms_per_req": server * 0.9,
                         "target_rate": rate, "req_s": rate, "p99_ms": p99, "non2xx": 0, "socket_errors": 0}
    if db is not None:
        r["database_cpu_ms_per_req"] = db
    return r


def tierdesk(label: str, server: float, db: float | None, half_rate: dict[str, float]) -> dict[str, Any]:
    return {
        "label": label,
        "faq": {"saturated": run(server, db), "half": run(server * 1.5, db and db * 1.5, rate=half_rate["faq"])},
        "handoff": {"saturated": run(server, db),
                    "half": run(server * 1.5, db and db * 1.5, rate=half_rate["handoff"])},
        "mix": {"open": run(server, db, rate=1000.0, p99=12.0)},
        "loop_longest_step_ms": 12.0,
        "rss_end_per_process": [{"pid": 1, "role": "root", "mib": 250.0}, {"pid": 2, "role": "child", "mib": 20.0}],
        "queued_at_end": 61_000,
        "stored_messages_at_end": 1_030_000,
        "capacity": {"ok": True},
        "durability": {"ok": True},
    }


@pytest.fixture
def results() -> dict[str, Any]:
    """Every target met: tierdesk at 3× bare's CPU, PostgreSQL under its
    budget, 2 workers and 2 instances at 1.1× one process's CPU."""
    rates = {"faq": 900.0, "handoff": 700.0}
    t = {
        "bare": {"label": "bare aiohttp", "faq": {"saturated": run(0.04, None, rate=20_000.0)}},
        "sqlite": tierdesk("tierdesk SQLite", 0.12, None, rates),
        "postgresql": tierdesk("tierdesk PostgreSQL", 0.12, 0.1, rates),
        "postgresql-workers": tierdesk("tierdesk PostgreSQL, 2 workers", 0.132, 0.11, rates),
        "postgresql-instances": tierdesk("tierdesk PostgreSQL, 2 instances", 0.132, 0.11, rates),
    }
    return {"targets": t, "mix_handoff_share": 0.3}


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    return {c["check"]: c["pass"] for c in evaluate(results)}


def failing(results: dict[str, Any]) -> list[str]:
    return [name for name, ok in verdicts(results).items() if not ok]


def test_a_run_that_meets_every_target_passes_every_check(results: dict[str, Any]) -> None:
    assert failing(results) == []
    names = list(verdicts(results))
    # Each target of the issue has its check: ratios to bare on both paths and
    # databases, PostgreSQL's CPU, scale-out both ways, latency, loop, memory.
    assert sum("× bare aiohttp" in n for n in names) == 4
    assert sum("PostgreSQL's CPU per message" in n for n in names) == 2
    assert sum("× one process's" in n for n in names) == 4
    assert sum("p99" in n for n in names) == 4
    assert sum("longest step" in n for n in names) == 4
    assert sum("RSS" in n for n in names) == 4


def test_server_cpu_over_four_times_bare_fails_the_faq_path_only(results: dict[str, Any]) -> None:
    results["targets"]["sqlite"]["faq"]["saturated"]["server_cpu_ms_per_req"] = 0.2  # 5× bare's 0.04
    assert failing(results) == ["SQLite FAQ: server CPU per message at saturation, × bare aiohttp's per request"]
    results["targets"]["sqlite"]["handoff"]["saturated"]["server_cpu_ms_per_req"] = 0.2  # 5×: the handoff limit
    assert len(failing(results)) == 1


def test_postgresql_cpu_per_message(results: dict[str, Any]) -> None:
    results["targets"]["postgresql"]["handoff"]["saturated"]["database_cpu_ms_per_req"] = 0.21
    assert failing(results) == ["PostgreSQL handoff: PostgreSQL's CPU per message at saturation"]


def test_scale_out_counts_server_and_postgresql_at_the_same_rate(results: dict[str, Any]) -> None:
    half = results["targets"]["postgresql-instances"]["handoff"]["half"]
    # One process: 0.18 + 0.15 = 0.33 ms; 1.15× is 0.3795.
    half["server_cpu_ms_per_req"], half["database_cpu_ms_per_req"] = 0.18, 0.2  # 0.38: 1.15×
    assert failing(results) == ["2 instances handoff: CPU per message (server + PostgreSQL) × one process's, "
                                "same open-loop rate"]
    half["database_cpu_ms_per_req"] = 0.19  # 0.37: 1.12×
    assert failing(results) == []
    half["target_rate"] = 650.0  # cheaper at another rate proves nothing
    assert len(failing(results)) == 1


def test_latency_targets(results: dict[str, Any]) -> None:
    results["targets"]["postgresql"]["faq"]["half"]["p99_ms"] = 10.5
    results["targets"]["sqlite"]["mix"]["open"]["p99_ms"] = 15.5
    assert sorted(failing(results)) == ["PostgreSQL FAQ: p99 at half the saturated rate (open loop)",
                                        "SQLite: p99 of a 70%/30% FAQ/handoff mix at 1,000/s (open loop)"]


def test_a_mix_at_another_rate_does_not_pass(results: dict[str, Any]) -> None:
    results["targets"]["sqlite"]["mix"]["open"]["target_rate"] = 500.0
    assert failing(results) == ["SQLite: p99 of a 70%/30% FAQ/handoff mix at 1,000/s (open loop)"]


def test_the_longest_loop_step_of_any_target(results: dict[str, Any]) -> None:
    results["targets"]["postgresql-workers"]["loop_longest_step_ms"] = 20.5
    assert failing(results) == ["tierdesk PostgreSQL, 2 workers: the event loop's longest step, CPU (upper bound)"]


def test_where_each_step_was_timed_that_is_the_verdict_not_the_bound(results: dict[str, Any]) -> None:
    sqlite = results["targets"]["sqlite"]
    sqlite["loop_longest_step_ms"] = 22.6  # the heartbeats' bound: a whole loop iteration at saturation
    sqlite["steps_probed"] = {"longest_step_ms": 9.7, "queued": 66_000, "steps_timed": 500_000,
                              "slowest": [{"cpu_ms": 9.7, "gc_ms": 0.0, "what": "task RequestHandler.start"}]}
    assert failing(results) == []
    [check] = [c for c in evaluate(results) if c["check"].startswith("tierdesk SQLite: the event loop's")]
    assert check["check"].endswith("(each step timed)") and "22.6" in check["note"]
    sqlite["steps_probed"]["longest_step_ms"] = 20.5
    assert failing(results) == ["tierdesk SQLite: the event loop's longest step, CPU (each step timed)"]
    sqlite["steps_probed"]["longest_step_ms"] = None  # a probe that recorded nothing proves nothing
    assert len(failing(results)) == 1


def test_memory_is_judged_per_process_and_only_under_its_condition(results: dict[str, Any]) -> None:
    ok = copy.deepcopy(results)
    results["targets"]["sqlite"]["rss_end_per_process"][0]["mib"] = 310.0
    assert failing(results) == [f"tierdesk SQLite: RSS of the largest server process, {TARGETS['queued_handoffs']:,}+ "
                                f"handoffs queued, {TARGETS['stored_messages']:,}+ messages stored"]
    # Small enough, but with fewer messages stored than the target names: not a pass.
    ok["targets"]["postgresql"]["stored_messages_at_end"] = 30_000
    check = next(c for c in evaluate(ok) if not c["pass"])
    assert "condition not met" in check["note"]


def test_memory_is_judged_when_the_queue_first_reached_the_mark(results: dict[str, Any]) -> None:
    sqlite = results["targets"]["sqlite"]
    sqlite["rss_end_per_process"][0]["mib"] = 322.0  # the runs went on to 92,000 queued
    sqlite["queued_at_end"] = 92_000
    sqlite["capacity"]["during"] = {"at_queued_mark": {"queued": 60_400, "rss_mib": 268.0}}
    check = next(c for c in evaluate(results) if c["check"].startswith("tierdesk SQLite: RSS"))
    assert check["pass"] and check["value"] == 268.0
    assert "60,400 first waited" in check["note"] and "322.0 MiB with 92,000 queued" in check["note"]
    sqlite["capacity"]["during"]["at_queued_mark"]["rss_mib"] = 301.0
    assert not next(c for c in evaluate(results) if c["check"].startswith("tierdesk SQLite: RSS"))["pass"]


def test_missing_figures_fail(results: dict[str, Any]) -> None:
    del results["targets"]["bare"]
    assert sum("× bare aiohttp" in n for n in failing(results)) == 4


def test_errors_and_lost_messages_fail(results: dict[str, Any]) -> None:
    results["targets"]["postgresql"]["mix"]["open"]["non2xx"] = 1
    results["targets"]["sqlite"]["durability"]["ok"] = False
    assert sorted(failing(results)) == ["non-2xx + socket errors + unfinished, all runs",
                                        "tierdesk SQLite: every 2xx stored (checked after SIGKILL)"]


# -- the projection


def test_one_machine_is_bound_by_cpu_when_the_loops_have_room() -> None:
    c = Costs(server_ms=0.3, loop_ms=0.25, db_ms=0.1)
    m = one_machine(c, 4)
    # 4 cores / 0.4 ms = 10,000/s; 3 loops at 0.25 ms could give 12,000/s.
    assert m.rate == pytest.approx(10_000)
    assert (m.processes, m.bound) == (3, "CPU")
    assert m.tierdesk_cores == pytest.approx(3.0) and m.postgresql_cores == pytest.approx(1.0)
    assert m.plan_rate == pytest.approx(7_000)


def test_the_cost_of_each_extra_process_grows_with_their_number() -> None:
    c = Costs(server_ms=0.3, loop_ms=0.3, db_ms=0.1, k_server=1.1, k_db=1.5)
    assert c.at(1) == pytest.approx((0.3, 0.3, 0.1))
    assert c.at(3) == pytest.approx((0.36, 0.36, 0.2))  # 1 + 2 × 0.1, 1 + 2 × 0.5
    assert Costs(0.3, 0.3, 0.1, k_server=0.9).at(4) == pytest.approx((0.3, 0.3, 0.1))  # noise counts as 1


def test_postgresql_becomes_the_limit_when_enough_processes_feed_it() -> None:
    lim = postgres_limit(Costs(server_ms=0.3, loop_ms=0.25, db_ms=0.1), 4)
    # 4 cores / 0.1 ms = 40,000/s; each process gives at most 4,000/s: 10 processes.
    assert lim.rate == pytest.approx(40_000) and lim.processes == 10


def test_when_read_backs_grow_faster_than_processes_add_postgresql_is_never_full() -> None:
    lim = postgres_limit(Costs(server_ms=0.3, loop_ms=0.3, db_ms=0.05, k_server=2.0, k_db=1.0), 16, 64)
    # n processes at 0.3·n ms each give n·1000/(0.3·n) = 3,333/s whatever n.
    assert lim.rate is None and lim.tierdesk_ceiling == pytest.approx(1000 / 0.3)


def test_a_mix_weighs_costs_by_share() -> None:
    m = mixed([(Costs(0.2, 0.2, 0.1, 1.0, 1.2), 0.7), (Costs(0.4, 0.4, 0.2, 1.5, 1.0), 0.3)])
    assert (m.server_ms, m.db_ms) == pytest.approx((0.26, 0.13))
    # Its cost with 2 processes is the mix of the parts' costs with 2.
    assert m.at(2)[0] == pytest.approx(0.7 * 0.2 + 0.3 * 0.4 * 1.5)
    assert m.at(2)[2] == pytest.approx(0.7 * 0.1 * 1.2 + 0.3 * 0.2)


def test_project_run_reads_postgresql_and_the_two_worker_factor(results: dict[str, Any]) -> None:
    p = project_run(results)
    assert set(p["paths"]) == {"faq", "handoff", "mix"}
    costs = p["paths"]["faq"]["costs"]
    assert costs["server_ms"] == 0.12 and costs["db_ms"] == 0.1
    assert costs["k_server"] == pytest.approx(1.1) and costs["k_db"] == pytest.approx(1.1)
    assert [row["cores"] for row in p["paths"]["faq"]["one_machine"]] == [4, 8, 16]


def test_the_mix_spreads_its_handoffs_evenly() -> None:
    picks = [is_handoff(i, 0.3) for i in range(1000)]
    assert sum(picks) == 300
    assert all(2 <= sum(picks[k:k + 10]) <= 4 for k in range(0, 990))


def test_the_report_shows_every_check_and_the_projection(results: dict[str, Any]) -> None:
    from report import markdown, projection_block

    for name, t in results["targets"].items():
        t["faq"]["saturated"].update(p50_ms=1.0, group_commit_mean_batch=None,
                                     process_cpu_ms_per_req={"root": 0.1, "child": 0.02})
        if name != "bare":
            t["capacity"] = {"ok": True, "during": {"samples": 3, "violations": []},
                             "after": {"open_assigned": 100, "slots": 100, "open_queued": 61_000}}
            for path, kind in (("faq", "half"), ("handoff", "saturated"), ("handoff", "half"), ("mix", "open")):
                t[path][kind].update(p50_ms=1.0, sustained=True)
    results.update(
        started_at="2026-12-05 05:02 UTC", command="bench/run.py", duration_s=10.0, rounds=2, wrk_threads=2,
        connections=64, sqlite_synchronous="NORMAL", stored_seed=1_000_000, analyzed_after_warmup=True,
        queued_wanted=60_000, loadavg_start=[1, 1, 1], loadavg_end=[1, 1, 1], other_processes_cores_mean=0.1,
        other_processes_cores_max=0.2, code={"commit": "abc1234", "modified_files": []}, wall_s=500.0,
        output="bench/results/latest.json",
        machine={"nproc": 2, "cpu_model": "AMD EPYC", "mem_total_mib": 24_105, "kernel": "6", "python": "3.11",
                 "sqlite": "3.40"})
    results["checks"] = evaluate(results)
    results["projection"] = project_run(results)
    text = markdown(results)
    assert text.count("| PASS |") == len(results["checks"])
    assert "server 0.100, SQLite writer 0.020" in text
    block = projection_block(results)
    assert "at commit abc1234" in block and block.count("| FAQ answers |") == 3


def test_the_report_splits_the_scale_out_ratio_by_the_rate_one_process_was_given(results: dict[str, Any]) -> None:
    from report import share_lines

    one = results["targets"]["postgresql"]
    # one process: 0.18 + 0.15 ms at 900/s; alone at 450/s it costs 0.44 ms
    one["faq"]["share"] = run(0.28, 0.16, rate=450.0)
    lines = share_lines(results["targets"])
    assert len(lines) == 2  # FAQ, for the workers and for the instances; no handoff share was measured
    # 2 workers: 0.198 + 0.165 ms = 0.363 at 900/s
    assert ("0.363 ms per message (server + PostgreSQL) at 900/s; one process 0.330 ms at that rate (1.10×, "
            "the target's ratio) and 0.440 ms at each process's share, 450/s (0.82×)") in lines[0]
    assert lines[0].startswith("- tierdesk PostgreSQL, 2 workers, FAQ:")


def test_errors_in_the_run_at_each_process_share_count_as_failed_requests(results: dict[str, Any]) -> None:
    results["targets"]["postgresql"]["handoff"]["share"] = run(0.3, 0.2, rate=350.0) | {"non2xx": 2}
    assert failing(results) == ["non-2xx + socket errors + unfinished, all runs"]

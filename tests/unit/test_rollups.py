"""Rollups maintained on write give the replay's report: counts exactly,
percentiles within 1%."""

from __future__ import annotations

import math
import random
import struct

import orjson
import pytest

from router import metrics, rollup_report, rollups
from router.metrics import SLA
from router.model import AgentStatus, Customer, Tier
from router.ports import FakeClock
from router.services import Desk, DeskConfig, IncomingMessage
from router.tracker import EventKind, TrackerEvent

from .fakes import FakeClassifier, FakeStore, Prediction

SLA_ = SLA(2.0, 60.0, 60.0)


def report_via_rollups(events: list[TrackerEvent], start: float, end: float, now: float,
                       group_by: str = "tier", bucket: metrics.Bucket = None, sla: SLA = SLA_) -> dict:
    _, deltas = rollups.tally_events(events, sla)
    rows = [(h, ch, name, v) for (h, ch, name), v in deltas.values.items() if start <= h < end]
    # What storage's `pending` reads from the tables, here from the facts.
    pending: dict[tuple[float, str], dict[str, int]] = {}
    facts = metrics.replay(events, sla)
    for m in facts.messages:
        due = m.replied_at is not None or sla.elapsed(m.tier, m.skill(), m.received_at, now) > sla.for_tier(m.tier)
        if not due and start <= m.received_at < end:
            pending.setdefault((rollups.hour_of(m.received_at), m.channel), {}).setdefault(m.tier.value, 0)
            pending[(rollups.hour_of(m.received_at), m.channel)][m.tier.value] += 1
    for h in facts.handoffs:
        due = h.first_reply_at is not None or sla.elapsed(
            Tier.HUMAN, h.skill, h.requested_at, now) > sla.human_first_response_seconds
        if not due and start <= h.requested_at < end:
            slot = pending.setdefault((rollups.hour_of(h.requested_at), h.channel), {})
            slot["first"] = slot.get("first", 0) + 1
    hists = [(h, ch, stat, rollup_report.Histogram.of(d)) for (h, ch, stat), d in deltas.hist.items()
             if start <= h < end]
    return rollup_report.report(rows, hists, pending, start=start, end=end, now=now, sla=sla, group_by=group_by,
                          bucket=bucket)


def assert_same(exact: object, approx: object, path: str = "") -> None:
    """The rollups' report is the replay's: counts exactly, percentiles within
    the bound the report states (and never outside the samples)."""
    if isinstance(exact, dict):
        assert isinstance(approx, dict) and set(exact) == set(approx), (path, exact, approx)
        if path == "":
            assert exact["percentile_error"] == {"relative": 0.0, "seconds": 0.0}
            assert approx["percentile_error"] == {"relative": 0.01, "seconds": rollups.BIN_FLOOR}
        for k in exact:
            if path == "" and k == "percentile_error":
                continue
            assert_same(exact[k], approx[k], f"{path}.{k}")
    elif isinstance(exact, list):
        assert isinstance(approx, list) and len(exact) == len(approx), (path, exact, approx)
        for i, (a, b) in enumerate(zip(exact, approx, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(exact, float) and path.rsplit(".", 1)[-1] in ("p50", "p90"):
        assert approx == pytest.approx(exact, rel=0.01, abs=1e-6), path
    elif isinstance(exact, float):
        assert approx == pytest.approx(exact, rel=1e-9, abs=1e-6), path
    else:
        assert exact == approx, (path, exact, approx)


def worked_example() -> list[TrackerEvent]:
    t0 = 7200.0
    c, ch = "conv", "web"

    def ev(kind: EventKind, at: float, **kw: object) -> TrackerEvent:
        return TrackerEvent(kind, t0 + at, ch, c, **kw)  # type: ignore[arg-type]

    return [
        ev(EventKind.MESSAGE_RECEIVED, 0, message_id="m1", data={"tier": "bot"}),
        ev(EventKind.BOT_ANSWERED, 0.3, message_id="r1", data={"in_reply_to": "m1"}),
        ev(EventKind.MESSAGE_RECEIVED, 20, message_id="m2", data={"tier": "human"}),
        ev(EventKind.HANDOFF_REQUESTED, 20, handoff_id="h", data={"reason": "customer_asked", "skill": "general"}),
        ev(EventKind.QUEUED, 20, handoff_id="h"),
        ev(EventKind.ASSIGNED, 50, handoff_id="h", agent_id="ann"),
        ev(EventKind.AGENT_REPLIED, 80, handoff_id="h", agent_id="ann"),
        ev(EventKind.MESSAGE_RECEIVED, 90, message_id="m3", data={"tier": "human"}),
        ev(EventKind.MESSAGE_RECEIVED, 95, message_id="m4", data={"tier": "human"}),
        ev(EventKind.AGENT_REPLIED, 130, handoff_id="h", agent_id="ann"),
        ev(EventKind.RESOLVED, 200, handoff_id="h", data={"by": "agent", "abandoned": False}),
        ev(EventKind.FEEDBACK, 210, data={"rating": 5, "resolved": False}),
    ]


def test_worked_example_matches_the_replay() -> None:
    events = worked_example()
    exact = metrics.compute(events, start=0, end=86400, now=86400, sla=SLA_)
    assert_same(exact, report_via_rollups(events, 0, 86400, 86400))
    assert exact["groups"][0]["human"]["reply_interval"]["avg"] == 37.5


def test_histogram_percentiles_are_within_one_percent() -> None:
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(1.0, 1.5) for _ in range(5000))
    bins: dict[int, int] = {}
    for v in values:
        bins[rollups.bin_of(v)] = bins.get(rollups.bin_of(v), 0) + 1
    dense = rollup_report.dense(bins)
    for q in (0.1, 0.5, 0.9, 0.99):
        exact = metrics.percentile(values, q)
        assert rollup_report.histogram_percentile(dense, len(values), q) == pytest.approx(exact, rel=0.01)
    for v in values[::97]:  # every sample is represented within 1%
        assert rollups.bin_value(rollups.bin_of(v)) == pytest.approx(v, rel=0.01)


async def simulate(seed: int, sla: SLA = SLA_) -> tuple[list[TrackerEvent], float]:
    """Random traffic through the real Desk: FAQ answers, handoffs, queueing,
    full queues and messages left, replies, transfers, resolutions,
    feedback, customers leaving."""
    rng = random.Random(seed)
    clock = FakeClock(1_767_225_600.0)
    store = FakeStore()
    for i in range(3):
        store.seed_agent(f"a{i}", ["general", "billing"], capacity=2, status=AgentStatus.OFFLINE)
    classifier = FakeClassifier()
    classifier.says("faq", Prediction("reset", 0.95, 0.5, "Do X", None, False, False))
    classifier.says("bill", Prediction("refund", 0.95, 0.5, None, "billing", True, False))
    # Weights and a queue limit too: full queues, messages left (never abandoned).
    desk = Desk(store, classifier, clock, DeskConfig(sla=sla, queue_limits={"billing": 2}, vip_weight=2))
    await desk.start()
    for i in range(3):
        await desk.update_agent(f"a{i}", status=AgentStatus.ONLINE)
    n = 0
    for _ in range(400):
        clock.advance(rng.expovariate(1 / 20))
        roll = rng.random()
        conv = f"c{rng.randrange(40)}"
        if roll < 0.55:
            n += 1
            text = rng.choice(["faq", "bill", "human please", "faq"])
            await desk.receive_message("web" if rng.random() < 0.7 else "app",
                                       IncomingMessage(f"m{n}", conv, Customer("u", None, rng.random() < 0.2), text))
        else:
            agent = f"a{rng.randrange(3)}"
            mine = await desk.open_conversations(agent)
            if not mine:
                continue
            target = rng.choice(mine)
            if roll < 0.85:
                await desk.agent_reply(agent, target.id, "hello")
            elif roll < 0.95:
                await desk.resolve(agent, target.id)
            else:
                await desk.close(target.channel_id, target.external_id)
        if rng.random() < 0.05:
            ids = [c for c in {e.conversation_id for e in store.events}]
            if ids:
                conv_obj = await desk._conversation_by_id(rng.choice(ids))
                await desk.feedback(conv_obj.channel_id, conv_obj.external_id, rng.randint(1, 5), rng.random() < 0.5)
    return store.events, clock.now()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("group_by,bucket", [("tier", None), ("channel", "hour"), ("tier", "day")])
async def test_random_traffic_gives_the_same_report(seed: int, group_by: str, bucket: metrics.Bucket) -> None:
    events, now = await simulate(seed)
    assert len(events) > 300
    start = rollups.hour_of(events[0].at)
    end = rollups.hour_of(now) + 3600
    for t_now in (now, now + 30):  # with messages still inside their SLA, and after
        exact = metrics.compute(events, start=start, end=end, now=t_now, sla=SLA_, group_by=group_by,  # type: ignore[arg-type]
                                bucket=bucket)
        assert_same(exact, report_via_rollups(events, start, end, t_now, group_by, bucket))
    assert math.isfinite(exact["groups"][0]["human"]["handoffs"])


def test_histogram_encoding_round_trips() -> None:
    h = rollup_report.Histogram(rollup_report.dense({0: 3, 17: 1, 400: 9, rollups.N_BINS - 1: 2}), 0.0, 2.5e6)
    back = rollup_report.decode(rollup_report.encode(h))
    assert (back.counts == h.counts).all() and (back.low, back.high) == (0.0, 2.5e6)
    empty = rollup_report.Histogram(rollup_report.dense({}))
    assert rollup_report.encode(empty) == rollups.EMPTY_HISTOGRAM
    assert (rollup_report.decode(rollups.EMPTY_HISTOGRAM).counts == empty.counts).all()
    one = rollup_report.Histogram(rollup_report.dense({300: 1, 310: 2}), 0.5, 0.6)
    assert len(rollup_report.encode(one)) == 1 + 2 + 16 + 11 * 8


def test_a_histogram_stored_before_bounds_were_kept_reads_its_bins_edges_as_bounds() -> None:
    # The format before 2026-12: first bin, then the counts; no bounds.
    b = rollups.bin_of(60.0)
    legacy = (b - 1).to_bytes(2, "little") + struct.pack("<3q", 1, 0, 2)
    h = rollup_report.decode(legacy)
    assert h.counts[b - 1] == 1 and h.counts[b + 1] == 2 and h.counts.sum() == 3
    assert (h.low, h.high) == (rollups.bin_bounds(b - 1)[0], rollups.bin_bounds(b + 1)[1])
    assert h.low <= 60.0 / rollups.BIN_GROWTH and h.high >= 60.0 * rollups.BIN_GROWTH
    # Added to, it is written in today's format, its bounds kept.
    delta = rollups.HistogramDelta()
    delta.add(60.0)
    again = rollup_report.decode(rollups.add_to_histogram(legacy, delta))
    assert again.counts[b] == 1 and again.counts.sum() == 4
    assert (again.low, again.high) == (h.low, h.high)


def _delta(bins: dict[int, int]) -> rollups.HistogramDelta:
    return rollups.HistogramDelta(dict(bins), *(
        (rollups.bin_value(min(bins)), rollups.bin_value(max(bins))) if bins else (math.inf, -math.inf)))


def test_adding_to_a_stored_histogram_in_plain_python_equals_adding_arrays() -> None:
    # The writer's process adds without numpy; the report reads with it.
    rng = random.Random(7)
    blob = rollups.EMPTY_HISTOGRAM
    total = rollup_report.Histogram(rollup_report.dense({}))
    for _ in range(300):
        bins = {rng.randrange(rollups.N_BINS) if rng.random() < 0.2 else rng.randrange(280, 320): rng.randrange(1, 5)
                for _ in range(rng.randrange(0, 6))}
        blob = rollups.add_to_histogram(blob, _delta(bins))
        total = total + rollup_report.Histogram.of(_delta(bins))
        assert blob == rollup_report.encode(total)
    back = rollup_report.decode(blob)
    assert (back.counts == total.counts).all() and (back.low, back.high) == (total.low, total.high)
    assert rollups.add_to_histogram(rollups.EMPTY_HISTOGRAM, rollups.HistogramDelta()) == rollups.EMPTY_HISTOGRAM
    # Counts taken back out (a rebuild's correction) shrink the span again;
    # the bounds stay (still true bounds of what is left).
    only = rollups.add_to_histogram(rollups.EMPTY_HISTOGRAM, _delta({5: 2, 900: 1}))
    shrunk = rollup_report.decode(rollups.add_to_histogram(only, rollups.HistogramDelta({900: -1})))
    assert (shrunk.counts == rollup_report.dense({5: 2})).all()
    assert rollups.add_to_histogram(only, rollups.HistogramDelta({5: -2, 900: -1})) == rollups.EMPTY_HISTOGRAM


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_tally_restored_from_its_snapshot_before_every_event_counts_as_the_replay(seed: int) -> None:
    events, _ = await simulate(seed)
    _, replay = rollups.tally_events(events, SLA_)
    tallies: dict[str, list] = {}  # conversation id -> its snapshot, through JSON
    out = rollups.Deltas()
    for e in events:
        snap = tallies.get(e.conversation_id)
        tally = (rollups.ConversationTally(e.channel_id) if snap is None
                 else rollups.ConversationTally.restore(e.channel_id, snap))
        assert tally is not None
        tally.apply(e, SLA_, out)
        tallies[e.conversation_id] = orjson.loads(orjson.dumps(tally.snapshot()))
    assert dict(out.values) == pytest.approx(dict(replay.values))
    assert {k: d.bins for k, d in out.hist.items()} == {k: d.bins for k, d in replay.hist.items()}
    assert out.replied == replay.replied

"""tierdesk/web/prom.py: the exposition, alone and with other workers'
series, read back by prometheus-client's own parser."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tierdesk.web.prom import Registry


def _worker(n: int, answers: int, queue: int) -> Registry:
    r = Registry({"worker": str(n)})
    r.counter("tierdesk_messages_total", "Customer messages")
    r.histogram("tierdesk_http_request_duration_seconds", "HTTP request latency")
    r.gauge("tierdesk_queue_waiting", "Handoffs waiting", lambda: queue)
    for _ in range(answers):
        r.inc("tierdesk_messages_total", action="answer")
        r.observe("tierdesk_http_request_duration_seconds", 0.003, route="/v1/messages")
    return r


def parsed(text: str) -> dict[str, tuple[str, list[tuple[str, dict[str, str], float]]]]:
    """{family: (type, [(sample name, labels, value)])} as Prometheus reads it."""
    return {f.name: (f.type, [(s.name, s.labels, s.value) for s in f.samples])
            for f in text_string_to_metric_families(text)}


def test_one_process_renders_its_own_series_without_a_worker_label() -> None:
    r = Registry()
    r.counter("tierdesk_messages_total", "Customer messages")
    r.inc("tierdesk_messages_total", action="answer")
    r.inc("tierdesk_messages_total", 2, action="answer")
    assert r.render() == ("# HELP tierdesk_messages_total Customer messages\n"
                          "# TYPE tierdesk_messages_total counter\n"
                          'tierdesk_messages_total{action="answer"} 3\n')


def test_other_workers_series_are_grouped_under_each_metrics_one_header() -> None:
    first, second = _worker(0, answers=3, queue=5), _worker(1, answers=2, queue=5)
    # As published: through JSON, as the file between workers holds them.
    published = orjson.loads(orjson.dumps(second.families()))
    text = first.render([published])
    lines = text.splitlines()
    assert sum(line.startswith("# TYPE ") for line in lines) == 3
    assert 'tierdesk_messages_total{worker="0",action="answer"} 3' in lines
    assert 'tierdesk_messages_total{worker="1",action="answer"} 2' in lines
    assert 'tierdesk_queue_waiting{worker="0"} 5' in lines and 'tierdesk_queue_waiting{worker="1"} 5' in lines
    assert ('tierdesk_http_request_duration_seconds_count{worker="1",route="/v1/messages"} 2') in lines
    # Each metric's lines follow its own header, before the next header.
    for name in ("tierdesk_messages_total", "tierdesk_queue_waiting", "tierdesk_http_request_duration_seconds"):
        start = lines.index(f"# TYPE {name} " + ("counter" if name.endswith("total") else
                                                  "gauge" if "queue" in name else "histogram"))
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# HELP")), len(lines))
        assert all(line.startswith(name) for line in lines[start + 1:end])
        assert sum(line.startswith(name) for line in lines) == end - start - 1
    families = parsed(text)
    assert families["tierdesk_messages"][0] == "counter"
    assert families["tierdesk_http_request_duration_seconds"][0] == "histogram"


def test_label_values_and_help_are_escaped_and_read_back_as_they_were() -> None:
    r = Registry()
    r.counter("tierdesk_http_requests_total", 'Requests by route ("canonical")\\ and a second\nline')
    awkward = 'a "quoted" \\ back\\slash and a\nnew line'
    r.inc("tierdesk_http_requests_total", route=awkward, status="404")
    [(name, labels, value)] = parsed(r.render())["tierdesk_http_requests"][1]
    assert name == "tierdesk_http_requests_total" and labels == {"route": awkward, "status": "404"} and value == 1


def test_counters_are_typed_counter_and_named_total_and_read_components_counts() -> None:
    r = Registry()
    batches = {"n": 0}
    r.counter("tierdesk_group_commit_batches_total", "Group-commit transactions", lambda: batches["n"])
    r.counter_by("tierdesk_messages_total", "Messages", "action", lambda: {"answer": 4, "handoff": 1})
    batches["n"] = 1_234_567  # written exactly, not as 1.23457e+06
    text = r.render()
    assert "tierdesk_group_commit_batches_total 1234567\n" in text
    families = parsed(text)
    assert families["tierdesk_group_commit_batches"] == (
        "counter", [("tierdesk_group_commit_batches_total", {}, 1_234_567)])
    assert families["tierdesk_messages"][1] == [("tierdesk_messages_total", {"action": "answer"}, 4),
                                                ("tierdesk_messages_total", {"action": "handoff"}, 1)]
    with pytest.raises(ValueError, match="_total"):
        r.counter("tierdesk_deliveries_sent", "A counter without the suffix")
    with pytest.raises(ValueError, match="_total"):
        r.gauge("tierdesk_waiting_total", "A gauge with it", lambda: 0)


def test_histogram_sums_are_exact() -> None:
    r = Registry()
    r.histogram("tierdesk_http_request_duration_seconds", "latency")
    for v in (0.1, 0.2, 7.25):
        r.observe("tierdesk_http_request_duration_seconds", v, route="/x")
    samples = {(n, s.get("le")): v for n, s, v in parsed(r.render())["tierdesk_http_request_duration_seconds"][1]}
    assert samples[("tierdesk_http_request_duration_seconds_sum", None)] == pytest.approx(7.55)
    assert samples[("tierdesk_http_request_duration_seconds_bucket", "+Inf")] == 3
    assert samples[("tierdesk_http_request_duration_seconds_bucket", "0.25")] == 2

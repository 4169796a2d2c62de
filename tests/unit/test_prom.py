"""tierdesk/web/prom.py: the exposition, alone and with other workers' series."""

from __future__ import annotations

import orjson

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

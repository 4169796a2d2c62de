"""The bench's FAQ path must measure FAQ answers: the demo model answers
each of its questions with any number after it (bench/loadgen.py, and
bench/message.lua for wrk, which must list the same texts), and hands off
each handoff text."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import loadgen  # noqa: E402


def lua_list(name: str) -> list[str]:
    body = re.search(rf"local {name} = \{{(.*?)\}}", (ROOT / "bench" / "message.lua").read_text(), re.S)
    assert body is not None
    return re.findall(r'"([^"]*)"', body.group(1))


def test_wrk_and_the_open_loop_generator_send_the_same_texts() -> None:
    assert lua_list("faq") == loadgen.FAQ
    assert lua_list("handoff") == loadgen.HANDOFF


def test_the_demo_model_answers_every_faq_text_with_any_number_and_hands_off_the_others(demo_model) -> None:
    numbers = range(0, loadgen.NUMBERS, 53)
    for q in loadgen.FAQ:
        predictions = demo_model.predict_many([f"{q} #{n}" for n in numbers])
        missed = [n for n, p in zip(numbers, predictions, strict=True) if not p.auto_answer]
        assert missed == [], (q, missed[:5])
    for q in loadgen.HANDOFF:
        assert not any(p.auto_answer for p in demo_model.predict_many([f"{q} #{n}" for n in numbers])), q

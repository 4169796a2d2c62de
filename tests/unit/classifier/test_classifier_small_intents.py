"""A knowledge base with intents of one or two examples trains: they are
learnt, run on the global threshold and are flagged in the estimate, and
the load warnings travel with the model's evaluation."""

from __future__ import annotations

import shutil

from classifier.knowledge_base import load_knowledge_base
from classifier.training import train

SMALL = """
intents:
  - id: gift_wrapping
    answer: We wrap any order as a gift for free; tick "gift" at checkout.
    examples: [can you gift wrap my order]
  - id: loyalty_points
    answer: Points show under Account > Rewards the day after delivery.
    examples: [where are my loyalty points, how many reward points do I have]
"""


def test_intents_of_one_or_two_examples_are_learnt_on_the_global_threshold_and_flagged(
        tmp_path, write_kb, demo_kb_path):
    shutil.copy(demo_kb_path, tmp_path / "a_demo.yaml")
    write_kb(SMALL, name="b_small.yaml")
    kb = load_knowledge_base(tmp_path)
    assert [w.split(": ", 1)[1].split(" example")[0] for w in kb.warnings] == [
        "intent 'gift_wrapping' has 1", "intent 'loyalty_points' has 2",
    ]

    trained = train(kb, random_state=0)

    small = {"gift_wrapping", "loyalty_points"}
    assert set(trained.evaluation["small_intents"]) == small
    assert trained.evaluation["warnings"] == list(kb.warnings)
    thresholds = trained.thresholds
    for intent in small:
        assert intent not in thresholds.per_intent
        assert thresholds.for_intent(intent) == thresholds.global_threshold
        assert "global threshold" in trained.evaluation["estimate"]["per_intent"][intent]["flag"]
    # Accepted means learnt: the shipped model, refit on every example,
    # takes each one's own wording to it.
    best, _ = trained.compiled.top_many(["can you gift wrap my order", "where are my loyalty points"])
    assert list(trained.compiled.classes_[best]) == ["gift_wrapping", "loyalty_points"]
    # An intent of ordinary size keeps what the rules give it.
    assert "reset_password" not in trained.evaluation["small_intents"]

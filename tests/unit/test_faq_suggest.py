"""What `faq suggest` drafts: only clusters of handed-off questions that no
intent covers already (its examples, or agents' labels), big enough."""

from __future__ import annotations

import yaml

from classifier.clustering import Cluster
from tierdesk.faq_traffic import suggestion_yaml


def _cluster(examples: list[str], reasons: dict[str, int], top: str | None = None) -> Cluster:
    return Cluster(len(examples), examples[0], tuple(examples), top, reasons, tuple(range(len(examples))))


def test_only_handed_off_questions_no_intent_covers_are_drafted() -> None:
    clusters = [
        _cluster(["do you sponsor football teams", "football club sponsorship"], {"low_confidence": 2}),
        _cluster(["are you open on sundays", "sunday opening?"], {"low_confidence": 2}, "opening_hours"),
        _cluster(["where is my parcel", "parcel not arrived"], {"thumbs_down": 1, "asked_for_person": 1},
                 "track_order"),
        _cluster(["how do I reset my password", "reset password"], {"thumbs_down": 2}, "reset_password"),
        _cluster(["lonely question"], {"low_confidence": 1}),
    ]
    text = suggestion_yaml(clusters, misses=9, known={"reset password": "reset_password"},
                           labelled={"sunday opening?": "opening_hours"})
    [entry] = yaml.safe_load(text)["intents"]
    assert entry["examples"] == ["do you sponsor football teams", "football club sponsorship"]
    assert "labelled by agents as intent opening_hours; train on them with `tierdesk faq train --traffic" in text
    assert "answered by the bot as track_order and rejected (asked_for_person 1, thumbs_down 1)" in text
    assert "already examples of intent reset_password" in text
    assert "1 cluster smaller than --min-size 2" in text

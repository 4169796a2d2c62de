"""The handoff policy: when the bot answers and when a person must."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from router.model import HandoffReason
from router.policy import Answer, Handoff, HandoffPolicy


@dataclass(frozen=True, slots=True)
class Pred:
    intent_id: str = "reset_password"
    confidence: float = 0.9
    threshold: float = 0.5
    answer: str | None = "Use the 'forgot password' link."
    skill: str | None = "account"
    needs_human: bool = False
    out_of_scope: bool = False
    language: str | None = "en"


CONFIDENT = Pred()
UNSURE = Pred(confidence=0.3)
policy = HandoffPolicy()


@pytest.mark.parametrize("text", [
    "I want an agent",
    "AGENT please",
    "can I talk to a human?",
    "Humans only!",
    "put me through to a real person",
    "agents, anyone?",
    "我要人工",
    "转人工",
    "请帮我转人工客服",
    "ＡＧＥＮＴ",  # full-width: NFKC-normalised
])
def test_asking_for_a_person_wins_over_a_confident_answer(text: str) -> None:
    decision = policy.decide(text, CONFIDENT, bot_streak=0)
    assert decision == Handoff(HandoffReason.CUSTOMER_ASKED, "account", "reset_password", 0.9)


@pytest.mark.parametrize("text", [
    "what's on the agenda for the webinar",
    "how do I change my agency details",
    "is your product humane",
    "my personal details are wrong",
    "how do I reset my password",
])
def test_words_that_only_contain_a_phrase_do_not_trigger(text: str) -> None:
    assert not policy.asks_for_person(text)
    assert isinstance(policy.decide(text, CONFIDENT, bot_streak=0), Answer)


def test_asking_for_a_person_wins_over_every_other_rule() -> None:
    d = policy.decide("agent", Pred(out_of_scope=True, confidence=0.0), bot_streak=9, vip=True)
    assert d.reason is HandoffReason.CUSTOMER_ASKED
    assert d.skill == "general"  # not confident: the default skill


def test_confident_answer() -> None:
    assert policy.decide("how do I reset my password", CONFIDENT, bot_streak=1) == Answer(
        "Use the 'forgot password' link.", "reset_password", 0.9, "en"
    )
    # The answer's language goes with it.
    assert policy.decide("怎么重置密码", Pred(answer="点击“忘记密码”。", language="zh"), bot_streak=0) == Answer(
        "点击“忘记密码”。", "reset_password", 0.9, "zh"
    )
    # At the threshold is confident.
    assert isinstance(policy.decide("x", Pred(confidence=0.5), bot_streak=0), Answer)


def test_needs_human_only_when_confident() -> None:
    refund = Pred(intent_id="refund", skill="billing", needs_human=True, answer=None)
    assert policy.decide("refund me", refund, bot_streak=0) == Handoff(
        HandoffReason.NEEDS_HUMAN, "billing", "refund", 0.9
    )
    unsure_refund = Pred(intent_id="refund", skill="billing", needs_human=True, confidence=0.2)
    d = policy.decide("refund me", unsure_refund, bot_streak=0)
    assert d == Handoff(HandoffReason.LOW_CONFIDENCE, "general", "refund", 0.2)


def test_needs_human_comes_before_repeated_miss() -> None:
    d = policy.decide("refund", Pred(needs_human=True, skill="billing"), bot_streak=5)
    assert d.reason is HandoffReason.NEEDS_HUMAN


def test_repeated_miss_after_max_bot_answers() -> None:
    assert isinstance(policy.decide("q", CONFIDENT, bot_streak=1), Answer)
    d = policy.decide("q", CONFIDENT, bot_streak=2)
    assert d == Handoff(HandoffReason.REPEATED_MISS, "account", "reset_password", 0.9)
    strict = HandoffPolicy(max_bot_answers=0)
    assert strict.decide("q", CONFIDENT, bot_streak=0).reason is HandoffReason.REPEATED_MISS
    patient = HandoffPolicy(max_bot_answers=5)
    assert isinstance(patient.decide("q", CONFIDENT, bot_streak=4), Answer)


def test_repeated_miss_with_a_low_confidence_guess_uses_the_default_skill() -> None:
    d = policy.decide("q", UNSURE, bot_streak=2)
    assert d == Handoff(HandoffReason.REPEATED_MISS, "general", "reset_password", 0.3)


def test_low_confidence_hands_off_to_the_default_skill_not_the_guessed_one() -> None:
    d = policy.decide("hmm", UNSURE, bot_streak=0)
    assert d == Handoff(HandoffReason.LOW_CONFIDENCE, "general", "reset_password", 0.3)
    custom = HandoffPolicy(default_skill="frontdesk")
    assert custom.decide("hmm", UNSURE, bot_streak=0).skill == "frontdesk"


def test_confident_without_a_skill_uses_the_default_skill() -> None:
    d = policy.decide("agent", Pred(skill=None), bot_streak=0)
    assert d.skill == "general"


def test_confident_without_an_answer_hands_off() -> None:
    d = policy.decide("q", Pred(answer=None), bot_streak=0)
    assert d == Handoff(HandoffReason.LOW_CONFIDENCE, "account", "reset_password", 0.9)


def test_out_of_scope_hands_off_even_with_high_confidence() -> None:
    d = policy.decide("what's the weather", Pred(out_of_scope=True, confidence=0.99), bot_streak=0)
    assert d == Handoff(HandoffReason.LOW_CONFIDENCE, "general", "reset_password", 0.99)


def test_vip_to_human_only_when_enabled() -> None:
    assert isinstance(policy.decide("q", CONFIDENT, bot_streak=0, vip=True), Answer)
    vip_policy = HandoffPolicy(vip_to_human=True)
    d = vip_policy.decide("q", CONFIDENT, bot_streak=0, vip=True)
    assert d == Handoff(HandoffReason.VIP, "account", "reset_password", 0.9)
    assert isinstance(vip_policy.decide("q", CONFIDENT, bot_streak=0, vip=False), Answer)
    # The customer's own ask is still the reason recorded.
    assert vip_policy.decide("human", CONFIDENT, bot_streak=0, vip=True).reason is HandoffReason.CUSTOMER_ASKED
    # VIP outranks the intent's own need for a person.
    assert vip_policy.decide("q", Pred(needs_human=True), bot_streak=0, vip=True).reason is HandoffReason.VIP


def test_custom_phrases_replace_the_defaults() -> None:
    p = HandoffPolicy(human_phrases=["supervisor", "客服"])
    assert p.asks_for_person("get me a supervisor")
    assert p.asks_for_person("找客服")
    assert not p.asks_for_person("I want an agent")
    none = HandoffPolicy(human_phrases=[])
    assert not none.asks_for_person("agent human 人工")
    assert isinstance(none.decide("agent", CONFIDENT, bot_streak=0), Answer)


def test_phrases_are_matched_literally_not_as_regex() -> None:
    p = HandoffPolicy(human_phrases=["a.b"])
    assert p.asks_for_person("say a.b now")
    assert not p.asks_for_person("say axb now")


@pytest.mark.parametrize("text", ["你们的人工智能能做什么", "维修的人工费是多少"])
def test_chinese_words_containing_rengong_do_not_trigger(text: str) -> None:
    assert not policy.asks_for_person(text)

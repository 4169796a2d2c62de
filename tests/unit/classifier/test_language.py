"""Which language a message is written in, and which answer it gets."""

from __future__ import annotations

import pytest

from classifier.language import InvalidLanguage, choose_language, detect_language, language_tag, locale_language


@pytest.mark.parametrize("text, language", [
    ("发货需要多长时间？", "zh"),
    ("能用PayPal支付吗", "zh"),  # a product name inside Chinese is still Chinese
    ("我的订单 #A-1234 到哪了", "zh"),
    ("配送には何日かかりますか", "ja"),
    ("배송은 얼마나 걸리나요?", "ko"),
    ("Сколько времени занимает доставка?", "ru"),
    ("How long does shipping take?", "en"),
    ("where is my order", "en"),
    ("Wie lange dauert der Versand für meine Bestellung?", "de"),
    ("Combien de temps prend la livraison pour ma commande ?", "fr"),
    ("¿Cuánto tarda el envío de mi pedido?", "es"),
])
def test_detects_the_language_a_message_is_written_in(text, language):
    assert detect_language(text) == language


@pytest.mark.parametrize("text", [
    "",
    "12345 !!!",
    "ok",  # too short to tell
    "PayPal",
])
def test_says_nothing_when_it_cannot_tell(text):
    assert detect_language(text) is None


def test_mostly_english_with_a_chinese_word_is_not_chinese():
    assert detect_language("my order 订单 is late, where is it?") == "en"


@pytest.mark.parametrize("tag, primary", [("en", "en"), ("ZH", "zh"), (" yue ", "yue")])
def test_language_tags_are_primary_subtags(tag, primary):
    assert language_tag(tag) == primary


@pytest.mark.parametrize("tag, hint", [
    ("zh-CN", "use 'zh'"), ("en_US", "use 'en'"), ("e", None), ("english", None), ("", None), ("1", None),
])
def test_other_language_tags_are_refused(tag, hint):
    with pytest.raises(InvalidLanguage) as info:
        language_tag(tag)
    assert "BCP 47 primary language subtag" in str(info.value)
    if hint:
        assert hint in str(info.value)


@pytest.mark.parametrize("locale, language", [
    ("zh-CN", "zh"), ("zh_Hant_TW", "zh"), ("en-US", "en"), ("pt_BR.UTF-8", "pt"), ("de", "de"),
    ("C", None), ("*", None), ("", None), (None, None),
])
def test_locale_language(locale, language):
    assert locale_language(locale) == language


ANSWERS = {"en": "Two to four days.", "zh": "两到四天。"}


def test_the_text_chooses_when_the_channel_gives_no_locale():
    assert choose_language(ANSWERS, "en", locale=None, text="发货需要多长时间？") == "zh"
    assert choose_language(ANSWERS, "en", locale=None, text="How long does shipping take?") == "en"


def test_a_locale_overrides_the_text():
    assert choose_language(ANSWERS, "en", locale="zh-CN", text="How long does shipping take?") == "zh"
    assert choose_language(ANSWERS, "en", locale="en-GB", text="发货需要多长时间？") == "en"


def test_falls_back_to_the_text_then_the_default_language():
    # No French answer: the text is Chinese, so Chinese rather than the default.
    assert choose_language(ANSWERS, "en", locale="fr-FR", text="发货需要多长时间？") == "zh"
    # Neither the locale's nor the text's language has an answer.
    assert choose_language(ANSWERS, "en", locale="fr-FR", text="Combien de temps prend la livraison ?") == "en"
    assert choose_language(ANSWERS, "zh", locale=None, text="ok") == "zh"


def test_one_answer_is_the_answer_whatever_the_language():
    assert choose_language({"en": "x"}, "en", locale="zh-CN", text="发货需要多长时间？") == "en"

"""Answers per language in the knowledge base, and the model choosing one."""

from __future__ import annotations

import pytest

from classifier.knowledge_base import load_knowledge_base
from tierdesk.errors import InvalidInput, KnowledgeBaseError

TWO_LANGUAGES = """
intents:
  - id: shipping
    answer:
      en: Two to four days.
      zh: 两到四天。
    examples: [how long is delivery, when will it arrive, 发货要多久]
  - id: hours
    answer: Monday to Friday.
    examples: [opening hours, when are you open, 几点上班]
  - id: person
    needs_human: true
    examples: [talk to a human, an agent please, 转人工]
"""


def _error(write_kb, body: str, name: str = "kb.yaml") -> KnowledgeBaseError:
    path = write_kb(body, name)
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(path)
    assert info.value.file == str(path)
    return info.value


def test_an_answer_per_language_and_a_plain_string_is_the_default_language(write_kb):
    kb = load_knowledge_base(write_kb(TWO_LANGUAGES))
    assert kb.default_language == "en"
    shipping = kb.get("shipping")
    assert shipping.answer == "Two to four days."
    assert shipping.answers(kb.default_language) == {"en": "Two to four days.", "zh": "两到四天。"}
    assert kb.get("hours").answers(kb.default_language) == {"en": "Monday to Friday."}
    assert kb.get("person").answers(kb.default_language) == {}


def test_default_language_names_what_a_plain_string_is_in(write_kb):
    kb = load_knowledge_base(write_kb("""
        default_language: zh
        intents:
          - id: hours
            answer: 周一至周五。
            examples: [几点上班, 营业时间, 周末有人吗]
          - id: shipping
            answer: {zh: 两到四天。, en: Two to four days.}
            examples: [发货要多久, 多久能收到货, 快递几天到]
    """))
    assert kb.default_language == "zh"
    assert kb.get("hours").answers("zh") == {"zh": "周一至周五。"}
    assert kb.get("shipping").answer == "两到四天。"
    assert kb.get("shipping").translations == (("en", "Two to four days."),)


def test_the_default_language_may_be_set_in_another_file_of_the_directory(write_kb, tmp_path):
    kb_dir = tmp_path / "kb"
    write_kb("default_language: zh\n", "a.yaml", kb_dir)
    write_kb("""
        intents:
          - id: hours
            answer: {zh: 周一至周五。}
            examples: [几点上班, 营业时间, 周末有人吗]
    """, "b.yaml", kb_dir)
    assert load_knowledge_base(kb_dir).get("hours").answer == "周一至周五。"


@pytest.mark.parametrize("body, line, fragment", [
    pytest.param("""
        intents:
          - id: a
            answer:
              zh: 两到四天。
            examples: [one, two, three]
        """, 3, "intent 'a' has no answer in the default language 'en' (it has zh", id="no-default-answer"),
    pytest.param("""
        default_language: zh
        intents:
          - id: a
            answer: {en: Two to four days.}
            examples: [one, two, three]
        """, 4, "no answer in the default language 'zh'", id="no-answer-in-declared-default"),
    pytest.param("""
        intents:
          - id: a
            answer:
              en: Two to four days.
              zh-CN: 两到四天。
            examples: [one, two, three]
        """, 5, "'zh-CN' is not a BCP 47 primary language subtag", id="region-subtag"),
    pytest.param("""
        intents:
          - id: a
            answer:
              en: Two to four days.
              ZH: 两到四天。
              zh: 两到四天
            examples: [one, two, three]
        """, 6, "two answers in 'zh'", id="same-language-twice"),
    pytest.param("""
        intents:
          - id: a
            answer:
              en: Two to four days.
              zh: "  "
            examples: [one, two, three]
        """, 5, "the answer in 'zh' must be a non-empty string", id="blank-translation"),
    pytest.param("""
        intents:
          - id: a
            answer:
              en: [Two, four]
            examples: [one, two, three]
        """, 4, "expected a single value", id="list-as-answer"),
    pytest.param("""
        intents:
          - id: a
            answer:
              en: Two to four days.
              no: To til fire dager.
            examples: [one, two, three]
        """, 5, "write the language in quotes", id="yaml-boolean-language"),
    pytest.param("""
        intents:
          - id: a
            answer: 42
            examples: [one, two, three]
        """, 3, "answer must be a string or a mapping of language to string", id="number"),
    pytest.param("""
        intents:
          - id: a
            needs_human: true
            answer: {en: Someone will help., zh: 有人会帮您。}
            examples: [one, two, three]
        """, 4, "only FAQ intents have answers", id="answers-on-needs-human"),
    pytest.param("""
        default_language: Chinese
        intents:
          - id: a
            answer: A
            examples: [one, two, three]
        """, 1, "default_language: 'Chinese' is not a BCP 47", id="bad-default-language"),
    pytest.param("""
        intents:
          - id: a
            answer: {}
            examples: [one, two, three]
        """, 3, "is an FAQ intent but has no answer", id="empty-mapping"),
])
def test_rejects_with_file_and_line(write_kb, body, line, fragment):
    err = _error(write_kb, body)
    assert err.line == line, str(err)
    assert fragment in str(err)


def test_conflicting_default_languages_across_files(write_kb, tmp_path):
    kb_dir = tmp_path / "kb"
    write_kb("default_language: en\n", "a.yaml", kb_dir)
    write_kb("""
        default_language: zh
        intents:
          - id: a
            answer: A
            examples: [one, two, three]
    """, "b.yaml", kb_dir)
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(kb_dir)
    assert "default_language 'zh' conflicts with 'en'" in str(info.value)
    assert info.value.line == 1


def test_answer_edits_name_their_language(write_kb):
    kb = load_knowledge_base(write_kb(TWO_LANGUAGES))
    edited = kb.with_answer("shipping", "二到四个工作日。", "zh")
    assert edited.get("shipping").answers("en") == {"en": "Two to four days.", "zh": "二到四个工作日。"}
    added = kb.with_answer("hours", "Du lundi au vendredi.", "FR")
    assert added.get("hours").answers("en") == {"en": "Monday to Friday.", "fr": "Du lundi au vendredi."}
    default = kb.with_answer("shipping", "Two to five days.")
    assert default.get("shipping").answers("en") == {"en": "Two to five days.", "zh": "两到四天。"}
    assert added.default_language == edited.default_language == "en"
    # Answers are read at prediction time: no edit asks for a retrained model.
    assert edited.content_hash() == added.content_hash() == kb.content_hash()
    with pytest.raises(InvalidInput, match="not a BCP 47 primary language subtag"):
        kb.with_answer("shipping", "两到四天", "zh-CN")
    with pytest.raises(InvalidInput):
        kb.with_answer("person", "有人会帮您。", "zh")


def test_the_demo_model_answers_in_the_customers_language(trained_demo_model):
    zh = trained_demo_model.predict("发货需要多长时间？")
    assert (zh.intent_id, zh.language) == ("shipping_time", "zh")
    assert zh.answer == dict(trained_demo_model.kb.get("shipping_time").translations)["zh"]
    en = trained_demo_model.predict("How long does shipping take?")
    assert (en.intent_id, en.language) == ("shipping_time", "en")
    assert en.answer == trained_demo_model.kb.get("shipping_time").answer
    # The channel's locale wins over the text.
    told = trained_demo_model.predict("How long does shipping take?", "zh-CN")
    assert (told.language, told.answer) == ("zh", zh.answer)
    # Handed to a person: no answer, so no language either.
    person = trained_demo_model.predict("我被扣了两次钱")
    assert person.needs_human and person.answer is None and person.language is None


def test_a_batch_chooses_each_messages_language(trained_demo_model):
    texts = ["发货需要多长时间？", "How long does shipping take?", "How long does shipping take?"]
    got = trained_demo_model.predict_many(texts, [None, None, "zh"])
    assert [p.language for p in got] == ["zh", "en", "zh"]
    with pytest.raises(InvalidInput):
        trained_demo_model.predict_many(texts, [None])

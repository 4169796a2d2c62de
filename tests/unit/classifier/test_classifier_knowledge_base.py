from __future__ import annotations

import pytest

from classifier.knowledge_base import KnowledgeBase, load_knowledge_base
from tierdesk.errors import InvalidInput, KnowledgeBaseError, NotFound


def _error(path) -> KnowledgeBaseError:
    with pytest.raises(KnowledgeBaseError) as info:
        load_knowledge_base(path)
    return info.value


def test_loads_valid_file(write_kb, small_kb_yaml):
    kb = load_knowledge_base(write_kb(small_kb_yaml))
    assert kb.default_skill == "general"
    assert kb.intent_ids == ("greet", "bye", "refund", "oos")
    refund = kb.get("refund")
    assert refund.needs_human and refund.skill == "billing" and refund.answer is None
    assert kb.get("oos").out_of_scope
    assert kb.get("greet").examples[-1] == "你好"
    assert kb.get("missing") is None
    texts, labels = kb.training_data()
    assert len(texts) == len(labels) == 17


@pytest.mark.parametrize(
    "body, line, fragment",
    [
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, three
              - id: b
            """,
            5,
            "while parsing a flow sequence at line 4",
            id="invalid-yaml",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, three]
              - id: a
                answer: B
                examples: [four, five, six]
            """,
            5,
            "duplicate intent id 'a'",
            id="duplicate-id",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: []
            """,
            4,
            "intent 'a' has no examples",
            id="no-examples",
        ),
        pytest.param(
            """
            intents:
              - id: a
                examples: [one, two, three]
            """,
            2,
            "FAQ intent but has no answer",
            id="faq-without-answer",
        ),
        pytest.param(
            """
            intents:
              - id: a
                examples: [one, two, three]
                answer: "   "
            """,
            4,
            "FAQ intent but has no answer",
            id="faq-empty-answer",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, three]
                colour: red
            """,
            5,
            "unknown key 'colour'",
            id="unknown-intent-key",
        ),
        pytest.param(
            """
            default_skill: general
            version: 2
            intents: []
            """,
            2,
            "unknown key 'version'",
            id="unknown-top-key",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: one, two, three
            """,
            4,
            "examples must be a list",
            id="examples-not-list",
        ),
        pytest.param(
            """
            intents:
              - id: a
                needs_human: 3
                examples: [one, two, three]
            """,
            3,
            "needs_human must be true or false",
            id="bool-wrong-type",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                threshold: high
                examples: [one, two, three]
            """,
            4,
            "threshold must be a number",
            id="threshold-wrong-type",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                threshold: 1.5
                examples: [one, two, three]
            """,
            4,
            "outside [0, 1]",
            id="threshold-out-of-range",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, 3]
            """,
            4,
            "each example must be a non-empty string",
            id="example-not-string",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, three]
              - id: b
                answer: B
                examples: [four, ONE, five]
            """,
            7,
            "already listed under intent 'a'",
            id="example-in-two-intents",
        ),
        pytest.param(
            """
            intents:
              - id: a
                needs_human: true
                answer: never shown
                examples: [one, two, three]
            """,
            4,
            "only FAQ intents have answers",
            id="answer-on-handoff-intent",
        ),
        pytest.param(
            """
            intents:
              - id: a
                answer: A
                examples: [one, two, three]
                examples: [four, five, six]
            """,
            5,
            "duplicate key 'examples'",
            id="duplicate-key",
        ),
        pytest.param(
            """
            - id: a
            """,
            1,
            "top level must be a mapping",
            id="top-level-list",
        ),
    ],
)
def test_rejects_with_file_and_line(write_kb, body, line, fragment):
    path = write_kb(body)
    err = _error(path)
    assert err.file == str(path)
    assert err.line == line, str(err)
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}: ")
    assert err.code == "invalid_knowledge_base"


def test_small_intents_and_duplicates_within_an_intent_load_with_warnings(write_kb):
    path = write_kb(
        """
        intents:
          - id: a
            answer: A
            examples:
              - one
              - two
          - id: b
            answer: B
            examples:
              - four
              - Four
              - five
              - six
        """
    )
    kb = load_knowledge_base(path)
    assert kb.get("a").examples == ("one", "two")
    assert kb.get("b").examples == ("four", "five", "six")
    assert len(kb.warnings) == 2
    small, dup = kb.warnings
    assert small.startswith(f"{path}:5: intent 'a' has 2 example(s)") and "global threshold" in small
    assert dup.startswith(f"{path}:11: intent 'b': duplicate example 'Four' (first at {path}:10), dropped")


def test_the_same_sentence_in_two_intents_names_both_places(write_kb, tmp_path):
    first = write_kb(
        """
        intents:
          - id: a
            answer: A
            examples: [one, two, three]
        """,
        name="a.yaml", directory=tmp_path / "kb",
    )
    second = write_kb(
        """
        intents:
          - id: b
            answer: B
            examples:
              - four
              - "  ONE "
        """,
        name="b.yaml", directory=tmp_path / "kb",
    )
    err = _error(tmp_path / "kb")
    assert err.file == str(second) and err.line == 6
    assert f"of intent 'b' is already listed under intent 'a' at {first}:4" in str(err)


def test_directory_of_files_and_cross_file_duplicate(write_kb, tmp_path):
    kb_dir = tmp_path / "kb"
    write_kb(
        """
        default_skill: support
        intents:
          - id: a
            answer: A
            examples: [one, two, three]
        """,
        name="a.yaml",
        directory=kb_dir,
    )
    write_kb(
        """
        intents:
          - id: b
            answer: B
            examples: [four, five, six]
        """,
        name="b.yaml",
        directory=kb_dir,
    )
    kb = load_knowledge_base(kb_dir)
    assert kb.intent_ids == ("a", "b")
    assert kb.default_skill == "support"
    assert [p.rsplit("/", 1)[-1] for p in kb.source_files] == ["a.yaml", "b.yaml"]

    dup = write_kb(
        """
        intents:
          - id: a
            answer: again
            examples: [seven, eight, nine]
        """,
        name="c.yaml",
        directory=kb_dir,
    )
    err = _error(kb_dir)
    assert err.file == str(dup) and err.line == 2
    assert "a.yaml:3" in str(err)


def test_empty_directory_and_missing_path(tmp_path):
    assert "no *.yaml" in str(_error(tmp_path))
    assert "no such file" in str(_error(tmp_path / "nope.yaml"))


def test_content_hash_ignores_answers_but_not_examples(small_kb):
    edited = small_kb.with_answer("greet", "Hi, how can I help?")
    assert edited.get("greet").answer == "Hi, how can I help?"
    assert small_kb.get("greet").answer == "Hello!"  # original untouched
    assert edited.content_hash() == small_kb.content_hash()

    from dataclasses import replace

    greet = small_kb.get("greet")
    more = replace(greet, examples=greet.examples + ("howdy",))
    changed = KnowledgeBase(
        tuple(more if i.id == "greet" else i for i in small_kb.intents), small_kb.default_skill
    )
    assert changed.content_hash() != small_kb.content_hash()
    flag = replace(small_kb.get("bye"), needs_human=True, answer=None)
    flagged = KnowledgeBase(tuple(flag if i.id == "bye" else i for i in small_kb.intents))
    assert flagged.content_hash() != small_kb.content_hash()


def test_with_answer_refusals(small_kb):
    with pytest.raises(NotFound):
        small_kb.with_answer("nope", "x")
    with pytest.raises(InvalidInput):
        small_kb.with_answer("refund", "we never answer this")
    with pytest.raises(InvalidInput):
        small_kb.with_answer("greet", "  ")


def test_demo_knowledge_base_shape(demo_kb):
    faq = [i for i in demo_kb.intents if i.is_faq]
    human = [i for i in demo_kb.intents if i.needs_human]
    oos = [i for i in demo_kb.intents if i.out_of_scope]
    assert len(faq) >= 15 and len(human) >= 4 and len(oos) == 1
    assert {i.skill for i in human} >= {"billing", "tech"}
    assert demo_kb.default_skill == "general"
    assert demo_kb.default_language == "en"
    for intent in demo_kb.intents:
        # Enough Chinese to recognise a Chinese question without guessing.
        chinese = [e for e in intent.examples if any("\u4e00" <= ch <= "\u9fff" for ch in e)]
        assert len(chinese) >= 6, intent.id
        assert len(intent.examples) - len(chinese) >= 8, intent.id
    for intent in faq:
        assert set(intent.answers("en")) == {"en", "zh"}, intent.id
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in intent.answer), intent.id
        assert any("\u4e00" <= ch <= "\u9fff" for ch in dict(intent.translations)["zh"]), intent.id
    assert len(oos[0].examples) >= 20

"""Knowledge base: the intents, their training examples and their answers.

Loaded from one YAML file or a directory of ``*.yaml`` files (format in
docs/classifier.md). Validation works on the YAML node tree rather than on
plain Python values so that every error can name the file and line an editor
has to fix.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from router.errors import InvalidInput, NotFound

from .errors import KnowledgeBaseError
from .language import InvalidLanguage, language_tag
from .text import normalize

# Fewer examples than this are accepted with a warning: such an intent gets
# the global threshold and is flagged in the training report.
MIN_EXAMPLES = 3
DEFAULT_SKILL = "general"
DEFAULT_LANGUAGE = "en"

_TOP_KEYS = {"default_skill", "default_language", "intents"}
_INTENT_KEYS = {"id", "examples", "answer", "skill", "needs_human", "out_of_scope", "threshold", "weight"}
MAX_WEIGHT = 10


@dataclass(frozen=True)
class Intent:
    id: str
    examples: tuple[str, ...]
    answer: str | None = None
    skill: str | None = None
    needs_human: bool = False
    out_of_scope: bool = False
    threshold: float | None = None
    # How much of an agent's capacity a handoff of this intent takes.
    weight: int = 1
    # Answers in languages other than the knowledge base's default (which is
    # ``answer``'s), as sorted (language, text) pairs.
    translations: tuple[tuple[str, str], ...] = ()

    @property
    def is_faq(self) -> bool:
        return not (self.needs_human or self.out_of_scope)

    def answers(self, default_language: str) -> dict[str, str]:
        """Every answer by language, the default language's included."""
        out = dict(self.translations)
        if self.answer is not None:
            out[default_language] = self.answer
        return out


@dataclass(frozen=True)
class KnowledgeBase:
    intents: tuple[Intent, ...]
    default_skill: str = DEFAULT_SKILL
    source_files: tuple[str, ...] = ()
    default_language: str = DEFAULT_LANGUAGE
    # What loading accepted but an editor should fix (file:line: ...).
    warnings: tuple[str, ...] = field(default=(), compare=False)
    _by_id: dict[str, Intent] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "intents", tuple(self.intents))
        object.__setattr__(self, "source_files", tuple(self.source_files))
        by_id: dict[str, Intent] = {}
        for intent in self.intents:
            if intent.id in by_id:
                raise KnowledgeBaseError(f"duplicate intent id {intent.id!r}")
            by_id[intent.id] = intent
        object.__setattr__(self, "_by_id", by_id)

    def get(self, intent_id: str) -> Intent | None:
        return self._by_id.get(intent_id)

    def __contains__(self, intent_id: object) -> bool:
        return intent_id in self._by_id

    @property
    def intent_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self.intents)

    def training_data(self) -> tuple[list[str], list[str]]:
        texts: list[str] = []
        labels: list[str] = []
        for intent in self.intents:
            texts.extend(intent.examples)
            labels.extend([intent.id] * len(intent.examples))
        return texts, labels

    def content_hash(self) -> str:
        """Hash of what a trained model depends on.

        Answers, skills, per-intent threshold overrides and the default skill
        are left out on purpose: they are read from the knowledge base at
        prediction time, so editing them must not invalidate a model.
        """
        canonical = [
            {
                "id": i.id,
                "examples": list(i.examples),
                "needs_human": i.needs_human,
                "out_of_scope": i.out_of_scope,
            }
            for i in sorted(self.intents, key=lambda i: i.id)
        ]
        blob = json.dumps(canonical, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def answer_language(self, tag: str | None) -> str:
        """``tag`` checked as the language of an answer; None means the
        default language."""
        if tag is None:
            return self.default_language
        try:
            return language_tag(tag)
        except InvalidLanguage as exc:
            raise InvalidInput(str(exc)) from None

    def with_answer(self, intent_id: str, text: str, language: str | None = None) -> "KnowledgeBase":
        """The answer of ``intent_id`` in ``language`` (the default language
        when None) replaced or, for a language it had none in, added."""
        intent = self.get(intent_id)
        if intent is None:
            raise NotFound(f"unknown intent {intent_id!r}")
        if not intent.is_faq:
            raise InvalidInput(f"intent {intent_id!r} is not an FAQ intent; it has no answer")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("an FAQ answer must be a non-empty string")
        language = self.answer_language(language)
        if language == self.default_language:
            new = replace(intent, answer=text)
        else:
            new = replace(intent, translations=tuple(sorted({**dict(intent.translations), language: text}.items())))
        intents = tuple(new if i.id == intent_id else i for i in self.intents)
        return KnowledgeBase(intents, self.default_skill, self.source_files, self.default_language, self.warnings)


def load_knowledge_base(path: str | Path) -> KnowledgeBase:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise KnowledgeBaseError("directory contains no *.yaml files", file=str(path))
    elif path.is_file():
        files = [path]
    else:
        raise KnowledgeBaseError("no such file or directory", file=str(path))

    intents: list[Intent] = []
    warnings: list[str] = []
    seen_ids: dict[str, str] = {}
    seen_examples: dict[str, tuple[str, str]] = {}
    default_skill: tuple[str, str] | None = None
    default_language: tuple[str, str] | None = None
    answers: dict[str, tuple[dict[str | None, str], str]] = {}
    for file in files:
        parsed = _FileParser(str(file)).parse()
        if parsed.default_language is not None:
            language, where = parsed.default_language
            if default_language is not None and default_language[0] != language:
                raise _error_at(
                    where,
                    f"default_language {language!r} conflicts with {default_language[0]!r} set at "
                    f"{default_language[1]}",
                )
            default_language = (language, where)
        answers.update(parsed.answers)
        warnings.extend(parsed.warnings)
        if parsed.default_skill is not None:
            skill, where = parsed.default_skill
            if default_skill is not None and default_skill[0] != skill:
                raise _error_at(
                    where,
                    f"default_skill {skill!r} conflicts with {default_skill[0]!r} set at "
                    f"{default_skill[1]}",
                )
            default_skill = (skill, where)
        for intent, where, example_marks in parsed.intents:
            if intent.id in seen_ids:
                raise _error_at(
                    where, f"duplicate intent id {intent.id!r} (first defined at {seen_ids[intent.id]})"
                )
            seen_ids[intent.id] = where
            for example, ex_where in zip(intent.examples, example_marks):
                key = normalize(example)
                if key in seen_examples:
                    other_id, other_where = seen_examples[key]
                    raise _error_at(
                        ex_where,
                        f"example {example!r} of intent {intent.id!r} is already listed under "
                        f"intent {other_id!r} at {other_where}",
                    )
                seen_examples[key] = (intent.id, ex_where)
            intents.append(intent)
    if not intents:
        raise KnowledgeBaseError("knowledge base defines no intents", file=str(path))
    language = default_language[0] if default_language else DEFAULT_LANGUAGE
    return KnowledgeBase(
        tuple(_in_languages(i, answers.get(i.id), language) for i in intents),
        default_skill[0] if default_skill else DEFAULT_SKILL,
        tuple(str(f) for f in files),
        language,
        tuple(warnings),
    )


def _error_at(where: str, message: str) -> KnowledgeBaseError:
    file, _, line = where.rpartition(":")
    return KnowledgeBaseError(message, file=file, line=int(line))


@dataclass
class _ParsedFile:
    default_skill: tuple[str, str] | None
    intents: list[tuple[Intent, str, list[str]]]
    default_language: tuple[str, str] | None = None
    answers: dict[str, tuple[dict[str | None, str], str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _in_languages(intent: Intent, written: tuple[dict[str | None, str], str] | None, default: str) -> Intent:
    """``intent`` with its answers sorted into the default language's and the
    others, once the default language is known."""
    if written is None:
        return intent
    texts, where = written
    by_language = {default if language is None else language: text for language, text in texts.items()}
    if default not in by_language:
        raise _error_at(
            where,
            f"intent {intent.id!r} has no answer in the default language {default!r} "
            f"(it has {', '.join(sorted(by_language))}; set default_language or add one)",
        )
    answer = by_language.pop(default)
    return replace(intent, answer=answer, translations=tuple(sorted(by_language.items())))


class _FileParser:
    def __init__(self, file: str) -> None:
        self.file = file
        self._constructor = SafeConstructor()
        # Answers by intent as written, with where: see _in_languages.
        self.languages: dict[str, tuple[dict[str | None, str], str]] = {}
        self.warnings: list[str] = []

    def error(self, node: Node | None, message: str) -> KnowledgeBaseError:
        line = node.start_mark.line + 1 if node is not None else None
        return KnowledgeBaseError(message, file=self.file, line=line)

    def where(self, node: Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def parse(self) -> _ParsedFile:
        try:
            with open(self.file, encoding="utf-8") as fh:
                root = yaml.compose(fh, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            message = f"invalid YAML: {exc.problem or exc.context}"
            if exc.context and exc.context_mark is not None and exc.problem:
                # The parser notices a problem where it gives up, often a line
                # after the real mistake; name where the construct began too.
                message += f" ({exc.context} at line {exc.context_mark.line + 1})"
            raise KnowledgeBaseError(message, file=self.file, line=line) from exc
        except yaml.YAMLError as exc:
            raise KnowledgeBaseError(f"invalid YAML: {exc}", file=self.file) from exc
        except UnicodeDecodeError as exc:
            raise KnowledgeBaseError(f"not UTF-8 text: {exc}", file=self.file) from exc
        except OSError as exc:
            raise KnowledgeBaseError(f"cannot read: {exc.strerror}", file=self.file) from exc
        if root is None:
            raise KnowledgeBaseError("file is empty", file=self.file, line=1)
        top = self.mapping(root, "the top level", _TOP_KEYS)
        default_skill = None
        if "default_skill" in top:
            node = top["default_skill"][1]
            default_skill = (self.string(node, "default_skill"), self.where(node))
        default_language = None
        if "default_language" in top:
            node = top["default_language"][1]
            try:
                default_language = (language_tag(self.string(node, "default_language")), self.where(node))
            except InvalidLanguage as exc:
                raise self.error(node, f"default_language: {exc}") from None
        intents: list[tuple[Intent, str, list[str]]] = []
        if "intents" in top:
            seq = top["intents"][1]
            if not isinstance(seq, SequenceNode):
                raise self.error(seq, "intents must be a list")
            intents = [self.intent(item) for item in seq.value]
        return _ParsedFile(default_skill, intents, default_language, self.languages, self.warnings)

    def mapping(self, node: Node, what: str, allowed: set[str]) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        out: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if not isinstance(key, str):
                raise self.error(key_node, f"keys in {what} must be strings")
            if key not in allowed:
                raise self.error(
                    key_node,
                    f"unknown key {key!r} in {what} (allowed: {', '.join(sorted(allowed))})",
                )
            if key in out:
                raise self.error(key_node, f"duplicate key {key!r} in {what}")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: Node) -> Any:
        if not isinstance(node, ScalarNode):
            raise self.error(node, "expected a single value, not a list or mapping")
        try:
            return self._constructor.construct_object(node, deep=True)
        except ConstructorError as exc:
            raise self.error(node, f"invalid value: {exc.problem}") from exc

    def string(self, node: Node, what: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, f"{what} must be a non-empty string")
        return value.strip()

    def boolean(self, node: Node, what: str) -> bool:
        value = self.scalar(node)
        if not isinstance(value, bool):
            raise self.error(node, f"{what} must be true or false")
        return value

    def answers(self, node: Node, what: str) -> dict[str | None, str]:
        """A plain string (key None: the default language, known only once
        every file is read) or a mapping of language to string."""
        if not isinstance(node, MappingNode):
            value = self.scalar(node)
            if value is not None and not isinstance(value, str):
                raise self.error(node, f"{what}: answer must be a string or a mapping of language to string")
            return {None: value.strip()} if isinstance(value, str) and value.strip() else {}
        out: dict[str | None, str] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if isinstance(key, bool):  # YAML reads a bare no/yes/on/off as true or false
                raise self.error(key_node, f"{what}: write the language in quotes (YAML read it as {key})")
            try:
                language = language_tag(key)
            except InvalidLanguage as exc:
                raise self.error(key_node, f"{what}: {exc}") from None
            if language in out:
                raise self.error(key_node, f"{what}: two answers in {language!r}")
            out[language] = self.string(value_node, f"{what}: the answer in {language!r}")
        return out

    def intent(self, node: Node) -> tuple[Intent, str, list[str]]:
        fields = self.mapping(node, "an intent", _INTENT_KEYS)
        if "id" not in fields:
            raise self.error(node, "intent has no id")
        intent_id = self.string(fields["id"][1], "id")
        what = f"intent {intent_id!r}"

        needs_human = (
            self.boolean(fields["needs_human"][1], "needs_human") if "needs_human" in fields else False
        )
        out_of_scope = (
            self.boolean(fields["out_of_scope"][1], "out_of_scope")
            if "out_of_scope" in fields
            else False
        )
        if needs_human and out_of_scope:
            raise self.error(node, f"{what}: needs_human and out_of_scope exclude each other")

        if "examples" not in fields:
            raise self.error(node, f"{what} has no examples")
        ex_node = fields["examples"][1]
        if not isinstance(ex_node, SequenceNode):
            raise self.error(ex_node, f"{what}: examples must be a list of strings")
        examples: list[str] = []
        marks: list[str] = []
        seen: dict[str, str] = {}
        for item in ex_node.value:
            text = self.string(item, f"{what}: each example")
            key = normalize(text)
            if key in seen:
                self.warnings.append(f"{self.where(item)}: {what}: duplicate example {text!r} "
                                     f"(first at {seen[key]}), dropped")
                continue
            seen[key] = self.where(item)
            examples.append(text)
            marks.append(self.where(item))
        if not examples:
            raise self.error(ex_node, f"{what} has no examples")
        if len(examples) < MIN_EXAMPLES:
            self.warnings.append(
                f"{self.where(ex_node)}: {what} has {len(examples)} example(s); with fewer than "
                f"{MIN_EXAMPLES} it uses the global threshold and its held-out figures mean little"
            )

        answers: dict[str | None, str] = {}
        if "answer" in fields:
            answer_node = fields["answer"][1]
            answers = self.answers(answer_node, what)
            if answers and (needs_human or out_of_scope):
                raise self.error(
                    answer_node,
                    f"{what}: only FAQ intents have answers (this one is "
                    f"{'needs_human' if needs_human else 'out_of_scope'})",
                )
            if answers:
                self.languages[intent_id] = (answers, self.where(fields["answer"][0]))
        if not (needs_human or out_of_scope) and not answers:
            where = fields["answer"][1] if "answer" in fields else node
            raise self.error(where, f"{what} is an FAQ intent but has no answer")
        answer = answers.get(None)

        skill = self.string(fields["skill"][1], f"{what}: skill") if "skill" in fields else None
        if skill is not None and out_of_scope:
            raise self.error(
                fields["skill"][0], f"{what}: out_of_scope intents go to the default skill"
            )

        threshold = None
        if "threshold" in fields:
            t_node = fields["threshold"][1]
            value = self.scalar(t_node)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(t_node, f"{what}: threshold must be a number")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise self.error(t_node, f"{what}: threshold {value} is outside [0, 1]")
            threshold = float(value)

        weight = 1
        if "weight" in fields:
            w_node = fields["weight"][1]
            value = self.scalar(w_node)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WEIGHT:
                raise self.error(w_node, f"{what}: weight must be a whole number from 1 to {MAX_WEIGHT}")
            weight = value

        intent = Intent(
            id=intent_id,
            examples=tuple(examples),
            answer=answer,
            skill=skill,
            needs_human=needs_human,
            out_of_scope=out_of_scope,
            threshold=threshold,
            weight=weight,
        )
        return intent, self.where(fields["id"][1]), marks

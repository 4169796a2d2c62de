"""Request bodies, validated by msgspec: unknown fields are rejected, types
are strict, and every failure names the field at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

import msgspec
from yarl import URL

from tierdesk.errors import InvalidInput

# One rule for every text field, whichever database is behind: no NUL
# (U+0000). PostgreSQL cannot store it in text or JSON, and no channel
# sends it on purpose; refusing it at the edge keeps the databases alike.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, msgspec.Meta(pattern=NO_NUL)]
# The customer's language as a channel knows it: a BCP 47 tag ("zh-CN") or a
# POSIX locale ("zh_CN"); its first part chooses the answer's language.
Locale = Annotated[str, msgspec.Meta(min_length=1, max_length=35, pattern=r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$")]
Skill = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]


def _whole(value: float | None, name: str) -> int | None:
    # JSON has one number type: 3 and 3.0 are the same integer (as JSON
    # Schema says); 3.5 is not one.
    if value is None:
        return None
    if not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number")
    return int(value)


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True):
    id: Id
    name: Name | None = None
    vip: bool | str = False

    @property
    def is_vip(self) -> bool:
        # Channels send either a flag or a tier name ("gold"); any tier but
        # the regular ones counts as VIP.
        if isinstance(self.vip, bool):
            return self.vip
        return self.vip.strip().lower() not in ("", "none", "regular", "standard", "false", "0")


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    message_id: Id
    conversation_id: Id
    customer: CustomerIn
    text: Text
    sent_at: str | float | None = None
    locale: Locale | None = None


Comment = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=NO_NUL)]


class FeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[float, msgspec.Meta(ge=1, le=5)] | None = None
    resolved: bool = False
    # What the customer wrote with their rating (kept with it in the event log).
    comment: Comment | None = None

    def __post_init__(self) -> None:
        self.rating = _whole(self.rating, "rating")


Level = Annotated[int, msgspec.Meta(ge=1, le=5)]
Levels = Annotated[dict[Skill, Level], msgspec.Meta(max_length=50)]


def _levels_of_skills(levels: dict[str, int] | None, skills: list[str] | None) -> None:
    if levels and skills is not None and set(levels) - set(skills):
        raise ValueError(f"levels name skills the agent does not hold: {sorted(set(levels) - set(skills))}")


class AgentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    skills: Annotated[list[Skill], msgspec.Meta(max_length=50)]
    capacity: Annotated[float, msgspec.Meta(ge=1, le=1000)]
    status: Literal["online", "away", "offline"] = "offline"
    levels: Levels | None = None

    def __post_init__(self) -> None:
        self.capacity = _whole(self.capacity, "capacity")
        _levels_of_skills(self.levels, self.skills)


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    skills: Annotated[list[Skill], msgspec.Meta(max_length=50)] | None = None
    capacity: Annotated[float, msgspec.Meta(ge=1, le=1000)] | None = None
    status: Literal["online", "away", "offline"] | None = None
    levels: Levels | None = None

    def __post_init__(self) -> None:
        self.capacity = _whole(self.capacity, "capacity")
        _levels_of_skills(self.levels, self.skills)


class StatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["online", "away", "offline"]


WebhookUrl = Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^https?://")]


def _check_webhook_url(url: str | None) -> None:
    if url is None:
        return
    try:
        parsed = URL(url)
    except ValueError:
        raise ValueError("webhook_url is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host or any(c.isspace() for c in url):
        raise ValueError("webhook_url must be an http(s) URL with a host")


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    webhook_url: WebhookUrl | None = None
    require_signature: bool = False
    kind: Literal["webhook", "widget", "matrix"] = "webhook"
    notices: bool = False

    def __post_init__(self) -> None:
        _check_webhook_url(self.webhook_url)


# The longest a rotated-out webhook secret may stay good: 30 days.
MAX_SECRET_OVERLAP_SECONDS = 30 * 86400


class ChannelPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    webhook_url: WebhookUrl | None | msgspec.UnsetType = msgspec.UNSET
    require_signature: bool | msgspec.UnsetType = msgspec.UNSET
    notices: bool | msgspec.UnsetType = msgspec.UNSET
    rotate_webhook_secret: bool = False
    # How long the old secret still verifies inbound requests (and signs
    # outbound ones beside the new) after a rotation; 0 ends it at once.
    secret_overlap_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_SECRET_OVERLAP_SECONDS)] = 86400.0

    def __post_init__(self) -> None:
        if isinstance(self.webhook_url, str):
            _check_webhook_url(self.webhook_url)


class ReplyIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


class TypingIn(msgspec.Struct, forbid_unknown_fields=True):
    typing: bool = True


class TransferIn(msgspec.Struct, forbid_unknown_fields=True):
    skill: Skill | None = None
    agent_id: Id | None = None


Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$")]
# Long enough to resist guessing; the ceiling keeps hashing cheap to refuse.
Password = Annotated[str, msgspec.Meta(min_length=10, max_length=200, pattern=NO_NUL)]


class PersonIn(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    name: Name
    role: Literal["agent", "supervisor", "admin"]
    password: Password
    agent_id: Id | None = None


class PersonPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    password: Password | None = None
    disabled: bool | None = None


T = TypeVar("T")
# No request body of this API nests more than a few levels; msgspec gives up
# far deeper than that, with a RecursionError.
TOO_DEEP = "malformed JSON: nested too deeply"


def _readable(message: str) -> str:
    return message.replace(f"matching regex {NO_NUL!r}", "without NUL characters (U+0000)")


def refuse_nul(params: Mapping[str, str], where: str) -> None:
    """Path and query parameters follow the same rule as body text."""
    for name, value in params.items():
        if "\x00" in value or "\x00" in name:
            raise InvalidInput(f"{where} parameter {name!r} must not contain NUL characters (U+0000)",
                               code="validation_failed")


def decode(body: bytes, kind: type[T]) -> T:
    if not body:
        raise InvalidInput("request body is empty; send a JSON object", code="invalid_json")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        # msgspec validates while it parses: make sure the body is JSON at
        # all before calling it a validation problem.
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as bad:
            raise InvalidInput(f"malformed JSON: {bad}", code="invalid_json") from None
        except RecursionError:
            raise InvalidInput(TOO_DEEP, code="invalid_json") from None
        raise InvalidInput(_readable(str(exc)), code="validation_failed") from None
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise InvalidInput(TOO_DEEP, code="invalid_json") from None


class FaqLabelPut(msgspec.Struct, forbid_unknown_fields=True):
    # An FAQ intent's id, or null: the question is no FAQ.
    intent: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_NUL)] | None


class AnswerPatch(msgspec.Struct, forbid_unknown_fields=True):
    answer: Annotated[str, msgspec.Meta(min_length=1, max_length=8000, pattern=NO_NUL)]
    # The answer's language (a BCP 47 primary subtag); the knowledge base's
    # default language when left out.
    language: Annotated[str, msgspec.Meta(min_length=1, max_length=16)] | None = None

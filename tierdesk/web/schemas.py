"""Request bodies, validated by msgspec: unknown fields are rejected, types
are strict, and every failure names the field at fault."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, TypeVar

import msgspec

from tierdesk.errors import InvalidInput

# One rule for every text field, whichever database is behind: no NUL
# (U+0000). PostgreSQL cannot store it in text or JSON, and no channel
# sends it on purpose; refusing it at the edge keeps the databases alike.
NO_NUL = r"^[^\x00]*$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Text = Annotated[str, msgspec.Meta(pattern=NO_NUL)]
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


class FeedbackIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[float, msgspec.Meta(ge=1, le=5)] | None = None
    resolved: bool = False

    def __post_init__(self) -> None:
        self.rating = _whole(self.rating, "rating")


class AgentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    skills: Annotated[list[Skill], msgspec.Meta(max_length=50)]
    capacity: Annotated[float, msgspec.Meta(ge=1, le=1000)]
    status: Literal["online", "away", "offline"] = "offline"

    def __post_init__(self) -> None:
        self.capacity = _whole(self.capacity, "capacity")


class AgentPatch(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    skills: Annotated[list[Skill], msgspec.Meta(max_length=50)] | None = None
    capacity: Annotated[float, msgspec.Meta(ge=1, le=1000)] | None = None
    status: Literal["online", "away", "offline"] | None = None

    def __post_init__(self) -> None:
        self.capacity = _whole(self.capacity, "capacity")


class StatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["online", "away", "offline"]


class ChannelIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    webhook_url: Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^https?://")] | None = None
    require_signature: bool = False


class ReplyIn(msgspec.Struct, forbid_unknown_fields=True):
    text: Text


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


class AnswerPatch(msgspec.Struct, forbid_unknown_fields=True):
    answer: Annotated[str, msgspec.Meta(min_length=1, max_length=8000, pattern=NO_NUL)]

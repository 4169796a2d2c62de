"""Business hours and holidays of a skill: when people work it, in the
skill's own time zone (an IANA name, read through ``zoneinfo``).

A week gives each weekday its opening ranges in local time ("09:00-18:00",
or several: a lunch break); a holiday closes its whole local day. Ranges
are read on each local date, so a daylight-saving change moves them with
the wall clock: 09:00-18:00 is 9 hours of business time on the 23-hour day
as on the 25-hour one, and a range that spans the change (00:00-24:00) is
as long as the day really is.

Plain rules on plain timestamps (seconds since the epoch): is the skill
open at ``t``, when does it next open, and how many business seconds lie
between two instants (what an SLA clock counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead an opening is looked for: past a year of holidays, a skill
# that never opens is said to (None).
LOOK_AHEAD_DAYS = 400

# A range of a day in minutes since local midnight: [start, end), end up to 24:00.
Range = tuple[int, int]


@dataclass(frozen=True, slots=True)
class BusinessHours:
    timezone: str
    # Per weekday (Monday first), its opening ranges, sorted and apart.
    weekly: tuple[tuple[Range, ...], ...]
    holidays: frozenset[date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def _day(self, t: float) -> date:
        return datetime.fromtimestamp(t, self.zone).date()

    def opening_ranges(self, day: date) -> list[tuple[float, float]]:
        """The day's opening ranges as instants, [start, end)."""
        return _ranges(self, day)

    def is_open(self, t: float) -> bool:
        return any(start <= t < end for start, end in self.opening_ranges(self._day(t)))

    def next_opening(self, t: float) -> float | None:
        """``t`` itself if open then, else the next instant it opens (None:
        not within LOOK_AHEAD_DAYS)."""
        day = self._day(t)
        for i in range(LOOK_AHEAD_DAYS):
            for start, end in self.opening_ranges(day + timedelta(days=i)):
                if t < end:
                    return max(start, t)
        return None

    def after(self, a: float, seconds: float) -> float | None:
        """The instant at which ``seconds`` of business time have passed
        since ``a`` (None: not within LOOK_AHEAD_DAYS)."""
        left = seconds
        day = self._day(a)
        for i in range(LOOK_AHEAD_DAYS):
            for start, end in self.opening_ranges(day + timedelta(days=i)):
                lo = max(start, a)
                if end <= lo:
                    continue
                if end - lo >= left:
                    return lo + left
                left -= end - lo
        return None

    def business_seconds(self, a: float, b: float) -> float:
        """Seconds in [a, b) that fall within opening ranges (0 if b <= a)."""
        if b <= a:
            return 0.0
        total = 0.0
        day, last = self._day(a), self._day(b)
        while day <= last:
            for start, end in self.opening_ranges(day):
                lo, hi = max(start, a), min(end, b)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


@lru_cache(maxsize=4096)
def _ranges(hours: BusinessHours, day: date) -> list[tuple[float, float]]:
    if day in hours.holidays:
        return []
    zone = hours.zone
    out = []
    for start, end in hours.weekly[day.weekday()]:
        out.append((_instant(day, start, zone), _instant(day, end, zone)))
    return out


def _instant(day: date, minutes: int, zone: ZoneInfo) -> float:
    """Local wall time on ``day`` as an instant. A time the clocks skip (in
    a spring-forward gap) is read with the offset before the change, which
    lands it as far past the gap as it was into it; a time that happens
    twice (autumn) is its first occurrence."""
    if minutes == 24 * 60:
        day, minutes = day + timedelta(days=1), 0
    local = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=zone)
    return local.astimezone(UTC).timestamp()


class Schedule:
    """The hours of every skill that has some; the others are open 7×24."""

    def __init__(self, by_skill: Mapping[str, BusinessHours] | None = None) -> None:
        self.by_skill: dict[str, BusinessHours] = dict(by_skill or {})

    def __bool__(self) -> bool:
        return bool(self.by_skill)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and other.by_skill == self.by_skill

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.by_skill.items(), key=lambda kv: kv[0])))

    def __repr__(self) -> str:
        return f"Schedule({sorted(self.by_skill)})"

    def is_open(self, skill: str, t: float) -> bool:
        hours = self.by_skill.get(skill)
        return hours is None or hours.is_open(t)

    def next_opening(self, skill: str, t: float) -> float | None:
        hours = self.by_skill.get(skill)
        return t if hours is None else hours.next_opening(t)

    def elapsed(self, skill: str | None, a: float, b: float) -> float:
        """Business seconds of ``skill`` in [a, b): what its SLA clocks count."""
        hours = self.by_skill.get(skill) if skill is not None else None
        return max(0.0, b - a) if hours is None else hours.business_seconds(a, b)

    def after(self, skill: str | None, a: float, seconds: float) -> float | None:
        """When ``seconds`` of ``skill``'s business time will have passed since ``a``."""
        hours = self.by_skill.get(skill) if skill is not None else None
        return a + seconds if hours is None else hours.after(a, seconds)

    def timezone(self, skill: str) -> str | None:
        hours = self.by_skill.get(skill)
        return None if hours is None else hours.timezone


def iso_utc(t: float) -> str:
    """An instant as the API writes times: ISO 8601 in UTC."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------ parsing
class HoursError(ValueError):
    """What is wrong with a skill's hours, in the words of the rules file."""


def _minutes(text: str) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not sep or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise HoursError(f"{text!r} is not a time like 09:00")
    value = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or value > 24 * 60:
        raise HoursError(f"{text!r} is not a time of day (00:00 to 24:00)")
    return value


def parse_range(text: str) -> Range:
    start, sep, end = str(text).partition("-")
    if not sep:
        raise HoursError(f"{text!r} is not a range like 09:00-18:00")
    lo, hi = _minutes(start), _minutes(end)
    if lo >= hi:
        raise HoursError(f"{text!r} must end after it starts (a night shift is two ranges, one each day)")
    return lo, hi


def parse_days(text: str) -> set[int]:
    """"mon-fri", "sat", "mon,wed,fri", "fri-mon" (round the weekend)."""
    days: set[int] = set()
    for part in str(text).lower().split(","):
        first, sep, last = part.strip().partition("-")
        if first not in DAYS or (sep and last not in DAYS):
            raise HoursError(f"{text!r} names days as mon, tue, wed, thu, fri, sat, sun (or a span: mon-fri)")
        i, j = DAYS.index(first), DAYS.index(last) if sep else DAYS.index(first)
        while True:
            days.add(i)
            if i == j:
                break
            i = (i + 1) % 7
    return days


def parse_hours(data: object) -> BusinessHours:
    """``{timezone: Asia/Shanghai, weekly: {mon-fri: "09:00-18:00"},
    holidays: [2026-12-25]}``. No ``weekly``: open all day every day but
    the holidays."""
    if not isinstance(data, dict) or set(data) - {"timezone", "weekly", "holidays"}:
        raise HoursError("takes timezone, weekly and holidays")
    tz = data.get("timezone")
    if not isinstance(tz, str) or not tz:
        raise HoursError("needs a timezone (an IANA name such as Asia/Shanghai or Europe/Berlin)")
    try:
        ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - zoneinfo raises several kinds for a bad name
        raise HoursError(f"timezone {tz!r} is not an IANA time zone name") from None
    weekly_in = data.get("weekly")
    week: list[list[Range]] = [[] for _ in DAYS]
    if weekly_in is None:
        week = [[(0, 24 * 60)] for _ in DAYS]
    elif not isinstance(weekly_in, dict) or not weekly_in:
        raise HoursError("weekly maps days to opening ranges, e.g. {mon-fri: \"09:00-18:00\"}")
    else:
        for days, ranges in weekly_in.items():
            listed = ranges if isinstance(ranges, list) else [ranges]
            for d in parse_days(days):
                week[d] += [parse_range(r) for r in listed]
    for d, ranges in enumerate(week):
        ranges.sort()
        for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
            if start < end:
                raise HoursError(f"the ranges on {DAYS[d]} overlap")
    if not any(week):
        raise HoursError("weekly opens on no day")
    holidays = set()
    for h in data.get("holidays") or []:
        holidays.add(_date(h))
    return BusinessHours(tz, tuple(tuple(r) for r in week), frozenset(holidays))


def _date(value: object) -> date:
    if isinstance(value, datetime):
        raise HoursError(f"holiday {value!r} must be a date like 2026-12-25, not a time")
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise HoursError(f"holiday {value!r} is not a date like 2026-12-25") from None

"""Per-skill routing rules, as a deployment writes them (a YAML file named by
TIERDESK_ROUTING_RULES; docs/routing.md shows one):

    vip_weight: 2                      # a VIP's conversation takes 2 of an agent's capacity
    skills:
      billing:
        fallback:                      # widen to these skills once waited
          - {skill: general, after_seconds: 30}   # wait_credit_seconds: 600 by default
        reservation_timeout_seconds: 30
        alerts: {queue_length: 20, oldest_wait_seconds: 120}
        queue_limit: 30                # more waiting: offered to leave a message
        hours:                         # business hours (router/business_hours.py)
          timezone: Asia/Shanghai
          weekly: {mon-fri: "09:00-18:00", sat: ["10:00-12:00", "13:00-16:00"]}
          holidays: [2026-12-25]

Plain data in, checked rules out; reading the file is the edge's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.errors import InvalidInput

from .alerts import SkillThresholds
from .business_hours import BusinessHours, HoursError, Schedule, parse_hours
from .routing import WAIT_CREDIT_SECONDS, Fallback


@dataclass(frozen=True, slots=True)
class SkillRules:
    fallback: tuple[Fallback, ...] = ()
    reservation_timeout_seconds: float | None = None
    # The SLA monitor raises an alert past these (router/alerts.py).
    alert_queue_length: int | None = None
    alert_oldest_wait_seconds: float | None = None
    # Customers waiting live at most; the next is offered to leave a message.
    queue_limit: int | None = None
    # When people work the skill; None: 7×24.
    hours: BusinessHours | None = None


MAX_WEIGHT = 10


@dataclass(frozen=True, slots=True)
class RoutingRules:
    skills: Mapping[str, SkillRules] = field(default_factory=dict)
    vip_weight: int = 1

    def queue_limits(self) -> dict[str, int]:
        return {s: r.queue_limit for s, r in self.skills.items() if r.queue_limit is not None}

    def fallback(self) -> dict[str, tuple[Fallback, ...]]:
        return {s: r.fallback for s, r in self.skills.items() if r.fallback}

    def alert_thresholds(self) -> dict[str, SkillThresholds]:
        return {s: SkillThresholds(r.alert_queue_length, r.alert_oldest_wait_seconds) for s, r in self.skills.items()
                if r.alert_queue_length is not None or r.alert_oldest_wait_seconds is not None}

    def hours(self) -> Schedule:
        return Schedule({s: r.hours for s, r in self.skills.items() if r.hours is not None})

    def reservation_timeouts(self) -> dict[str, float]:
        return {s: r.reservation_timeout_seconds for s, r in self.skills.items()
                if r.reservation_timeout_seconds is not None}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10**7:
        raise InvalidInput(f"routing rules: {where} must be a number of seconds, 0 or more")
    return float(value)


def _whole(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"routing rules: {where} must be a whole number from {low} to {high}")
    return value


def parse_rules(data: Any) -> RoutingRules:
    if data is None:
        return RoutingRules()
    if not isinstance(data, dict) or set(data) - {"skills", "vip_weight"}:
        raise InvalidInput("routing rules: the top level holds only `skills` and `vip_weight`")
    vip_weight = _whole(data.get("vip_weight", 1), "vip_weight", 1, MAX_WEIGHT)
    skills = data.get("skills") or {}
    if not isinstance(skills, dict):
        raise InvalidInput("routing rules: `skills` maps each skill to its rules")
    parsed: dict[str, SkillRules] = {}
    for skill, rules in skills.items():
        where = f"skills.{skill}"
        rules = rules or {}
        if not isinstance(rules, dict):
            raise InvalidInput(f"routing rules: {where} must be a mapping")
        unknown = set(rules) - {"fallback", "reservation_timeout_seconds", "alerts", "queue_limit", "hours"}
        if unknown:
            raise InvalidInput(f"routing rules: {where} has unknown keys {sorted(unknown)}")
        chain = []
        for i, step in enumerate(rules.get("fallback") or []):
            if not isinstance(step, dict) or not {"skill", "after_seconds"} <= set(step) <= {
                    "skill", "after_seconds", "wait_credit_seconds"} or not isinstance(
                    step["skill"], str) or not step["skill"]:
                raise InvalidInput(f"routing rules: {where}.fallback[{i}] needs `skill` and `after_seconds` "
                                   "(and may have `wait_credit_seconds`)")
            if step["skill"] == skill:
                raise InvalidInput(f"routing rules: {where}.fallback[{i}] falls back to the skill itself")
            credit = step.get("wait_credit_seconds")
            chain.append(Fallback(step["skill"], _number(step["after_seconds"], f"{where}.fallback[{i}]"),
                                  WAIT_CREDIT_SECONDS if credit is None else _number(
                                      credit, f"{where}.fallback[{i}].wait_credit_seconds")))
        if [f.after for f in chain] != sorted(f.after for f in chain):
            raise InvalidInput(f"routing rules: {where}.fallback must widen in order of after_seconds")
        timeout = rules.get("reservation_timeout_seconds")
        alerts = rules.get("alerts") or {}
        if not isinstance(alerts, dict) or set(alerts) - {"queue_length", "oldest_wait_seconds"}:
            raise InvalidInput(f"routing rules: {where}.alerts takes queue_length and oldest_wait_seconds")
        queue_length = alerts.get("queue_length")
        if queue_length is not None and (isinstance(queue_length, bool) or not isinstance(queue_length, int)
                                         or queue_length < 1):
            raise InvalidInput(f"routing rules: {where}.alerts.queue_length must be a whole number, 1 or more")
        oldest = alerts.get("oldest_wait_seconds")
        limit = rules.get("queue_limit")
        hours = None
        if rules.get("hours") is not None:
            try:
                hours = parse_hours(rules["hours"])
            except HoursError as exc:
                raise InvalidInput(f"routing rules: {where}.hours {exc}") from None
        parsed[str(skill)] = SkillRules(
            tuple(chain), None if timeout is None else _number(timeout, f"{where}.reservation_timeout_seconds"),
            queue_length, None if oldest is None else _number(oldest, f"{where}.alerts.oldest_wait_seconds"),
            None if limit is None else _whole(limit, f"{where}.queue_limit", 0, 10**6), hours)
    return RoutingRules(parsed, vip_weight)

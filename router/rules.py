"""Per-skill routing rules, as a deployment writes them (a YAML file named by
TIERDESK_ROUTING_RULES; docs/routing.md shows one):

    skills:
      billing:
        fallback:                      # widen to these skills once waited
          - {skill: general, after_seconds: 30}
        reservation_timeout_seconds: 30

Plain data in, checked rules out; reading the file is the edge's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tierdesk.errors import InvalidInput

from .routing import Fallback


@dataclass(frozen=True, slots=True)
class SkillRules:
    fallback: tuple[Fallback, ...] = ()
    reservation_timeout_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RoutingRules:
    skills: Mapping[str, SkillRules] = field(default_factory=dict)

    def fallback(self) -> dict[str, tuple[Fallback, ...]]:
        return {s: r.fallback for s, r in self.skills.items() if r.fallback}

    def reservation_timeouts(self) -> dict[str, float]:
        return {s: r.reservation_timeout_seconds for s, r in self.skills.items()
                if r.reservation_timeout_seconds is not None}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10**7:
        raise InvalidInput(f"routing rules: {where} must be a number of seconds, 0 or more")
    return float(value)


def parse_rules(data: Any) -> RoutingRules:
    if data is None:
        return RoutingRules()
    if not isinstance(data, dict) or set(data) - {"skills"}:
        raise InvalidInput("routing rules: the top level holds only `skills`")
    skills = data.get("skills") or {}
    if not isinstance(skills, dict):
        raise InvalidInput("routing rules: `skills` maps each skill to its rules")
    parsed: dict[str, SkillRules] = {}
    for skill, rules in skills.items():
        where = f"skills.{skill}"
        rules = rules or {}
        if not isinstance(rules, dict):
            raise InvalidInput(f"routing rules: {where} must be a mapping")
        unknown = set(rules) - {"fallback", "reservation_timeout_seconds"}
        if unknown:
            raise InvalidInput(f"routing rules: {where} has unknown keys {sorted(unknown)}")
        chain = []
        for i, step in enumerate(rules.get("fallback") or []):
            if not isinstance(step, dict) or set(step) != {"skill", "after_seconds"} or not isinstance(
                    step["skill"], str) or not step["skill"]:
                raise InvalidInput(f"routing rules: {where}.fallback[{i}] needs `skill` and `after_seconds`")
            if step["skill"] == skill:
                raise InvalidInput(f"routing rules: {where}.fallback[{i}] falls back to the skill itself")
            chain.append(Fallback(step["skill"], _number(step["after_seconds"], f"{where}.fallback[{i}]")))
        if [f.after for f in chain] != sorted(f.after for f in chain):
            raise InvalidInput(f"routing rules: {where}.fallback must widen in order of after_seconds")
        timeout = rules.get("reservation_timeout_seconds")
        parsed[str(skill)] = SkillRules(
            tuple(chain), None if timeout is None else _number(timeout, f"{where}.reservation_timeout_seconds"))
    return RoutingRules(parsed)

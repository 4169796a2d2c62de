"""Choosers to compare the routing rule with: round-robin and random.

Each has the signature of router.routing.choose_agent and plugs into the
Dispatcher in its place (router/simulation.py does). Both keep the
eligibility rule (online, the skill, room for the conversation's weight), so they differ from the
served rule only in *which* eligible agent takes the handoff: the queue, its
order and its draining are the Dispatcher's own.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .model import Agent


class RoundRobin:
    """Eligible agents in turn, whatever their load: the first eligible
    agent after the one chosen last, in a fixed cyclic order."""

    def __init__(self, order: Sequence[str] = ()) -> None:
        self._position: dict[str, int] = {aid: i for i, aid in enumerate(order)}
        self._last = -1

    def __call__(self, agents: Iterable[Agent], skill: str, exclude: str | None = None,
                 weight: int = 1) -> Agent | None:
        best: Agent | None = None
        best_distance = 0
        for agent in agents:
            if not agent.can_take(skill, weight) or agent.id == exclude:
                continue
            i = self._position.setdefault(agent.id, len(self._position))
            distance = (i - self._last - 1) % len(self._position)
            if best is None or distance < best_distance:
                best, best_distance = agent, distance
        if best is not None:
            self._last = self._position[best.id]
        return best


class RandomChoice:
    """An eligible agent drawn uniformly (seeded)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def __call__(self, agents: Iterable[Agent], skill: str, exclude: str | None = None,
                 weight: int = 1) -> Agent | None:
        eligible = [a for a in agents if a.can_take(skill, weight) and a.id != exclude]
        return self._rng.choice(eligible) if eligible else None

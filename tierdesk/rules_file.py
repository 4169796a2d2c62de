"""Read the routing rules file (TIERDESK_ROUTING_RULES) at start-up; a bad
file stops the server with a message naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import yaml

from router.rules import RoutingRules, parse_rules
from tierdesk.errors import InvalidInput


def load_routing_rules(path: Path | None) -> RoutingRules:
    if path is None or str(path) == "":
        return RoutingRules()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"TIERDESK_ROUTING_RULES={path}: cannot be read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"TIERDESK_ROUTING_RULES={path}: not valid YAML ({exc})") from None
    return parse_rules(data)

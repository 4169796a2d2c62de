"""The SLA monitor at the edge: each timekeeper round (on the one instance
that keeps time) it asks router/alerts.py what to raise and clear, records
that with the alert webhook's deliveries in one transaction (so an alert is
raised once and cleared once, across restarts and instances), logs it and
pushes it to supervisors' sockets."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from router.alerts import Alert, AlertRules, evaluate
from router.changes import OutboxItem
from router.ids import new_id
from router.rollups import hour_of
from tierdesk.errors import Conflict

from . import keys
from .wire import iso

log = structlog.get_logger(__name__)

# The outbox's name for the alert webhook (TIERDESK_ALERT_WEBHOOK_URL): its
# deliveries are retried, signed and dead-lettered like a channel's.
ALERTS_CHANNEL = "alerts"


def wire(alert: Alert) -> dict[str, Any]:
    view = alert.view()
    for k in ("raised_at", "requested_at", "due_at"):
        if isinstance(view.get(k), (int, float)):
            view[k] = iso(view[k])
    return view


async def check(app: web.Application, rules: AlertRules) -> tuple[int, int]:
    """One round: returns how many alerts were raised and cleared."""
    desk, store, alerts = app[keys.DESK], app[keys.STORE], app[keys.ALERTS]
    now = app[keys.CLOCK].now()
    open_alerts = await alerts.open_alerts()
    containment = None
    if rules.containment_floor is not None:
        # The current and the previous clock hour, from the rollups kept on write.
        containment = await store.containment_since(hour_of(now) - 3600)
    sla = desk.config.sla.human_first_response_seconds
    late, handoffs = desk.late_first_responses(
        now, rules.first_response_warning(sla), rules.first_response_alerts_per_skill,
        [a.subject.get("conversation_id", "") for a in open_alerts.values() if a.kind == "first_response"])
    decisions = evaluate(open_alerts, now, handoffs=handoffs, late=late, queues=desk.dispatcher.waiting_by_skill(),
                         containment=containment, first_response_sla=sla, rules=rules, hours=desk.config.sla.hours)
    if not decisions.raise_ and not decisions.clear:
        return 0, 0
    deliveries = []
    if app[keys.SETTINGS].alert_webhook_url:
        for a in decisions.raise_:
            deliveries.append(_delivery(a.key, "alert_raised", {"type": "alert_raised", "alert": wire(a)}, now))
        for key in decisions.clear:
            cleared = open_alerts[key]
            deliveries.append(_delivery(key, "alert_cleared", {"type": "alert_cleared", "alert": wire(cleared),
                                                               "cleared_at": wire_time(now)}, now))
    try:
        await alerts.record(decisions.raise_, decisions.clear, now, deliveries)
    except Conflict:
        return 0, 0  # another instance recorded the same change first
    sockets = app[keys.SUPERVISOR_SOCKETS]
    for a in decisions.raise_:
        log.warning("alert_raised", key=a.key, kind=a.kind, **{k: v for k, v in a.subject.items()})
        sockets.push({"type": "alert_raised", "alert": wire(a)})
    for key in decisions.clear:
        log.info("alert_cleared", key=key, kind=open_alerts[key].kind)
        sockets.push({"type": "alert_cleared", "key": key, "cleared_at": wire_time(now)})
    if deliveries:
        app[keys.DELIVERY_WAKE]()
    return len(decisions.raise_), len(decisions.clear)


def wire_time(t: float) -> str | None:
    return iso(t)


def _delivery(key: str, kind: str, payload: dict[str, Any], now: float) -> OutboxItem:
    # Deliveries of one alert keep their order (raised before cleared): the
    # outbox orders per "conversation", here the alert's key.
    return OutboxItem(idempotency_key=new_id("alrt"), channel_id=ALERTS_CHANNEL, conversation_id=key[:64],
                      kind=kind, at=now, payload=payload)

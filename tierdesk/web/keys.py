"""Typed application keys: everything the handlers share, and nothing global."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from router.ports import Clock
    from router.rules import RoutingRules
    from router.services import Desk
    from storage.accounts import Accounts
    from storage.channels import ChannelData
    from tierdesk.channels.hub import ChannelHub
    from tierdesk.channels.inbound import Inbound
    from tierdesk.channels.matrix import MatrixBridge
    from tierdesk.channels.widget import CustomerSockets
    from storage.alerts import AlertStore
    from storage.engine import Engines
    from storage.faq import FaqRepository
    from storage.history import HandoffHistory
    from storage.outbox import Outbox
    from storage.people import People
    from storage.store import SqlStore
    from tierdesk.delivery import DeliveryWorker
    from tierdesk.models import LiveModel
    from tierdesk.settings import Settings

    from router.alerts import AlertRules

    from .attendance import Presence
    from .supervisor_ws import SupervisorSockets
    from .auth import Authenticator
    from .client_address import ClientAddress
    from .demo_inbox import DemoInbox
    from .prom import Registry
    from .ratelimit import RateLimiter
    from .sessions import Sessions
    from .worker_metrics import WorkerMetrics
    from .ws import AgentSockets

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
ROUTING_RULES: web.AppKey[RoutingRules] = web.AppKey("routing_rules")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINES: web.AppKey[Engines] = web.AppKey("engines")
STORE: web.AppKey[SqlStore] = web.AppKey("store")
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
DESK: web.AppKey[Desk] = web.AppKey("desk")
MODEL: web.AppKey[LiveModel] = web.AppKey("model")
AUTH: web.AppKey[Authenticator] = web.AppKey("auth")
SOCKETS: web.AppKey[AgentSockets] = web.AppKey("sockets")
PROM: web.AppKey[Registry] = web.AppKey("prom")
DELIVERY_WAKE: web.AppKey[Callable[[], None]] = web.AppKey("delivery_wake")
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
CHANNEL_LIMIT: web.AppKey[RateLimiter] = web.AppKey("channel_limit")
IP_LIMIT: web.AppKey[RateLimiter] = web.AppKey("ip_limit")
CLIENT_ADDRESS: web.AppKey[ClientAddress] = web.AppKey("client_address")
PRESENCE: web.AppKey[Presence] = web.AppKey("presence")
ALERTS: web.AppKey[AlertStore] = web.AppKey("alerts")
ALERT_RULES: web.AppKey[AlertRules] = web.AppKey("alert_rules")
SUPERVISOR_SOCKETS: web.AppKey[SupervisorSockets] = web.AppKey("supervisor_sockets")
FAQ: web.AppKey[FaqRepository] = web.AppKey("faq")
HISTORY: web.AppKey[HandoffHistory] = web.AppKey("history")
DELIVERY: web.AppKey[DeliveryWorker] = web.AppKey("delivery")
# This instance's name among the instances sharing a database.
ORIGIN: web.AppKey[str] = web.AppKey("origin", str)
WORKER_METRICS: web.AppKey[WorkerMetrics] = web.AppKey("worker_metrics")
# Only with `tierdesk serve --demo`: the demo channel's webhook receiver.
DEMO_INBOX: web.AppKey[DemoInbox] = web.AppKey("demo_inbox")
PEOPLE: web.AppKey[People] = web.AppKey("people")
SESSIONS: web.AppKey[Sessions] = web.AppKey("sessions")
# The channels (tierdesk/channels): adapters by kind, what each channel
# wants delivered, and the inbound side every adapter calls.
CHANNELS: web.AppKey[ChannelHub] = web.AppKey("channels")
INBOUND: web.AppKey[Inbound] = web.AppKey("inbound")
CHANNEL_DATA: web.AppKey[ChannelData] = web.AppKey("channel_data")
CUSTOMER_SOCKETS: web.AppKey[CustomerSockets] = web.AppKey("customer_sockets")
MATRIX: web.AppKey[MatrixBridge] = web.AppKey("matrix")

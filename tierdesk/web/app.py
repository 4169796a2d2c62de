"""The application factory: wires adapters to the Desk, with no globals."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from router.alerts import AlertRules
from router.attendance import AttendanceRules
from router.metrics import SLA
from router.model import Channel
from router.ports import Clock, SystemClock
from router.services import Desk, DeskConfig
from storage.accounts import Accounts
from storage.channels import ChannelData
from storage.alerts import AlertStore
from storage.engine import create_engines
from storage.faq import FaqRepository
from storage.history import HandoffHistory
from storage.notify import PgRelay, committed_elsewhere, created_keys
from storage.outbox import Outbox
from storage.people import People
from storage.store import SqlStore
from tierdesk.channels import webhook, widget
from tierdesk.channels.estimates import WaitEstimator
from tierdesk.channels.hub import ChannelHub
from tierdesk.channels.inbound import Inbound
from tierdesk.delivery import DeliveryWorker
from tierdesk.heap import YOUNG_SECONDS, HeapPolicy
from tierdesk.loop_watch import HEARTBEAT_SECONDS, LoopWatch
from tierdesk.models import LiveModel
from tierdesk.errors import BodyTooSlow, RateLimited
from tierdesk.logging import begin_request
from tierdesk.rules_file import load_routing_rules
from tierdesk.settings import Settings

from . import faq_handlers as faq
from . import handlers as h
from . import attendance, keys, monitor, protocol_errors, schemas
from . import people_handlers as people
from .auth import Authenticator
from .supervisor_ws import SupervisorSockets
from .client_address import ClientAddress, trusted_networks
from .demo_inbox import DemoInbox
from .demo_inbox import add_routes as add_demo_inbox
from .errors import error_middleware
from .prom import Registry
from .ratelimit import RateLimiter
from .sessions import Sessions
from .worker_metrics import PUBLISH_SECONDS, WorkerMetrics
from .ws import AgentSockets

log = structlog.get_logger(__name__)

OPENAPI_PATH = Path(__file__).resolve().parent / "openapi.yaml"


# Request ids: unique across instances (random per process) and cheap (uuid4
# is a getrandom system call per request).
_REQUEST_ID_PREFIX = secrets.token_hex(11)
_request_numbers = itertools.count()


@web.middleware
async def context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id") or f"{_REQUEST_ID_PREFIX}{next(_request_numbers):010x}"
    begin_request(request_id=request_id)
    started = time.perf_counter()
    response = await handler(request)
    elapsed = time.perf_counter() - started
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    prom = request.app[keys.PROM]
    prom.observe("tierdesk_http_request_duration_seconds", elapsed, route=route, method=request.method)
    prom.inc("tierdesk_http_requests_total", route=route, method=request.method, status=str(response.status))
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    log.info("request", method=request.method, route=route, status=response.status,
             ms=round(elapsed * 1000, 2))
    return response


@web.middleware
async def request_guards(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What every request passes before its handler, in this order: its
    address's rate limit, no NUL in its path or query parameters, and its
    whole body read within its time (the handlers' reads then return what is
    already here). One middleware rather than one each: every layer costs
    every request a coroutine more, and each resumption of it."""
    app = request.app
    limit = app[keys.IP_LIMIT]
    if limit.enabled and request.path not in ("/healthz", "/readyz", "/metrics"):
        wait = limit.acquire(app[keys.CLIENT_ADDRESS].of(request))
        if wait:
            raise RateLimited("too many requests from this address; slow down", retry_after=wait)
    schemas.refuse_nul(request.match_info, "path")
    if "\x00" in request.query_string or "%00" in request.query_string:
        schemas.refuse_nul(request.query, "query")
    if request.body_exists and not request.content.is_eof():
        try:
            async with asyncio.timeout(app[keys.SETTINGS].body_timeout_seconds):
                await request.read()
        except TimeoutError:
            # Marking the body ended stops aiohttp from lingering (reading
            # and discarding the trickle for up to 10 s more) after the 408:
            # the connection closes as soon as the answer is written.
            request.content.feed_eof()
            raise BodyTooSlow(f"the request body did not arrive within "
                              f"{app[keys.SETTINGS].body_timeout_seconds:g} s") from None
    return await handler(request)


def create_app(settings: Settings, *, clock: Clock | None = None, model: LiveModel | None = None,
               worker: WorkerMetrics | None = None, manage_heap: bool = False,
               demo_inbox: DemoInbox | None = None) -> web.Application:
    """``worker``: set in each worker of TIERDESK_WORKERS > 1 (tierdesk/workers.py).
    ``manage_heap``: the process is this server's own (`tierdesk serve`), so
    the garbage collector's policy is installed (tierdesk/heap.py).
    ``demo_inbox``: `tierdesk serve --demo`'s receiver for the demo channel's
    deliveries (tierdesk/web/demo_inbox.py)."""
    protocol_errors.install()
    app = web.Application(
        middlewares=[context_middleware, widget.cors, error_middleware, request_guards],
        client_max_size=settings.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.ROUTING_RULES] = load_routing_rules(settings.routing_rules)
    app[keys.ALERT_RULES] = AlertRules(
        warn_margin=settings.sla_warning_margin, per_skill=app[keys.ROUTING_RULES].alert_thresholds(),
        containment_floor=settings.alert_containment_floor,
        first_response_alerts_per_skill=settings.alert_first_response_per_skill)
    app[keys.SUPERVISOR_SOCKETS] = SupervisorSockets()
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.SOCKETS] = AgentSockets()
    # This instance's name on the PostgreSQL relay (storage/notify.py).
    app[keys.ORIGIN] = f"{os.getpid()}-{os.urandom(4).hex()}"
    app[keys.PROM] = _registry(app, worker)
    if worker is not None:
        app[keys.WORKER_METRICS] = worker
        app.cleanup_ctx.append(_publish_worker_metrics)
    app[keys.OPENAPI] = OPENAPI_PATH.read_bytes()
    app[keys.MODEL] = model or LiveModel(settings.models_dir, settings.knowledge_base,
                                         max_batch=settings.classifier_max_batch)
    app[keys.DELIVERY_WAKE] = lambda: None
    app[keys.CHANNELS] = ChannelHub(None, None, lambda: app.get(keys.DESK))
    app[keys.INBOUND] = Inbound(app)
    app[keys.CUSTOMER_SOCKETS] = widget.CustomerSockets()
    app[keys.CHANNEL_LIMIT] = RateLimiter(settings.rate_limit_channel_per_second, settings.rate_limit_channel_burst)
    app[keys.IP_LIMIT] = RateLimiter(settings.rate_limit_ip_per_second, settings.rate_limit_ip_burst)
    app[keys.CLIENT_ADDRESS] = ClientAddress(trusted_networks(settings.trusted_proxies))
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_model)
    app.cleanup_ctx.append(_relay)  # listening before the desk loads: no change is missed
    app.cleanup_ctx.append(_desk)
    app.cleanup_ctx.append(_background)
    app[keys.PRESENCE] = attendance.Presence(app)
    app.cleanup_ctx.append(attendance.run)
    if manage_heap:
        app.cleanup_ctx.append(_heap)  # last: what the others loaded is frozen
        app.cleanup_ctx.append(_loop_watch)  # from when the server is ready: start-up's long steps are not serving's
    _routes(app)
    if demo_inbox is not None:
        add_demo_inbox(app, demo_inbox)
    from tierdesk import console  # the pages sit on the API, at its edge

    console.setup(app)
    return app


def _registry(app: web.Application, worker: WorkerMetrics | None) -> Registry:
    r = Registry(None if worker is None else {"worker": str(worker.index)})

    def running(read: Callable[[], float]) -> Callable[[], float]:
        """A component's running count; 0 before the component is up."""
        def value() -> float:
            try:
                return read()
            except KeyError:
                return 0
        return value

    r.counter_by("tierdesk_messages_total",
                 "Customer messages decided, by what tierdesk did with them (a re-sent message that gets its "
                 "stored answer again is not counted)", "action",
                 lambda: app[keys.DESK].messages_decided if keys.DESK in app else {})
    r.counter("tierdesk_agent_replies_total", "Agent replies accepted")
    r.counter("tierdesk_http_requests_total", "HTTP requests by route and status")
    r.histogram("tierdesk_http_request_duration_seconds", "HTTP request latency")
    r.gauge("tierdesk_queue_waiting", "Handoffs waiting for an agent",
            lambda: app[keys.DESK].queue_length() if keys.DESK in app else 0)
    r.gauge_by("tierdesk_queue_oldest_wait_seconds", "How long the oldest waiting handoff of each skill has waited",
               "skill", lambda: _per_skill(app, "oldest_wait_seconds"))
    r.gauge_by("tierdesk_handoffs_at_risk", "Unanswered handoffs of each skill with less than the warning margin of "
               "their first-response SLA left", "skill", lambda: _per_skill(app, "at_risk"))
    r.gauge_by("tierdesk_handoffs_breached", "Unanswered handoffs of each skill past their first-response SLA",
               "skill", lambda: _per_skill(app, "breached"))
    r.gauge_by("tierdesk_left_messages_waiting", "Messages left for a full queue, waiting for an agent, per skill",
               "skill", lambda: _per_skill(app, "left_messages"))
    r.gauge("tierdesk_conversations_in_memory", "Conversations this process keeps in memory (at most "
            "TIERDESK_CONVERSATION_CACHE_SIZE, or the human tier's if it holds more)",
            lambda: app[keys.DESK].conversations_in_memory() if keys.DESK in app else 0)
    r.gauge("tierdesk_agents_online", "Agents online",
            lambda: sum(1 for a in app[keys.DESK].agents() if a.status.value == "online") if keys.DESK in app else 0)
    r.gauge("tierdesk_agent_websockets", "Agent WebSockets connected", lambda: app[keys.SOCKETS].count())
    r.gauge("tierdesk_widget_websockets", "Web chat widget WebSockets connected",
            lambda: app[keys.CUSTOMER_SOCKETS].count())
    r.counter("tierdesk_group_commit_batches_total", "Group-commit transactions written",
              running(lambda: app[keys.STORE].committer.batches))
    r.counter("tierdesk_group_commit_changes_total", "Changes committed by group commit",
              running(lambda: app[keys.STORE].committer.committed))
    r.counter("tierdesk_group_commit_stepwise_batches_total",
              "PostgreSQL batches written in steps (the one-statement write was refused or not possible)",
              running(lambda: app[keys.STORE].stepwise_batches))
    r.counter("tierdesk_changes_refused_total", "Changes the database refused (another instance changed the same "
              "conversation or agent first)", running(lambda: app[keys.STORE].committer.refused))
    r.counter("tierdesk_decisions_made_again_total", "Requests decided again after the database refused their change",
              running(lambda: app[keys.DESK].decided_again))
    r.counter("tierdesk_classifier_batches_total", "Micro-batched classifier calls",
              lambda: app[keys.MODEL].batcher.batches_run)
    r.counter("tierdesk_classifier_messages_total", "Messages classified",
              lambda: app[keys.MODEL].batcher.messages_classified)
    r.counter("tierdesk_deliveries_sent_total", "Webhook deliveries acknowledged by channels",
              running(lambda: app[keys.DELIVERY].sent))
    r.counter("tierdesk_delivery_retries_total", "Webhook deliveries scheduled for another try",
              running(lambda: app[keys.DELIVERY].retries))
    r.counter("tierdesk_deliveries_dead_total",
              "Webhook deliveries given up (dead letters: GET /v1/admin/deliveries, replay with "
              "POST /v1/admin/deliveries/replay)", running(lambda: app[keys.DELIVERY].dead))
    return r


_live_cache: dict[int, tuple[float, dict[str, Any]]] = {}


def _per_skill(app: web.Application, field: str) -> dict[str, float]:
    """From one live view a second: a scrape (or a worker's publishing,
    every second) reads three series of it."""
    if keys.DESK not in app:
        return {}
    hit = _live_cache.get(id(app))
    if hit is None or time.monotonic() - hit[0] > 1.0:
        hit = _live_cache[id(app)] = (time.monotonic(), app[keys.DESK].live(app[keys.SETTINGS].sla_warning_margin))
    return {s["skill"]: float(s[field] or 0) for s in hit[1]["skills"]}


async def _database(app: web.Application) -> AsyncIterator[None]:
    s = app[keys.SETTINGS]
    engines = create_engines(s.database_url, pool_size=s.db_pool_size, sqlite_synchronous=s.sqlite_synchronous,
                             wait_seconds=s.db_wait_seconds)
    app[keys.ENGINES] = engines
    store = SqlStore(engines, origin=app[keys.ORIGIN] if engines.dialect == "postgresql" else None,
                     commit_linger=s.commit_linger_ms / 1000)
    app[keys.STORE] = store
    try:
        await store.prepare()
    except Exception as exc:  # noqa: BLE001 - serve anyway: the database may come up later
        log.warning("store_not_prepared", error=repr(exc))
    app[keys.ACCOUNTS] = Accounts(engines)
    app[keys.ALERTS] = AlertStore(engines)
    app[keys.OUTBOX] = Outbox(engines)
    app[keys.FAQ] = FaqRepository(engines)
    app[keys.HISTORY] = HandoffHistory(engines)
    app[keys.CHANNEL_DATA] = ChannelData(engines)
    hub = app[keys.CHANNELS]
    hub.accounts = app[keys.ACCOUNTS]
    hub.estimator = WaitEstimator(app[keys.CHANNEL_DATA], app[keys.CLOCK], window=s.wait_estimate_window_seconds,
                                  min_samples=s.wait_estimate_min_samples)
    app[keys.AUTH] = Authenticator(app[keys.ACCOUNTS], s.admin_token,
                                   signature_tolerance=s.signature_tolerance_seconds)
    app[keys.AUTH].use_clock(app[keys.CLOCK].now)
    app[keys.PEOPLE] = People(engines)
    app[keys.SESSIONS] = app[keys.AUTH].sessions = Sessions(app[keys.PEOPLE], s, app[keys.CLOCK])
    yield
    await app[keys.AUTH].close()
    await store.close()  # writes what is queued before the engines go
    await engines.dispose()


async def _model(app: web.Application) -> AsyncIterator[None]:
    live = app[keys.MODEL]
    if not live.ready:
        try:
            overrides = await app[keys.FAQ].answer_overrides()
        except Exception as exc:  # noqa: BLE001 - the database may come up later
            log.warning("answer_overrides_unavailable", error=repr(exc))
            overrides = {}
        problem = await live.try_load(overrides)
        if problem is not None:
            # Serve anyway: agents and metrics work, /readyz says not ready,
            # and customer messages get 503 until a model is trained.
            log.warning("model_not_loaded", error=str(problem))
    watcher = asyncio.create_task(_follow_active_model(app), name="model-watcher")
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _follow_active_model(app: web.Application) -> None:
    """An activation by the CLI or another instance goes live here too."""
    s = app[keys.SETTINGS]
    while True:
        await asyncio.sleep(s.model_watch_seconds)
        try:
            await app[keys.MODEL].follow_active()
        except Exception as exc:  # noqa: BLE001 - keep serving the model we have
            log.warning("model_watch_failed", error=repr(exc))


async def _desk(app: web.Application) -> AsyncIterator[None]:
    s = app[keys.SETTINGS]
    rules = app[keys.ROUTING_RULES]
    config = DeskConfig(default_skill=s.default_skill, max_bot_answers=s.max_bot_answers,
                        vip_to_human=s.vip_to_human,
                        sla=SLA(s.sla_bot_seconds, s.sla_human_seconds, s.sla_human_first_response_seconds,
                                hours=rules.hours()),
                        attendance=AttendanceRules(
                            presence_grace_seconds=s.presence_grace_seconds,
                            requeue_answered_on_leave=s.requeue_answered_on_leave,
                            reservation_timeout_seconds=s.reservation_timeout_seconds,
                            reservation_timeout_by_skill=rules.reservation_timeouts(),
                            misses_before_away=s.reservation_misses_before_away),
                        fallback=rules.fallback(), vip_weight=rules.vip_weight,
                        queue_limits=rules.queue_limits(), conversation_cache_size=s.conversation_cache_size)
    hub = app[keys.CHANNELS]
    desk = Desk(app[keys.STORE], app[keys.MODEL], app[keys.CLOCK], config, notifier=app[keys.SOCKETS],
                notices=hub)
    app[keys.STORE].committer.on_failure(desk.commit_failed)
    try:
        await hub.refresh()  # what each channel wants delivered, before the first message
        await desk.start()
    except Exception as exc:  # noqa: BLE001 - start degraded; requests retry the load
        log.warning("desk_start_failed", error=repr(exc))
    app[keys.DESK] = desk
    yield
    await desk.stop_refreshing()
    await app[keys.SOCKETS].close_all()
    await app[keys.CUSTOMER_SOCKETS].close_all()
    await app[keys.SUPERVISOR_SOCKETS].close_all()


async def _relay(app: web.Application) -> AsyncIterator[None]:
    """With PostgreSQL, instances share pushes (agents connected elsewhere)
    and what their commits changed (storage/notify.py)."""
    relay = None
    revalidating: set[asyncio.Task[int]] = set()
    if app[keys.ENGINES].dialect == "postgresql":
        sockets = app[keys.SOCKETS]
        store = app[keys.STORE]

        def received(message: dict[str, Any]) -> None:
            if message.get("kind") in ("push", "signed_out"):
                sockets.from_relay(message)
            elif message.get("kind") == "customer_push":
                app[keys.CUSTOMER_SOCKETS].from_relay(message)
            elif message.get("kind") == "supervisor_push":
                app[keys.SUPERVISOR_SOCKETS].from_relay(message)
            elif message.get("kind") == "revoked" and keys.ACCOUNTS in app:
                revalidating.add(asyncio.create_task(sockets.revalidate(app[keys.ACCOUNTS].live_token_hashes)))
            elif message.get("kind") == "sync":
                store.stored_elsewhere(created_keys(message))
                if keys.DESK in app:
                    desk = app[keys.DESK]
                    desk.changed_elsewhere(*(_ids(message.get(k)) for k in ("conversations", "held", "agents")),
                                           committed_elsewhere(message, desk.keeps))

        def reconnected() -> None:
            # Changes were missed: read everything afresh, and the stored
            # conversation keys too (none is ruled out meanwhile).
            store.relay_listening()
            if keys.DESK in app:
                app[keys.DESK].invalidate()

        relay = PgRelay(app[keys.SETTINGS].database_url, app[keys.ORIGIN], received, reconnected)
        await relay.start()
        if relay.listening:  # else once it does (reconnected)
            store.relay_listening()
            await store.conversation_keys_built()
        sockets.relay = relay.publish
        app[keys.CUSTOMER_SOCKETS].relay = relay.publish
        app[keys.SUPERVISOR_SOCKETS].relay = relay.publish
    yield
    if relay is not None:
        app[keys.SOCKETS].relay = None
        app[keys.CUSTOMER_SOCKETS].relay = None
        app[keys.SUPERVISOR_SOCKETS].relay = None
        await relay.close()


def _ids(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


async def _background(app: web.Application) -> AsyncIterator[None]:
    s = app[keys.SETTINGS]
    alert_target = None
    if s.alert_webhook_url:
        alert_target = Channel(id=monitor.ALERTS_CHANNEL, name="alerts", webhook_url=s.alert_webhook_url,
                               webhook_secret=s.alert_webhook_secret or None)
    hub = app[keys.CHANNELS]
    hooks = webhook.WebhookAdapter(app[keys.CLOCK], s.webhook_timeout_seconds)
    hub.register(hooks)
    hub.register(widget.WidgetAdapter(app[keys.CUSTOMER_SOCKETS]))
    worker = DeliveryWorker(app[keys.OUTBOX], app[keys.ACCOUNTS], app[keys.CLOCK], hub, alert_target=alert_target,
                            max_attempts=s.outbox_max_attempts, timeout=s.webhook_timeout_seconds,
                            poll=s.outbox_poll_seconds, base_delay=s.outbox_backoff_base_seconds,
                            max_delay=s.outbox_backoff_cap_seconds)
    bridge = None
    if s.matrix_homeserver:
        from tierdesk.channels.matrix import MatrixBridge  # only with its extra installed

        bridge = MatrixBridge(app)
        hub.register(bridge)
        app[keys.MATRIX] = bridge
    app[keys.DELIVERY_WAKE] = worker.wake
    app[keys.DELIVERY] = worker
    delivery = asyncio.create_task(worker.run(), name="delivery")
    sweeper = asyncio.create_task(_sweep(app), name="idle-sweeper")
    revalidator = asyncio.create_task(_revalidate_sockets(app), name="socket-revalidator")
    directory = asyncio.create_task(hub.keep_fresh(), name="channel-directory")
    matrix = asyncio.create_task(bridge.run(), name="matrix-bridge") if bridge is not None else None
    yield
    if matrix is not None and bridge is not None:
        matrix.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await matrix
    sweeper.cancel()
    revalidator.cancel()
    directory.cancel()
    # Let the worker finish the deliveries it holds (bounded by the webhook
    # timeout); what it never got to stays in the outbox for the next start.
    worker.stop()
    try:
        await asyncio.wait_for(delivery, s.webhook_timeout_seconds + 1.0)
    except TimeoutError:
        log.warning("delivery_worker_stopped_mid_batch")
    for task in (sweeper, delivery, revalidator, directory):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await hooks.close()
    if bridge is not None:
        await bridge.close()


async def _publish_worker_metrics(app: web.Application) -> AsyncIterator[None]:
    worker, prom = app[keys.WORKER_METRICS], app[keys.PROM]

    async def publish() -> None:
        while True:
            try:
                await worker.publish(prom.families())
            except OSError as exc:  # the run's directory is gone (the server is stopping)
                log.warning("worker_metrics_not_published", error=repr(exc))
            await asyncio.sleep(PUBLISH_SECONDS)

    task = asyncio.create_task(publish(), name="worker-metrics")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _heap(app: web.Application) -> AsyncIterator[None]:
    s, prom = app[keys.SETTINGS], app[keys.PROM]
    policy = HeapPolicy(freeze_survivors=s.gc_freeze_survivors)
    policy.settle()
    prom.gauge("tierdesk_gc_frozen_objects",
               "Objects out of the garbage collector's sight, counted at start-up and at each reclaim "
               "(tierdesk/heap.py)", lambda: policy.frozen_counted)
    prom.counter("tierdesk_gc_reclaims_total", "Full collections run to free cycles among frozen objects")
    prom.counter("tierdesk_gc_reclaimed_objects_total", "Objects those collections freed")
    prom.histogram("tierdesk_gc_reclaim_duration_seconds", "How long each of them held the process")

    async def reclaim_every(seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            r = policy.reclaim()
            prom.inc("tierdesk_gc_reclaims_total")
            prom.inc("tierdesk_gc_reclaimed_objects_total", r.collected)
            prom.observe("tierdesk_gc_reclaim_duration_seconds", r.seconds)
            log.info("heap_reclaimed", collected=r.collected, seconds=round(r.seconds, 4), frozen=r.frozen)

    async def collect_young() -> None:
        while True:
            await asyncio.sleep(YOUNG_SECONDS)
            policy.collect_young()

    tasks = []
    if s.gc_freeze_survivors:
        tasks.append(asyncio.create_task(collect_young(), name="heap-young"))
        if s.gc_reclaim_seconds > 0:
            tasks.append(asyncio.create_task(reclaim_every(s.gc_reclaim_seconds), name="heap-reclaim"))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    policy.remove()


async def _loop_watch(app: web.Application) -> AsyncIterator[None]:
    watch = LoopWatch()
    app[keys.PROM].gauge(
        "tierdesk_loop_longest_step_cpu_seconds",
        f"The event loop thread's longest CPU time between two heartbeats {HEARTBEAT_SECONDS * 1000:g} ms apart "
        "since the server was ready: an upper bound of its longest step (tierdesk/loop_watch.py)",
        lambda: watch.longest)
    watch.start(asyncio.get_running_loop())
    yield
    watch.stop()


async def _revalidate_sockets(app: web.Application) -> None:
    """Close agent sockets whose token was revoked on any instance, within
    TIERDESK_WS_REVALIDATE_SECONDS (the relay usually does it at once)."""
    s = app[keys.SETTINGS]
    while True:
        await asyncio.sleep(s.ws_revalidate_seconds)
        try:
            await app[keys.SOCKETS].revalidate(app[keys.ACCOUNTS].live_token_hashes)
        except Exception as exc:  # noqa: BLE001 - try again next round
            log.warning("socket_revalidation_failed", error=repr(exc))


async def _sweep(app: web.Application) -> None:
    s = app[keys.SETTINGS]
    while True:
        await asyncio.sleep(s.sweep_interval_seconds)
        try:
            closed = await app[keys.DESK].close_idle(s.idle_timeout_seconds)
            if closed:
                log.info("idle_conversations_closed", count=closed)
        except Exception as exc:  # noqa: BLE001 - try again next round
            log.warning("idle_sweep_failed", error=repr(exc))


def _routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/messages", webhook.post_message)
    r.add_post("/v1/conversations/{conversation_id}/feedback", webhook.post_feedback)
    r.add_post("/v1/conversations/{conversation_id}/close", webhook.post_close)
    r.add_get("/v1/agents/me", h.get_me)
    r.add_put("/v1/agents/me/status", h.put_status)
    r.add_get("/v1/agents/me/conversations", h.list_my_conversations)
    r.add_get("/v1/agents/me/metrics", h.my_metrics)
    r.add_get("/v1/agents/team", h.list_team)
    r.add_get("/v1/agents/ws", h.agent_ws)
    r.add_get("/v1/conversations/{conversation_id}", h.get_conversation)
    r.add_get("/v1/conversations/{conversation_id}/earlier", h.get_earlier)
    r.add_post("/v1/conversations/{conversation_id}/replies", h.post_reply)
    r.add_post("/v1/conversations/{conversation_id}/typing", h.post_typing)
    r.add_post("/v1/conversations/{conversation_id}/transfer", h.post_transfer)
    r.add_post("/v1/conversations/{conversation_id}/resolve", h.post_resolve)
    r.add_post("/v1/admin/agents", h.create_agent)
    r.add_get("/v1/admin/agents", h.list_agents)
    r.add_patch("/v1/admin/agents/{agent_id}", h.patch_agent)
    r.add_delete("/v1/admin/agents/{agent_id}", h.disable_agent)
    r.add_post("/v1/admin/{kind:agents|channels}/{subject_id}/token", h.rotate_token)
    r.add_post("/v1/admin/channels", h.create_channel)
    r.add_get("/v1/admin/channels", h.list_channels)
    r.add_patch("/v1/admin/channels/{channel_id}", h.patch_channel)
    r.add_delete("/v1/admin/channels/{channel_id}", h.disable_channel)
    r.add_post("/v1/admin/supervisor-tokens", h.create_supervisor_token)
    r.add_post("/v1/admin/admin-tokens", h.create_admin_token)
    r.add_get("/v1/admin/tokens", h.list_tokens)
    r.add_delete("/v1/admin/tokens/{token_id}", h.revoke_token)
    r.add_get("/v1/admin/people", people.list_people)
    r.add_post("/v1/admin/people", people.create_person)
    r.add_patch("/v1/admin/people/{person_id}", people.patch_person)
    r.add_get("/v1/admin/deliveries", h.list_deliveries)
    r.add_post("/v1/admin/deliveries/replay", h.replay_deliveries)
    r.add_get("/v1/queue", h.get_queue)
    r.add_get("/v1/live", h.get_live)
    r.add_get("/v1/live/ws", h.live_ws)
    r.add_get("/v1/metrics", h.get_metrics)
    r.add_get("/v1/staffing", h.get_staffing)
    r.add_get("/v1/faq/models", faq.list_models)
    r.add_post("/v1/faq/models/rollback", faq.rollback_model)
    r.add_post("/v1/faq/models/{version}/activate", faq.activate_model)
    r.add_get("/v1/faq/models/{version}/shadow", faq.shadow_model)
    r.add_get("/v1/faq/intents", faq.list_intents)
    r.add_patch("/v1/faq/intents/{intent_id}", faq.patch_intent)
    r.add_delete("/v1/faq/intents/{intent_id}/answer", faq.reset_intent_answer)
    r.add_post("/v1/faq/reload", faq.reload_knowledge_base)
    r.add_get("/v1/faq/misses", faq.list_misses)
    r.add_get("/v1/faq/labels", faq.list_labels)
    r.add_put("/v1/faq/labels/{message_id}", faq.put_label)
    r.add_get("/healthz", h.healthz)
    r.add_get("/readyz", h.readyz)
    r.add_get("/metrics", h.prometheus)
    r.add_get("/v1/openapi.yaml", h.openapi)
    widget.setup(app)

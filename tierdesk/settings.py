"""Settings: one typed object, read from the environment once at start-up.

Every variable is documented in README.md (Configuration); the defaults
serve the embedded demo on 127.0.0.1:8080 with SQLite under var/.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .errors import InvalidInput

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_name(field_name: str) -> str:
    return "TIERDESK_" + field_name.upper()


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'tierdesk.db'}"
    host: str = "127.0.0.1"
    port: int = 8080
    admin_token: str | None = None
    models_dir: Path = PROJECT_ROOT / "models"
    knowledge_base: Path = PROJECT_ROOT / "knowledge_base"
    # Request limits: text in UTF-8 bytes, the whole body in bytes.
    max_text_bytes: int = 4096
    max_body_bytes: int = 65536
    # The longest a request body may take to arrive (a client trickling one
    # in holds a connection): over it, 408 and the connection is closed.
    body_timeout_seconds: float = 10.0
    # Service levels per tier (seconds).
    sla_bot_seconds: float = 2.0
    sla_human_seconds: float = 60.0
    sla_human_first_response_seconds: float = 60.0
    # Handoff policy.
    default_skill: str = "general"
    max_bot_answers: int = 2
    vip_to_human: bool = False
    # The human tier when people are away or slow (docs/routing.md).
    presence_grace_seconds: float = 60.0
    requeue_answered_on_leave: bool = False
    reservation_timeout_seconds: float = 60.0
    reservation_misses_before_away: int = 2
    timekeeper_interval_seconds: float = 5.0
    # How many conversations a server process keeps in memory (the least
    # recently used leave first; those the human tier holds stay whatever
    # their number): a conversation not in memory costs a database read.
    conversation_cache_size: int = 20_000
    # A YAML file of per-skill rules (fallback chains, reservation timeouts;
    # router/rules.py). None: no per-skill rules.
    routing_rules: Path | None = None
    # A waiting or unanswered handoff is "at risk" once less than this share
    # of its first-response SLA is left.
    sla_warning_margin: float = 0.2
    # The SLA monitor: alerts go to supervisors' sockets, the log, /v1/live
    # and, when set, this webhook (signed with the secret, through the outbox).
    alert_webhook_url: str = ""
    alert_webhook_secret: str = ""
    # Alert when bot containment over the current and previous hour falls
    # under this share (unset: no containment alert).
    alert_containment_floor: float | None = None
    # Late handoffs of one skill that get a first-response alert each; past
    # it, one backlog alert per skill counts the rest.
    alert_first_response_per_skill: int = 20
    # Conversations with no message for this long are ended by the sweeper.
    idle_timeout_seconds: float = 1800.0
    sweep_interval_seconds: float = 30.0
    # Outbound delivery to channel webhooks.
    webhook_timeout_seconds: float = 5.0
    outbox_max_attempts: int = 16
    outbox_backoff_base_seconds: float = 1.0
    outbox_backoff_cap_seconds: float = 300.0
    outbox_poll_seconds: float = 0.5
    # Logging: json in production, console for people at a terminal.
    log_format: str = "json"
    log_level: str = "info"
    log_message_text: bool = False
    # SQLite durability: NORMAL (survives a process crash) or FULL (also a power cut).
    sqlite_synchronous: str = "NORMAL"
    # How long a group commit may wait for more changes to join it when the
    # rate says more are coming (storage/group_commit.py): fewer commits per
    # message at moderate rates, for at most this much latency. 0: never.
    commit_linger_ms: float = 2.0
    db_pool_size: int = 5
    # How long a request waits for a PostgreSQL connection (from the pool or
    # a new one) before it is answered 503 "retry".
    db_wait_seconds: float = 5.0
    # Server processes on the one port (PostgreSQL only; tierdesk/workers.py).
    workers: int = 1
    # Rate limits (requests per second, 0 = off) and their bursts.
    rate_limit_channel_per_second: float = 500.0
    rate_limit_channel_burst: float = 1000.0
    rate_limit_ip_per_second: float = 1000.0
    rate_limit_ip_burst: float = 2000.0
    # Addresses and networks (comma-separated) of the load balancers in
    # front: only from them is X-Forwarded-For believed (per-address limits).
    trusted_proxies: str = ""
    # Signed inbound requests: how far a signature's timestamp may be from now.
    signature_tolerance_seconds: float = 300.0
    # Agent WebSockets: close one that sent nothing (not even "ping") for this long.
    ws_idle_timeout_seconds: float = 120.0
    ws_max_message_bytes: int = 65536
    # How often open agent sockets are checked against revoked tokens (a
    # socket opened with a token revoked on another instance is closed by
    # then; the instance that revokes closes its own at once).
    ws_revalidate_seconds: float = 15.0
    classifier_max_batch: int = 64
    # How often the server checks models/ACTIVE for an activation made elsewhere.
    model_watch_seconds: float = 2.0
    # The garbage collector (tierdesk/heap.py): keep what survives young
    # collections out of later scans, and free the cycles among it this often.
    gc_freeze_survivors: bool = True
    gc_reclaim_seconds: float = 600.0
    # Where `tierdesk serve --demo` keeps the demo's tokens (demo.json, and
    # demo.env for a shell).
    demo_dir: Path = PROJECT_ROOT / "var"
    # Console sign-in (tierdesk/console): how long a signed-in browser stays
    # signed in, and how many wrong passwords per email or per address within
    # the lockout window before sign-in is refused for the rest of it.
    session_lifetime_seconds: float = 43200.0
    signin_max_failures: int = 5
    signin_lockout_seconds: float = 300.0
    # Secure flag of the session cookie: auto (when the request came over
    # TLS), true (always: behind a TLS-terminating proxy) or false.
    session_cookie_secure: str = "auto"
    # The expected wait told to a customer in the queue (router/estimates.py):
    # how far back the handoffs taken from the queue are counted, and how
    # many it takes to say a number rather than "unknown".
    wait_estimate_window_seconds: float = 1800.0
    wait_estimate_min_samples: int = 3
    # How long a web chat widget's customer session lasts (its conversation
    # survives reloads for that long).
    widget_session_lifetime_seconds: float = 30 * 86400.0
    # The Matrix bridge (tierdesk/channels/matrix.py), on when a homeserver is
    # given: the bot account (a password, or an access token), the device it
    # sends from (transaction ids are deduplicated per device), the channel
    # (kind "matrix") its rooms belong to, and the language of its notices.
    matrix_homeserver: str = ""
    matrix_user_id: str = ""
    matrix_password: str = ""
    matrix_access_token: str = ""
    matrix_device_id: str = "TIERDESK"
    matrix_channel_id: str = ""
    matrix_language: str = "en"
    matrix_sync_timeout_seconds: float = 30.0
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(_env_name(f.name))
            if f.name == "database_url" and raw is None:
                raw = env.get("DATABASE_URL")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, hints[f.name], raw)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.log_format not in ("json", "console"):
            raise InvalidInput("TIERDESK_LOG_FORMAT must be json or console")
        if self.sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
            raise InvalidInput("TIERDESK_SQLITE_SYNCHRONOUS must be NORMAL or FULL")
        for name in ("max_text_bytes", "max_body_bytes", "max_bot_answers", "outbox_max_attempts", "port",
                     "gc_reclaim_seconds", "alert_first_response_per_skill"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{_env_name(name)} must not be negative")
        from .web.client_address import trusted_networks

        trusted_networks(self.trusted_proxies)
        if self.session_cookie_secure not in ("auto", "true", "false"):
            raise InvalidInput("TIERDESK_SESSION_COOKIE_SECURE must be auto, true or false")
        if self.session_lifetime_seconds <= 0 or self.signin_lockout_seconds < 0 or self.signin_max_failures < 1:
            raise InvalidInput("TIERDESK_SESSION_LIFETIME_SECONDS must be positive, TIERDESK_SIGNIN_MAX_FAILURES "
                               "at least 1 and TIERDESK_SIGNIN_LOCKOUT_SECONDS not negative")
        if self.alert_containment_floor is not None and not 0 < float(self.alert_containment_floor) < 1:
            raise InvalidInput("TIERDESK_ALERT_CONTAINMENT_FLOOR must be between 0 and 1")
        if self.alert_webhook_url and not self.alert_webhook_url.startswith(("http://", "https://")):
            raise InvalidInput("TIERDESK_ALERT_WEBHOOK_URL must be an http(s) URL")
        if not 0 < self.sla_warning_margin < 1:
            raise InvalidInput("TIERDESK_SLA_WARNING_MARGIN must be between 0 and 1")
        if self.presence_grace_seconds <= 0 or self.timekeeper_interval_seconds <= 0:
            raise InvalidInput("TIERDESK_PRESENCE_GRACE_SECONDS and TIERDESK_TIMEKEEPER_INTERVAL_SECONDS must be "
                               "positive")
        if self.wait_estimate_window_seconds <= 0 or self.wait_estimate_min_samples < 1:
            raise InvalidInput("TIERDESK_WAIT_ESTIMATE_WINDOW_SECONDS must be positive and "
                               "TIERDESK_WAIT_ESTIMATE_MIN_SAMPLES at least 1")
        if self.widget_session_lifetime_seconds <= 0:
            raise InvalidInput("TIERDESK_WIDGET_SESSION_LIFETIME_SECONDS must be positive")
        if self.matrix_homeserver:
            if not self.matrix_homeserver.startswith(("http://", "https://")):
                raise InvalidInput("TIERDESK_MATRIX_HOMESERVER must be an http(s) URL")
            if not self.matrix_user_id or not self.matrix_channel_id:
                raise InvalidInput("the Matrix bridge needs TIERDESK_MATRIX_USER_ID and TIERDESK_MATRIX_CHANNEL_ID")
            if not (self.matrix_password or self.matrix_access_token):
                raise InvalidInput("the Matrix bridge needs TIERDESK_MATRIX_PASSWORD or TIERDESK_MATRIX_ACCESS_TOKEN")
            if self.matrix_language not in ("en", "zh"):
                raise InvalidInput("TIERDESK_MATRIX_LANGUAGE must be en or zh")
        if not 0 <= self.commit_linger_ms <= 50:
            raise InvalidInput("TIERDESK_COMMIT_LINGER_MS must be between 0 and 50")
        if self.conversation_cache_size < 1:
            raise InvalidInput("TIERDESK_CONVERSATION_CACHE_SIZE must be at least 1")
        if self.workers < 1:
            raise InvalidInput("TIERDESK_WORKERS must be at least 1")
        if self.workers > 1 and self.is_sqlite:
            raise InvalidInput("TIERDESK_WORKERS > 1 needs PostgreSQL: the workers share their state through it")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _convert(name: str, hint: Any, raw: str) -> Any:
    text = str(hint)
    try:
        if hint is bool or text == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float or text == "float | None":
            return float(raw)
        if hint is Path or text == "pathlib.Path | None":
            return Path(raw)
    except ValueError:
        raise InvalidInput(f"{_env_name(name)}={raw!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    return raw

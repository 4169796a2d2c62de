"""Cross-instance events over PostgreSQL LISTEN/NOTIFY.

Several tierdesk instances behind a load balancer share one PostgreSQL; an
agent's WebSocket is on one of them while the change that concerns the
agent may happen on another. Each instance listens on one channel and
relays what it publishes to the others; its own messages come back and are
ignored by origin.

Two kinds of message: ``push`` (an agent's event, for their sockets) and
``sync`` (which conversations and agents a commit changed, so the other
instances refresh their working sets). Sync messages are sent inside the
commit's own transaction (storage/statements.py), so they are delivered
exactly when, and only if, the commit lands, and in commit order.

A sync message carries each conversation as the commit wrote it (its row,
its handoff's row if the commit wrote that, and the version the change
was decided on): another instance takes it from there instead of reading
it back, which every handoff made elsewhere cost each instance (a pool
check-out, a query, a rollback) before 2026-12-05. The ids are listed as
well, for what does not fit and for instances of earlier versions. The
keys (channel, the channel's conversation id) of the conversations it
stored for the first time are listed too: an instance rules a key out
without a query only while it has heard of every one stored
(storage/lookup.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import orjson
import structlog
from sqlalchemy.engine import make_url

from router.changes import CommittedElsewhere

from .rows import (
    CONVERSATION_HANDOFF_ID,
    CONVERSATION_STATUS,
    CONVERSATION_TALLY,
    HELD_STATUSES,
    BatchRows,
    Row,
    conversation_from_rows,
)

log = structlog.get_logger(__name__)

CHANNEL = "tierdesk_events"
# NOTIFY payloads must stay under 8000 bytes; a message text is at most a few
# KiB (TIERDESK_MAX_TEXT_BYTES), so pushes fit with room to spare.
MAX_PAYLOAD = 7900


def sync_notices(origin: str, rows: BatchRows, agents: Sequence[str]) -> list[str]:
    """The sync messages for one commit of ``rows``, each under MAX_PAYLOAD
    bytes: the conversations' ids (``held``: those the human tier holds now,
    which every instance keeps in memory, to route and list them), each as
    committed unless it alone would not fit, the keys of those stored for
    the first time, and the agents' ids."""
    notices: list[str] = []
    budget = MAX_PAYLOAD - 200 - len(origin)
    fields = ("conversations", "held", "created", "agents", "committed")
    part: dict[str, list[Any]] = {f: [] for f in fields}
    size = 0

    def flush() -> None:
        nonlocal part, size
        # Begins with _sync_prefix(origin): the sender skips its own unread.
        notices.append(orjson.dumps({"kind": "sync", "origin": origin, **part}).decode())
        part, size = {f: [] for f in fields}, 0

    held = set(rows.held())
    handoffs = {h[0]: h for h in rows.handoffs}
    for row, base in zip(rows.conversations, rows.conversation_bases, strict=True):
        cid = row[0]
        n = (len(cid) + 3) * (2 if cid in held else 1)
        created = [row[1], row[2]] if base == 0 else None
        if created is not None:
            n += len(orjson.dumps(created)) + 1
        entry: bytes | None = _committed_entry(base, row, handoffs.get(row[CONVERSATION_HANDOFF_ID]))
        if n + len(entry) + 1 > budget:
            entry = None  # read back by id
        else:
            n += len(entry) + 1
        if size + n > budget:
            flush()
        part["conversations"].append(cid)
        if cid in held:
            part["held"].append(cid)
        if created is not None:
            part["created"].append(created)
        if entry is not None:
            part["committed"].append(orjson.Fragment(entry))
        size += n
    for a in agents:
        if size + len(a) + 3 > budget:
            flush()
        part["agents"].append(a)
        size += len(a) + 3
    if size:
        flush()
    return notices


def _sync_prefix(origin: str) -> str:
    return orjson.dumps({"kind": "sync", "origin": origin}).decode()[:-1] + ","


def _committed_entry(base: int, row: Row, handoff: Row | None) -> bytes:
    tally = row[CONVERSATION_TALLY]
    if tally is not None:  # JSON text already: embedded as it is, not quoted
        row = (*row[:CONVERSATION_TALLY], orjson.Fragment(tally), *row[CONVERSATION_TALLY + 1:])
    return orjson.dumps([base, row, handoff])


def created_keys(message: dict[str, Any]) -> list[tuple[str, str]]:
    """The conversation keys a sync message says were stored for the first time."""
    created = message.get("created")
    return [(k[0], k[1]) for k in created if isinstance(k, list) and len(k) == 2
            and isinstance(k[0], str) and isinstance(k[1], str)] if isinstance(created, list) else []


def committed_elsewhere(message: dict[str, Any],
                        keeps: Callable[[str, bool], bool] = lambda _id, _held: True) -> list[CommittedElsewhere]:
    """The conversations a sync message carries as committed that
    ``keeps(conversation id, whether the human tier holds it)``; one that
    does not read as this version writes it is left out (it is read back by
    id). Most a commit touches are the bot tier's, kept by no other
    instance: they are not built."""
    out: list[CommittedElsewhere] = []
    entries = message.get("committed")
    for entry in entries if isinstance(entries, list) else ():
        try:
            base, row, handoff = entry
            if not keeps(row[0], row[CONVERSATION_STATUS] in HELD_STATUSES):
                continue
            conversation = conversation_from_rows(row, handoff)
            handoff_id = row[CONVERSATION_HANDOFF_ID]
        except (TypeError, ValueError, KeyError, IndexError, orjson.JSONDecodeError):
            continue
        if not isinstance(base, int) or (handoff is not None and handoff[0] != handoff_id):
            continue
        if conversation.tally is None:
            continue  # no tally this version restores: the read replays its events
        out.append(CommittedElsewhere(conversation, base, handoff_id))
    return out


def asyncpg_dsn(url: str) -> str:
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


class PgRelay:
    def __init__(self, database_url: str, origin: str, on_message: Callable[[dict[str, Any]], None],
                 on_reconnect: Callable[[], None] = lambda: None) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._on_message = on_message
        # Messages sent while the relay was away are lost: whoever relies on
        # them catches up here.
        self._on_reconnect = on_reconnect
        self.origin = origin
        self._own_sync = _sync_prefix(origin)
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._started = False
        # One connection runs one statement at a time: publishes take turns.
        self._sending = asyncio.Lock()
        self.relayed = 0

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self, wait: float = 5.0) -> None:
        """Starts listening, waiting up to ``wait`` seconds for it: what is
        loaded after that misses no message. A connection made later calls
        on_reconnect."""
        listening = asyncio.Event()
        self._task = asyncio.create_task(self._keep_listening(listening), name="pg-relay")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait(), wait)
        self._started = True

    async def _keep_listening(self, listening: asyncio.Event) -> None:
        # Reconnect after a database restart; messages sent meanwhile are
        # lost: on_reconnect catches up.
        while not self._closing:
            try:
                conn = await asyncpg.connect(self._dsn, timeout=5)
                await conn.add_listener(CHANNEL, self._received)
                self._conn = conn
                listening.set()
                if self._started:
                    self._on_reconnect()
                closed = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c: closed.done() or closed.set_result(None))
                await closed
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep trying while the service runs
                log.warning("pg_relay_disconnected", error=repr(exc))
            finally:
                self._conn = None
            await asyncio.sleep(1.0)

    def _received(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(self._own_sync):
            return  # every commit of ours comes back: not worth parsing
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if message.get("origin") != self.origin:
            self._on_message(message)

    async def publish(self, message: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        body = orjson.dumps({**message, "origin": self.origin}).decode()
        if len(body.encode()) > MAX_PAYLOAD:
            log.warning("pg_relay_payload_too_large", size=len(body))
            return
        try:
            async with self._sending:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, body)
            self.relayed += 1
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("pg_relay_publish_failed", error=repr(exc))

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()

"""Agent WebSockets: the Notifier that pushes assignments and customer
messages to the agents connected to this instance."""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from .wire import iso

log = structlog.get_logger(__name__)


# Close code of a socket whose person signed out or was disabled: the
# console goes to its sign-in page instead of reconnecting.
SIGNED_OUT = 4401

_TIMES = ("created_at", "updated_at", "requested_at", "assigned_at", "first_reply_at", "resolved_at", "at")


def as_wire(payload: dict[str, Any]) -> dict[str, Any]:
    """Pushes show times as the REST API does (ISO 8601, UTC)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: iso(v) if k in _TIMES and isinstance(v, (int, float)) else walk(v) for k, v in value.items()}
        return value

    return walk(payload)


async def send_quietly(ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
    """Best effort: a socket that went away meanwhile is not an error."""
    try:
        await ws.send_json(payload)
    except (ConnectionError, RuntimeError) as exc:
        log.info("ws_send_failed", error=repr(exc))


class AgentSockets:
    def __init__(self) -> None:
        self._by_agent: dict[str, weakref.WeakSet[web.WebSocketResponse]] = defaultdict(weakref.WeakSet)
        # The hash of the token each socket was opened with: when that token
        # is revoked (rotated, the agent disabled), the socket is closed.
        self._tokens: weakref.WeakKeyDictionary[web.WebSocketResponse, str] = weakref.WeakKeyDictionary()
        self._sending: set[asyncio.Task[None]] = set()
        # The console session a socket was opened with: signing out ends it.
        self._session_of: weakref.WeakKeyDictionary[web.WebSocketResponse, str] = weakref.WeakKeyDictionary()
        # Set when other instances share the database: pushes are relayed to
        # them too, since the agent's socket may be on any of them.
        self.relay: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    def add(self, agent_id: str, ws: web.WebSocketResponse, *, token_hash: str | None = None,
            session: str | None = None) -> None:
        self._by_agent[agent_id].add(ws)
        if token_hash is not None:
            self._tokens[ws] = token_hash
        if session is not None:
            self._session_of[ws] = session

    async def revalidate(self, live: Callable[[set[str]], Awaitable[set[str]]]) -> int:
        """Close every socket whose token is no longer good (``live`` says
        which of the hashes still are); returns how many were closed."""
        hashes = {h for ws, h in list(self._tokens.items()) if not ws.closed}
        if not hashes:
            return 0
        good = await live(hashes)
        closed = 0
        for ws, h in list(self._tokens.items()):
            if h not in good and not ws.closed:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"token revoked")
                closed += 1
        if closed:
            log.info("agent_sockets_closed", reason="token revoked", count=closed)
        return closed

    def discard(self, agent_id: str, ws: web.WebSocketResponse) -> None:
        sockets = self._by_agent.get(agent_id)
        if sockets is not None:
            sockets.discard(ws)
            if not sockets:
                del self._by_agent[agent_id]

    def announce_revocation(self) -> None:
        """Tell the other instances that tokens were revoked: they check
        their sockets at once instead of at their next round."""
        if self.relay is not None:
            self._spawn(self.relay({"kind": "revoked"}))

    def agents(self) -> set[str]:
        """The agents with an open socket on this instance."""
        return {a for a, sockets in self._by_agent.items() if any(not ws.closed for ws in sockets)}

    def count(self) -> int:
        return sum(len(s) for s in self._by_agent.values())

    def to_agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        payload = as_wire(payload)
        if self.relay is not None:
            self._spawn(self.relay({"kind": "push", "agent_id": agent_id, "payload": payload}))
        self.deliver(agent_id, payload)

    def from_relay(self, message: dict[str, Any]) -> None:
        if message.get("kind") == "push" and isinstance(message.get("payload"), dict):
            self.deliver(str(message.get("agent_id")), message["payload"])
        elif message.get("kind") == "signed_out":
            sessions = message.get("sessions")
            self._close_here(str(message.get("agent_id")), set(sessions) if isinstance(sessions, list) else None)

    def sign_out(self, agent_id: str, sessions: set[str] | None = None) -> None:
        """Close the agent's sockets (only those opened with these console
        sessions, if given) here and, over the relay, on other instances."""
        if self.relay is not None:
            self._spawn(self.relay({"kind": "signed_out", "agent_id": agent_id,
                                    "sessions": None if sessions is None else sorted(sessions)}))
        self._close_here(agent_id, sessions)

    def _close_here(self, agent_id: str, sessions: set[str] | None) -> None:
        for ws in list(self._by_agent.get(agent_id, ())):
            if sessions is None or self._session_of.get(ws) in sessions:
                self._spawn(ws.close(code=SIGNED_OUT, message=b"signed out"))

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def deliver(self, agent_id: str, payload: dict[str, Any]) -> None:
        """Send to this instance's sockets of the agent."""
        sockets = self._by_agent.get(agent_id)
        if not sockets:
            return
        for ws in list(sockets):
            if not ws.closed:
                task = asyncio.create_task(self._send(ws, payload))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        await send_quietly(ws, payload)

    async def close_all(self) -> None:
        for sockets in list(self._by_agent.values()):
            for ws in list(sockets):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

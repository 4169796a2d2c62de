"""Supervisors' sockets: alerts as they are raised and cleared.

With several instances, pushes go over the relay too (the supervisor may be
connected to any instance), as agents' pushes do (tierdesk/web/ws.py)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

from .ws import send_quietly

log = structlog.get_logger(__name__)


class SupervisorSockets:
    def __init__(self) -> None:
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._sending: set[asyncio.Task[None]] = set()
        self.relay: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    def add(self, ws: web.WebSocketResponse) -> None:
        self._sockets.add(ws)

    def discard(self, ws: web.WebSocketResponse) -> None:
        self._sockets.discard(ws)

    def count(self) -> int:
        return len(self._sockets)

    def push(self, payload: dict[str, Any]) -> None:
        if self.relay is not None:
            self._spawn(self.relay({"kind": "supervisor_push", "payload": payload}))
        self.deliver(payload)

    def from_relay(self, message: dict[str, Any]) -> None:
        if isinstance(message.get("payload"), dict):
            self.deliver(message["payload"])

    def deliver(self, payload: dict[str, Any]) -> None:
        for ws in list(self._sockets):
            if not ws.closed:
                self._spawn(self._send(ws, payload))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        await send_quietly(ws, payload)

    async def close_all(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

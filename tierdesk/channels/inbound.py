"""The inbound side of the channel port over the Desk: every adapter's
customer messages, ratings and departures go through the same use cases."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from router.model import Channel
from router.services import IncomingMessage
from tierdesk.web import keys


class Inbound:
    def __init__(self, app: web.Application) -> None:
        self.app = app  # the Desk is made when the app starts

    async def message(self, channel: Channel, msg: IncomingMessage) -> dict[str, Any]:
        app = self.app
        hub = app[keys.CHANNELS]
        hub.note(channel)
        response = await app[keys.DESK].receive_message(channel.id, msg)
        if hub.wants_notices(channel.id):
            app[keys.DELIVERY_WAKE]()  # a bot answer or a handoff notice is in the outbox
        if response.get("action") == "queue_full":
            # The wait the customer would have, after the last one waiting:
            # as it stands now, so not stored with the answer.
            wait = (await hub.wait(response["skill"], response["queue_length"] + 1)).as_dict()
            response = response | {"expected_wait_seconds": wait["expected_wait_seconds"], "basis": wait["basis"]}
        return response

    async def rating(self, channel: Channel, conversation_id: str, rating: int | None, *,
                     resolved: bool = False, comment: str | None = None) -> None:
        self.app[keys.CHANNELS].note(channel)
        await self.app[keys.DESK].feedback(channel.id, conversation_id, rating, resolved, comment)

    async def left(self, channel: Channel, conversation_id: str) -> None:
        self.app[keys.CHANNELS].note(channel)
        await self.app[keys.DESK].close(channel.id, conversation_id)

    async def typing(self, channel: Channel, conversation_id: str) -> None:
        """The customer is typing: the agent holding the conversation is told
        (best effort, like every push to agents)."""
        desk = self.app[keys.DESK]
        conv = await desk.customer_conversation(channel.id, conversation_id)
        if conv is not None and conv.agent_id is not None:
            desk.notifier.to_agent(conv.agent_id, {"type": "customer_typing", "conversation_id": conv.id})

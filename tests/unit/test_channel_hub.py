"""The channel hub: what each kind of channel is sent, and how an outbox
item becomes one call of the channel port."""

from __future__ import annotations

from typing import Any

import pytest

from router.model import Channel
from storage.outbox import Delivery
from tierdesk.channels.hub import ChannelHub, NoAdapter


class Recorder:
    kind = "webhook"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def bot_answer(self, out: Any) -> None:
        self.calls.append(("bot_answer", out))

    async def agent_reply(self, out: Any) -> None:
        self.calls.append(("agent_reply", out))

    async def connecting(self, out: Any) -> None:
        self.calls.append(("connecting", out))

    async def out_of_hours(self, out: Any) -> None:
        self.calls.append(("out_of_hours", out))

    async def rating_request(self, out: Any) -> None:
        self.calls.append(("rating_request", out))

    async def queue_full(self, out: Any) -> None:
        self.calls.append(("queue_full", out))

    async def typing(self, out: Any) -> None:
        self.calls.append(("typing", out))


def hub_with(*channels: Channel) -> ChannelHub:
    hub = ChannelHub(None, None, lambda: None)
    for c in channels:
        hub.note(c)
    return hub


def test_what_each_kind_of_channel_is_sent() -> None:
    hub = hub_with(Channel("a", "a"), Channel("b", "b", notices=True), Channel("w", "w", kind="widget"),
                   Channel("m", "m", kind="matrix"))
    kinds = ("agent_message", "bot_answer", "handoff", "rating_request", "queue_full")
    assert [k for k in kinds if hub.wanted("a", k)] == ["agent_message"]
    assert [k for k in kinds if hub.wanted("b", k)] == list(kinds)
    assert [k for k in kinds if hub.wanted("w", k)] == ["agent_message", "rating_request"]
    assert [k for k in kinds if hub.wanted("m", k)] == list(kinds)
    assert [k for k in kinds if hub.wanted("unknown", k)] == ["agent_message"]


def delivery(payload: dict[str, Any], kind: str) -> Delivery:
    return Delivery(id=1, idempotency_key="key-1", channel_id="a", conversation_id="conv_1", kind=kind,
                    payload=payload, attempts=0, status="pending", last_error=None, created_at=0.0)


async def test_outbox_items_become_port_calls() -> None:
    channel = Channel("a", "a", notices=True)
    hub = hub_with(channel)
    rec = Recorder()
    hub.register(rec)
    base = {"conversation_id": "chat-1", "customer_id": "c1", "sent_at": 5.0}
    await hub.deliver(channel, delivery({**base, "type": "agent_message", "message_id": "msg_1", "text": "hi",
                                         "agent_id": "agt_1", "agent_name": "Ann"}, "agent_message"))
    await hub.deliver(channel, delivery({**base, "type": "handoff", "handoff_id": "ho_1", "reason": "needs_human",
                                         "skill": "billing", "agent_id": None, "queue_position": 2}, "handoff"))
    # a handoff whose skill is closed now (business hours): told when it opens instead
    await hub.deliver(channel, delivery({**base, "type": "out_of_hours", "handoff_id": "ho_2", "skill": "billing",
                                         "opens_at": 99.0, "timezone": "Asia/Shanghai"}, "out_of_hours"))
    await hub.deliver(channel, delivery({**base, "type": "rating_request", "handoff_id": "ho_1"}, "rating_request"))
    await hub.deliver(channel, delivery({**base, "type": "queue_full", "skill": "billing", "queue_length": 30,
                                         "queue_limit": 30, "in_reply_to": "m9"}, "queue_full"))
    assert [name for name, _ in rec.calls] == ["agent_reply", "connecting", "out_of_hours", "rating_request",
                                               "queue_full"]
    full = rec.calls[4][1]
    # The wait told is the one after the last customer waiting.
    assert (full.skill, full.queue_length, full.wait.position, full.to.conversation_id) == ("billing", 30, 31,
                                                                                            "chat-1")
    reply = rec.calls[0][1]
    assert (reply.to.conversation_id, reply.to.tierdesk_conversation_id, reply.key, reply.agent_name) == (
        "chat-1", "conv_1", "key-1", "Ann")
    connecting = rec.calls[1][1]
    assert connecting.wait.position == 2 and connecting.wait.seconds is None  # no estimator: unknown
    assert (rec.calls[2][1].opens_at, rec.calls[2][1].timezone) == (99.0, "Asia/Shanghai")


async def test_a_kind_without_an_adapter_here_is_retried_elsewhere() -> None:
    channel = Channel("m", "m", kind="matrix")
    with pytest.raises(NoAdapter):
        await hub_with(channel).deliver(channel, delivery({"type": "agent_message", "conversation_id": "!r",
                                                           "message_id": "m", "text": "t", "agent_id": "a",
                                                           "sent_at": 0.0}, "agent_message"))

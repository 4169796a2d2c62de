"""The sync messages a commit sends other instances (storage/notify.py):
each under PostgreSQL's NOTIFY limit, listing every id, and carrying each
conversation as committed so that it reads back as it was written."""

from __future__ import annotations

import orjson

from router.changes import Changes
from router.model import Conversation, ConversationStatus, Customer, Handoff, HandoffReason
from router.rollups import ConversationTally
from storage.notify import MAX_PAYLOAD, PgRelay, committed_elsewhere, created_keys, sync_notices
from storage.rows import BatchRows, ChangeRows


def _conversation(n: int, *, held: bool = True, name: str | None = None) -> Conversation:
    at = 1_767_225_600.0 + n / 3  # not exact in binary: it must come back bit for bit
    c = Conversation(id=f"conv_{n:04d}", channel_id="web", external_id=f"c{n}",
                     customer=Customer(f"cust-{n}", name, vip=n % 2 == 0), created_at=at, updated_at=at + 1,
                     status=ConversationStatus.QUEUED if held else ConversationStatus.BOT, bot_streak=n % 3,
                     handoff_count=1 if held else 0, version=n)
    if held:
        c.handoff = Handoff(id=f"ho_{n:04d}", conversation_id=c.id, channel_id="web", seq=1,
                            reason=HandoffReason.NEEDS_HUMAN, skill="billing", requested_at=at + 0.5,
                            vip=n % 2 == 0, weight=2 if n % 2 == 0 else 1)
    c.tally = ConversationTally("web")
    c.tally.episode_start = at
    c.tally.awaiting_bot = {f"m{n}": at + 0.25}
    return c


def _rows(conversations: list[Conversation], *, write_handoffs: bool = True) -> BatchRows:
    changes = Changes()
    for c in conversations:
        c.version -= 1  # recording the change takes it to its version again
        changes.conversation(c)
        if c.handoff is not None and write_handoffs:
            changes.handoff(c.handoff)
        changes.tallies[c.id] = c.tally.snapshot()
    return BatchRows.of([ChangeRows.of(changes)])


def _fields(c: Conversation) -> tuple[object, ...]:
    return (c.id, c.channel_id, c.external_id, c.customer, c.created_at, c.status, c.updated_at, c.bot_streak,
            c.handoff_count, c.handoff, c.version, c.rating, c.message_offer, c.tally.snapshot())


def test_each_conversation_comes_back_as_committed_and_every_notice_fits() -> None:
    sent = [_conversation(n, held=n % 4 != 0) for n in range(1, 41)]
    notices = sync_notices("instance-a", _rows(sent), ["agent_1", "agent_2"])
    assert len(notices) > 1  # forty conversations do not fit in one
    assert all(len(n.encode()) <= MAX_PAYLOAD for n in notices)
    messages = [orjson.loads(n) for n in notices]
    assert all(m["kind"] == "sync" and m["origin"] == "instance-a" for m in messages)
    assert [i for m in messages for i in m["conversations"]] == [c.id for c in sent]
    assert [i for m in messages for i in m["held"]] == [c.id for c in sent if c.handoff is not None]
    assert [i for m in messages for i in m["agents"]] == ["agent_1", "agent_2"]
    # Stored for the first time (decided on version 0): conversation 1 only.
    assert [k for m in messages for k in created_keys(m)] == [("web", "c1")]
    received = [c for m in messages for c in committed_elsewhere(m)]
    assert [_fields(r.conversation) for r in received] == [_fields(c) for c in sent]
    assert [r.base_version for r in received] == [c.version - 1 for c in sent]
    assert [r.handoff_id for r in received] == [c.handoff.id if c.handoff else None for c in sent]


def test_a_handoff_the_commit_did_not_write_is_named_but_not_carried() -> None:
    [received] = committed_elsewhere(orjson.loads(sync_notices("a", _rows([_conversation(7)], write_handoffs=False),
                                                               [])[0]))
    assert received.conversation.handoff is None and received.handoff_id == "ho_0007"


def test_a_conversation_too_large_for_a_notice_goes_by_id_alone() -> None:
    big = _conversation(2, name="x" * MAX_PAYLOAD)
    notices = sync_notices("a", _rows([_conversation(1), big, _conversation(3)]), [])
    assert all(len(n.encode()) <= MAX_PAYLOAD for n in notices)
    messages = [orjson.loads(n) for n in notices]
    assert [i for m in messages for i in m["held"]] == ["conv_0001", "conv_0002", "conv_0003"]
    assert [r.conversation.id for m in messages for r in committed_elsewhere(m)] == ["conv_0001", "conv_0003"]


def test_what_does_not_read_as_this_version_writes_it_is_left_to_be_read_by_id() -> None:
    message = orjson.loads(sync_notices("a", _rows([_conversation(1), _conversation(2), _conversation(3)]), [])[0])
    entries = message["committed"]
    entries[0][1][-1] = ["a tally format of another version"]
    entries[1][2][0] = "ho_someone_else"  # not the conversation's handoff
    entries.append("not an entry")
    entries.append([1, ["too", "short"], None])
    assert [r.conversation.id for r in committed_elsewhere(message)] == ["conv_0003"]
    assert committed_elsewhere({"kind": "sync", "conversations": ["conv_0001"]}) == []  # an earlier version's
    assert created_keys({"created": [["web", "c1"], ["web"], [1, "c2"], "web/c3"]}) == [("web", "c1")]
    assert created_keys({"kind": "sync"}) == []


def test_only_the_conversations_the_receiver_keeps_are_built() -> None:
    sent = [_conversation(1), _conversation(2, held=False), _conversation(3, held=False)]
    message = orjson.loads(sync_notices("a", _rows(sent), [])[0])
    asked: list[tuple[str, bool]] = []

    def keeps(conversation_id: str, held: bool) -> bool:
        asked.append((conversation_id, held))
        return held or conversation_id == "conv_0003"

    assert [r.conversation.id for r in committed_elsewhere(message, keeps)] == ["conv_0001", "conv_0003"]
    assert asked == [("conv_0001", True), ("conv_0002", False), ("conv_0003", False)]


def test_a_relay_passes_on_what_others_send_and_not_its_own_sync_messages() -> None:
    heard: list[dict[str, object]] = []
    relay = PgRelay("postgresql://127.0.0.1/none", "instance-a", heard.append)
    own = sync_notices("instance-a", _rows([_conversation(1)]), [])[0]
    other = sync_notices("instance-b", _rows([_conversation(1)]), [])[0]
    push = orjson.dumps({"kind": "push", "agent_id": "agent_1", "origin": "instance-b"}).decode()
    own_push = orjson.dumps({"kind": "push", "agent_id": "agent_1", "origin": "instance-a"}).decode()
    assert own.startswith(relay._own_sync)  # skipped before it is parsed
    for payload in (own, other, push, own_push):
        relay._received(None, 0, "tierdesk_events", payload)
    assert [(m["kind"], m["origin"]) for m in heard] == [("sync", "instance-b"), ("push", "instance-b")]

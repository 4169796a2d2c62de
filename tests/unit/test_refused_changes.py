"""Which changes of a refused batch writing them one by one would refuse
(storage/rows.py ``refused_changes``): the PostgreSQL writer names them so
that the others are written together."""

from __future__ import annotations

from router.changes import Changes
from router.model import Conversation, Customer
from storage.rows import BatchRows, CapacityRefused, ChangeRows, ConversationChanged, refused_changes


def change(conversation: str | None = None, **load: int) -> ChangeRows:
    c = Changes()
    if conversation is not None:
        c.conversation(Conversation(id=conversation, channel_id="ch", external_id=conversation,
                                    customer=Customer("u", None, False), created_at=1.0, updated_at=1.0))
    for agent_id, d in load.items():
        c.load(agent_id, d)
    return ChangeRows.of(c)


class Loads:
    """The stored (open count, capacity) of agents, and who asked for which."""

    def __init__(self, **stored: tuple[int, int]) -> None:
        self.stored = stored
        self.asked: list[list[str]] = []

    def __call__(self, agent_ids: list[str]) -> dict[str, tuple[int, int]]:
        self.asked.append(agent_ids)
        return {a: self.stored[a] for a in agent_ids if a in self.stored}


def test_every_change_to_a_conversation_changed_elsewhere_is_refused() -> None:
    batch = [change("c1"), change("c2"), change("c3"), change("c2")]
    rows = BatchRows.of(batch)
    loads = Loads()
    refused = refused_changes(batch, rows, written={"c1", "c3"}, moved=set(), loads=loads)
    assert sorted(refused) == [1, 3]
    assert all(isinstance(why, ConversationChanged) and why.conversation_id == "c2" for why in refused.values())
    assert loads.asked == []  # no agent was refused: nothing read


def test_additions_are_refused_in_order_as_writing_one_at_a_time_would() -> None:
    # a1 holds 0 of 1: the first addition fits, the second does not; a slot
    # freed after it lets the fourth in; a2 took its whole share (moved).
    batch = [change(a1=1), change(a1=1, a2=1), change(a1=-1), change(a1=1), change(a2=1)]
    rows = BatchRows.of(batch)
    loads = Loads(a1=(0, 1), a2=(0, 5))
    refused = refused_changes(batch, rows, written=set(), moved={"a2"}, loads=loads)
    assert list(refused) == [1]
    assert isinstance(refused[1], CapacityRefused) and refused[1].agent_id == "a1"
    assert loads.asked == [["a1"]]


def test_additions_for_an_agent_no_longer_stored_are_all_refused() -> None:
    batch = [change(gone=1), change("c1"), change(gone=2)]
    refused = refused_changes(batch, BatchRows.of(batch), written={"c1"}, moved=set(), loads=Loads())
    assert sorted(refused) == [0, 2]


def test_nothing_is_named_when_every_change_fits_over_what_is_stored_now() -> None:
    # The batch's addition was refused, but by the time the loads are read
    # another writer freed the slot: the writer then falls back to its check.
    batch = [change(a1=1)]
    assert refused_changes(batch, BatchRows.of(batch), written=set(), moved=set(), loads=Loads(a1=(0, 1))) == {}

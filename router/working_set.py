"""The Desk's working set: the conversations and agents it holds in memory,
read from the store, kept in step with it (commits in flight, a failed
commit's repair, changes made by other instances) and evicted when the
cache is full. The use cases are in router/services.py (the Desk); this is
the machinery under them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from router.errors import InvalidInput, NotFound, Unavailable

from .changes import Changes, CommittedElsewhere
from .conversation_cache import ConversationCache, key_of
from .ids import new_id
from .model import Conversation, Customer, Tier
from .ports import DuplicateMessage
from .rollups import ConversationTally
from .routing import Dispatcher


@dataclass(slots=True)
class _Effects:
    """What to announce once the commit is durable."""

    notices: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def to_agent(self, agent_id: str, payload: dict[str, Any]) -> None:
        self.notices.append((agent_id, payload))


def _tally_of(conv: Conversation) -> ConversationTally:
    """The conversation's tally; a new conversation's starts empty."""
    if conv.tally is None:
        conv.tally = ConversationTally(conv.channel_id)
    return conv.tally


class WorkingSet:
    """Mixed into the Desk, which provides ``store``, ``dispatcher``,
    ``config``, ``clock`` and ``notifier``, and ``_rebalance`` (assign what
    waits after a reload)."""

    def _init_working_set(self) -> None:
        self.generation = 0
        self._conversations = ConversationCache(self.config.conversation_cache_size)
        self._by_id: dict[str, Conversation] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[Conversation | None]] = {}
        self._pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._in_flight: dict[str, int] = {}  # conversation id -> uncommitted changes
        self._in_use: dict[str, int] = {}  # conversation id -> messages being decided on it
        # Per agent, uncommitted changes touching them, and commits of them
        # landed: a refresh must not overwrite what memory has ahead of the
        # database, nor a value its read raced.
        self._agents_in_flight: dict[str, int] = {}
        self._load_in_flight: dict[str, int] = {}  # agent id -> uncommitted load deltas
        self._agent_commits: dict[str, int] = {}
        # Changed by other instances, to read afresh (changed_elsewhere).
        self._stale_conversations: set[str] = set()
        self._stale_agents: set[str] = set()
        # Changed elsewhere while a commit of ours on them was in flight: read
        # once ours has landed (or been refused).
        self._deferred_conversations: set[str] = set()
        # As other instances' commits left them, in commit order, to take
        # without a read where memory holds the version each was decided on.
        self._committed_elsewhere: list[CommittedElsewhere] = []
        self._deferred_agents: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._stopped = False
        # Until the working set is read: all of it (_whole), or only what a
        # failed commit left ahead of the database (the dirty ids).
        self._ready = False
        self._whole = True
        self._drops = 0
        self._dirty_conversations: set[str] = set()
        self._dirty_agents: set[str] = set()
        self._reload_lock = asyncio.Lock()


    async def _rebalance(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    async def start(self) -> None:
        """Read the working set from the store (again, if started before)."""
        self._ready, self._whole = False, True
        await self._ensure_ready()

    async def ensure_ready(self) -> None:
        """Before reading agents or the queue: reload them if a failure (or a
        failed start) dropped them."""
        await self._ensure_ready()

    async def _ensure_ready(self) -> None:
        repaired = False
        while not self._ready:
            async with self._reload_lock:
                if self._ready:
                    break  # another request did it while this one waited
                drops = self._drops
                if self._whole:
                    await self._load_everything()
                else:
                    await self._repair()
                repaired = True
                # A failure while reading: what it dropped is read next time round.
                self._ready = drops == self._drops
        if repaired:
            await self._rebalance()

    async def _load_everything(self) -> None:
        agents = await self.store.load_agents()
        open_conversations = await self.store.load_open_conversations()
        self._conversations.clear()
        self._by_id.clear()
        self.dispatcher = Dispatcher(agents, fallback=self.config.fallback)
        for c in open_conversations:
            self._remember(c)
        self._whole = False
        self._dirty_conversations.clear()
        self._dirty_agents.clear()

    async def _repair(self) -> None:
        """Read again what a failed commit left ahead of the database, and
        only that: with many handoffs open, reading everything is what took
        long enough for the next refusal to arrive."""
        conversation_ids, agent_ids = set(self._dirty_conversations), set(self._dirty_agents)
        agents = {a.id: a for a in await self.store.load_agents(agent_ids)} if agent_ids else {}
        stored = ({c.id: c for c in await self.store.load_conversations_by_id(conversation_ids)}
                  if conversation_ids else {})
        for aid in agent_ids:
            if aid in agents:
                self.dispatcher.refresh_agent(agents[aid])
            else:
                self.dispatcher.agents.pop(aid, None)  # its creation was refused
        for cid in conversation_ids:
            old = self._by_id.pop(cid, None)
            if old is not None:
                if old.handoff is not None:
                    self.dispatcher.forget(old.handoff)
                # The key may hold another copy by now: the same conversation
                # as another instance created it, which is the one stored.
                self._conversations.discard(key_of(old), old)
            c = stored.get(cid)
            if c is not None:
                if old is not None:
                    c.answers = old.answers  # every one given was stored
                self._remember(c)
        self._dirty_conversations -= conversation_ids
        self._dirty_agents -= agent_ids

    def invalidate(self) -> None:
        """Anything in memory may be wrong (changes by others were missed, the
        database was away): read everything again before the next use case,
        and commit nothing decided before."""
        self.generation += 1
        self._drops += 1
        self._ready = False
        self._whole = True

    def commit_failed(self) -> None:
        """Called synchronously by the store when a batch fails (not a
        refusal: the database failed), before any waiter wakes: every change
        in flight failed, so what they touched is read again, and nothing
        decided on the old state is committed after it."""
        self.generation += 1
        self._drop(self._in_flight, self._agents_in_flight)

    def _drop(self, conversation_ids: Iterable[str], agent_ids: Iterable[str]) -> None:
        """These are ahead of the database: read them again before the next
        use case. What else was decided meanwhile stands or falls by the
        database's own guards (versions, capacity)."""
        self._drops += 1
        self._ready = False
        self._dirty_conversations.update(conversation_ids)
        self._dirty_agents.update(agent_ids)

    async def _begin(self) -> int:
        await self._ensure_ready()
        return self.generation

    def conversations_in_memory(self) -> int:
        return len(self._conversations)

    def _remember(self, c: Conversation) -> None:
        self._conversations.put(c)
        self._by_id[c.id] = c
        if c.handoff is not None and c.handoff.is_open:
            # The dispatcher knows every open handoff in memory, queued or
            # held: the queue figures and the agents' conversations are read
            # from it, not from a walk of the cache.
            self.dispatcher.track(c.handoff)
        # What has a commit in flight stays too: memory is ahead of the database.
        for gone in self._conversations.evict(key_of(c), self._busy):
            self._by_id.pop(gone.id, None)

    def _busy(self, c: Conversation) -> bool:
        return bool(self._in_flight.get(c.id) or self._in_use.get(c.id))

    async def _conversation(self, channel_id: str, external_id: str, customer: Customer) -> Conversation:
        key = (channel_id, external_id)
        while True:
            if not self._ready:  # a coroutine less per message when it is (nearly always)
                await self._ensure_ready()
            c = self._conversations.use(key)
            if c is not None:
                return c
            loading = self._loading.get(key)
            if loading is not None:
                # Whatever became of that load (done, failed, superseded by a
                # reload), look again from the top.
                await asyncio.wait([loading])
                continue
            fut: asyncio.Future[Conversation | None] = asyncio.get_running_loop().create_future()
            self._loading[key] = fut
            generation = self.generation
            try:
                c = await self.store.load_conversation(channel_id, external_id)
                if generation != self.generation:
                    fut.set_result(None)  # superseded: waiters look again
                    continue
                if c is None:
                    now = self.clock.now()
                    c = Conversation(
                        id=new_id("conv"), channel_id=channel_id, external_id=external_id,
                        customer=customer, created_at=now, updated_at=now,
                    )
                self._remember(c)
                fut.set_result(c)
                return c
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()  # retrieved here; waiters retry the load themselves
                raise
            finally:
                self._loading.pop(key, None)

    async def _conversation_by_id(self, conversation_id: str) -> Conversation:
        await self._ensure_ready()
        c = self._by_id.get(conversation_id)
        if c is not None:
            return c
        generation = self.generation
        loaded = await self.store.load_conversation_by_id(conversation_id)
        if loaded is None:
            raise NotFound(f"conversation {conversation_id!r} does not exist")
        if generation != self.generation:
            return await self._conversation_by_id(conversation_id)
        # Someone may have loaded it while we awaited; keep the first copy.
        c = self._by_id.get(conversation_id)
        if c is None:
            self._remember(loaded)
            c = loaded
        return c

    def _tally(self, changes: Changes) -> None:
        """Turn the events into metric rollup increments, in the same commit,
        and store each changed conversation's tally with it: whoever reads the
        conversation next (another instance, this one after a restart) takes
        the tally from there and needs none of its events."""
        sla = self.config.sla
        for e in changes.events:
            conv = self._by_id.get(e.conversation_id)
            if conv is None:  # pragma: no cover - every event's conversation is in play
                continue
            _tally_of(conv).apply(e, sla, changes.rollup)
            if e.conversation_id not in changes.conversations:
                # Its stored tally would fall behind its events otherwise.
                changes.conversation(conv)
        for cid in changes.conversations:
            conv = self._by_id.get(cid)
            if conv is not None:
                changes.tallies[cid] = _tally_of(conv).snapshot()

    @staticmethod
    def _agents_of(changes: Changes) -> set[str]:
        return {*changes.load_deltas, *changes.agents, *(a.id for a in changes.new_agents)}

    async def _commit(self, changes: Changes, touched: Iterable[Conversation], effects: _Effects) -> None:
        if changes.generation != self.generation:
            # Decided on objects of a working set that has been dropped since;
            # they are mutated already, so read them again.
            self._drop({*(c.id for c in touched), *changes.conversations}, self._agents_of(changes))
            raise Unavailable("state was reloaded while deciding; retry")
        self._tally(changes)
        ids = list({*(c.id for c in touched), *changes.conversations})
        for cid in ids:
            self._in_flight[cid] = self._in_flight.get(cid, 0) + 1
        agent_ids = self._agents_of(changes)
        for aid in agent_ids:
            self._agents_in_flight[aid] = self._agents_in_flight.get(aid, 0) + 1
        for aid, d in changes.load_deltas.items():
            self._load_in_flight[aid] = self._load_in_flight.get(aid, 0) + d
        try:
            await self.store.commit(changes)
        except DuplicateMessage:
            # Memory took the message as new (the channel reused an id, or
            # another instance stored it first); the store kept the original.
            self._drop(ids, agent_ids)
            raise
        except (Unavailable, InvalidInput):
            self._drop(ids, agent_ids)
            raise
        except Exception as exc:
            self._drop(ids, agent_ids)
            raise Unavailable("the change could not be stored; retry") from exc
        finally:
            for cid in ids:
                n = self._in_flight.get(cid, 0) - 1
                if n > 0:
                    self._in_flight[cid] = n
                else:
                    self._in_flight.pop(cid, None)
                    if cid in self._deferred_conversations:
                        self._deferred_conversations.discard(cid)
                        self.changed_elsewhere((cid,), (), ())
            for aid, d in changes.load_deltas.items():
                self._load_in_flight[aid] -= d
            for aid in agent_ids:
                self._agent_commits[aid] = self._agent_commits.get(aid, 0) + 1
                n = self._agents_in_flight.get(aid, 0) - 1
                if n > 0:
                    self._agents_in_flight[aid] = n
                else:
                    self._agents_in_flight.pop(aid, None)
                    if aid in self._deferred_agents:
                        self._deferred_agents.discard(aid)
                        self.changed_elsewhere((), (), (aid,))
        for agent_id, payload in effects.notices:
            self.notifier.to_agent(agent_id, payload)


    # ------------------------------------------------------ other instances
    def changed_elsewhere(self, conversations: Iterable[str], held: Iterable[str],
                          agents: Iterable[str], committed: Iterable[CommittedElsewhere] = ()) -> None:
        """Another instance committed changes to these conversations (``held``:
        those the human tier holds now, which every instance keeps in memory)
        and agents: take them as ``committed`` carries them, or read them
        afresh, then route what can be routed."""
        committed = list(committed)
        carried = {c.conversation.id for c in committed}
        self._committed_elsewhere += committed
        self._stale_conversations.update(c for c in conversations if c in self._by_id and c not in carried)
        self._stale_conversations.update(c for c in held if c not in carried)
        self._stale_agents.update(agents)
        if (self._stale_conversations or self._stale_agents or self._committed_elsewhere) and not self._stopped and (
                self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.create_task(self._refresh(), name="desk-refresh")

    def keeps(self, conversation_id: str, held: bool) -> bool:
        """Whether a change another instance made to this conversation
        concerns this one: the human tier's are kept by every instance, the
        others only while in memory."""
        return held or conversation_id in self._by_id

    async def stop_refreshing(self) -> None:
        """At shutdown: the relay may still deliver while the store closes."""
        self._stopped = True
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.wait([self._refresher])

    async def _refresh(self) -> None:
        while self._stale_conversations or self._stale_agents or self._committed_elsewhere:
            conversation_ids, self._stale_conversations = self._stale_conversations, set()
            agent_ids, self._stale_agents = self._stale_agents, set()
            committed, self._committed_elsewhere = self._committed_elsewhere, []
            try:
                await self._refresh_from_store(conversation_ids, agent_ids, committed)
            except Exception:  # noqa: BLE001 - the database is away: read everything when it is back
                self.invalidate()
                self._stale_conversations.clear()
                self._stale_agents.clear()
                self._committed_elsewhere.clear()
                return

    async def _refresh_from_store(self, conversation_ids: set[str], agent_ids: set[str],
                                  committed: list[CommittedElsewhere]) -> None:
        await self._ensure_ready()
        gen = self.generation
        for c in committed:
            if not self._take_committed(c):
                conversation_ids.add(c.conversation.id)
        landed = {a: self._agent_commits.get(a, 0) for a in agent_ids}
        agents = await self.store.load_agents(agent_ids) if agent_ids else []
        conversations = await self.store.load_conversations_by_id(conversation_ids) if conversation_ids else []
        if gen != self.generation:
            return  # reloaded meanwhile: everything was read afresh
        for a in agents:
            if self._agents_in_flight.get(a.id) or self._agent_commits.get(a.id, 0) != landed[a.id]:
                # Memory is ahead of what was read, or a commit of ours raced
                # the read: read again once ours have landed. Meanwhile never
                # count fewer conversations than the database says the agent
                # holds plus ours on the way: counting too few is what gets
                # an assignment refused (too many only delays one until then).
                mine = self.dispatcher.agents.get(a.id)
                if mine is not None:
                    mine.open_count = max(mine.open_count, a.open_count + self._load_in_flight.get(a.id, 0))
                if self._agents_in_flight.get(a.id):
                    self._deferred_agents.add(a.id)
                else:
                    self._stale_agents.add(a.id)
                continue
            self.dispatcher.refresh_agent(a)
        for c in conversations:
            self._take_stored(c)
        await self._rebalance()

    def _take_committed(self, c: CommittedElsewhere) -> bool:
        """Take a conversation as another instance's commit left it; False
        when it must be read instead: memory missed a change before that
        commit, or the notice lacks a handoff memory does not hold."""
        stored = c.conversation
        old = self._by_id.get(stored.id)
        if old is None:
            if stored.tier is not Tier.HUMAN:
                return True  # not kept here
        elif self._in_flight.get(stored.id) or old.version >= stored.version:
            self._take_stored(stored)  # does nothing, or defers a read
            return True
        elif old.version != c.base_version:
            return False
        if stored.handoff is None and c.handoff_id is not None:
            # The commit left the handoff as it was, so the copy memory holds
            # at the commit's base version is the stored one.
            if old is None or old.handoff is None or old.handoff.id != c.handoff_id:
                return False
            stored.handoff = old.handoff
        self._take_stored(stored)
        return True

    def _take_stored(self, stored: Conversation) -> None:
        """Put a conversation as the database has it now in place of ours."""
        old = self._by_id.get(stored.id)
        if old is not None:
            if old.version >= stored.version:
                return  # ours is as new (its commit may be on the way)
            if self._in_flight.get(stored.id):
                # Ours is on the way: refused, or landed before theirs was
                # decided on it. Either way, read it again once it is back.
                self._deferred_conversations.add(stored.id)
                return
            if old.handoff is not None:
                self.dispatcher.forget(old.handoff)
            # Read without them (they are many, and rarely asked for again);
            # a retry of one another instance gave is recognised on commit.
            stored.answers = old.answers
            self._conversations.put(stored)
            self._by_id[stored.id] = stored
            if stored.handoff is not None and stored.handoff.is_open:
                self.dispatcher.track(stored.handoff)
        elif stored.tier is Tier.HUMAN:
            self._remember(stored)


"""Channels and the credentials (hashed tokens) of channels, agents and staff."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from router.model import Channel, Principal, Role

# A token is named by the start of its hash: enough to tell tokens apart in
# a listing and to revoke one, useless for signing in.
TOKEN_ID_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Credential:
    token_id: str
    role: Role
    subject_id: str | None
    created_at: float
    revoked_at: float | None

from . import tables as t
from .engine import Engines


class Accounts:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def create_channel(self, channel: Channel) -> Channel:
        async with self.engines.writing() as conn:
            await conn.execute(t.channels.insert().values(
                id=channel.id, name=channel.name, webhook_url=channel.webhook_url,
                webhook_secret=channel.webhook_secret, created_at=channel.created_at,
                require_signature=channel.require_signature, kind=channel.kind, notices=channel.notices,
            ))
        return channel

    async def set_webhook_url(self, channel_id: str, url: str | None) -> None:
        async with self.engines.writing() as conn:
            await conn.execute(update(t.channels).where(t.channels.c.id == channel_id).values(webhook_url=url))

    async def channel(self, channel_id: str) -> Channel | None:
        async with self.engines.reading() as conn:
            r = (await conn.execute(select(t.channels).where(t.channels.c.id == channel_id))).mappings().first()
        return None if r is None else Channel(**dict(r))

    async def channels(self) -> list[Channel]:
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(t.channels).order_by(t.channels.c.created_at))).mappings().all()
        return [Channel(**dict(r)) for r in rows]

    async def add_credential(self, token_hash: str, principal: Principal, now: float) -> None:
        async with self.engines.writing() as conn:
            await conn.execute(t.credentials.insert().values(
                token_hash=token_hash, role=principal.role.value, subject_id=principal.subject_id, created_at=now,
            ))

    async def revoke_credentials(self, principal: Principal, now: float) -> int:
        async with self.engines.writing() as conn:
            result = await conn.execute(
                update(t.credentials)
                .where(t.credentials.c.role == principal.role.value,
                       t.credentials.c.subject_id == principal.subject_id,
                       t.credentials.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        return result.rowcount

    async def principal(self, token_hash: str) -> Principal | None:
        async with self.engines.reading() as conn:
            r = (await conn.execute(
                select(t.credentials.c.role, t.credentials.c.subject_id).where(
                    t.credentials.c.token_hash == token_hash, t.credentials.c.revoked_at.is_(None)
                )
            )).first()
        return None if r is None else Principal(Role(r[0]), r[1])

    async def update_channel(self, channel_id: str, **values: Any) -> Channel | None:
        async with self.engines.writing() as conn:
            result = await conn.execute(update(t.channels).where(t.channels.c.id == channel_id).values(**values))
        if result.rowcount == 0:
            return None
        return await self.channel(channel_id)

    async def credentials(self, role: Role | None = None, subject_id: str | None = None,
                          include_revoked: bool = False, limit: int = 1000) -> list[Credential]:
        c = t.credentials
        q = select(c).order_by(c.c.created_at, c.c.token_hash).limit(limit)
        if role is not None:
            q = q.where(c.c.role == role.value)
        if subject_id is not None:
            q = q.where(c.c.subject_id == subject_id)
        if not include_revoked:
            q = q.where(c.c.revoked_at.is_(None))
        async with self.engines.reading() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Credential(r["token_hash"][:TOKEN_ID_LENGTH], Role(r["role"]), r["subject_id"], r["created_at"],
                           r["revoked_at"]) for r in rows]

    async def revoke_token(self, token_id: str, now: float) -> Principal | None:
        """Revoke the one live token whose hash starts with ``token_id``;
        returns whose it was (None if there is no such live token)."""
        c = t.credentials
        async with self.engines.writing() as conn:
            rows = (await conn.execute(select(c.c.token_hash, c.c.role, c.c.subject_id).where(
                c.c.token_hash.startswith(token_id, autoescape=True), c.c.revoked_at.is_(None)))).all()
            if len(rows) != 1:
                return None
            await conn.execute(update(c).where(c.c.token_hash == rows[0][0]).values(revoked_at=now))
        return Principal(Role(rows[0][1]), rows[0][2])

    async def live_token_hashes(self, hashes: Collection[str]) -> set[str]:
        """Those of ``hashes`` that are still good (not revoked)."""
        if not hashes:
            return set()
        c = t.credentials
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(c.c.token_hash).where(
                c.c.token_hash.in_(list(hashes)), c.c.revoked_at.is_(None)))).all()
        return {r[0] for r in rows}

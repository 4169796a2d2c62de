"""Channels and the credentials (hashed tokens) of channels, agents and staff."""

from __future__ import annotations

from sqlalchemy import select, update

from router.model import Channel, Principal, Role

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
                require_signature=channel.require_signature,
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

"""People (console accounts) and their signed-in browsers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from router.model import Person, Role

from . import tables as t
from .engine import Engines


def _person(r: Any) -> Person:
    return Person(id=r["id"], email=r["email"], name=r["name"], role=Role(r["role"]), agent_id=r["agent_id"],
                  created_at=r["created_at"], disabled_at=r["disabled_at"])


_PERSON_COLUMNS = [c for c in t.people.c if c.name != "password_hash"]


class People:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def create(self, person: Person, password_hash: str) -> Person:
        async with self.engines.writing() as conn:
            await conn.execute(t.people.insert().values(
                id=person.id, email=person.email, name=person.name, role=person.role.value,
                password_hash=password_hash, agent_id=person.agent_id, created_at=person.created_at,
                disabled_at=person.disabled_at,
            ))
        return person

    async def get(self, person_id: str) -> Person | None:
        async with self.engines.reading() as conn:
            r = (await conn.execute(select(*_PERSON_COLUMNS).where(t.people.c.id == person_id))).mappings().first()
        return None if r is None else _person(r)

    async def by_email(self, email: str) -> tuple[Person, str] | None:
        """The person and their password hash, for signing in."""
        async with self.engines.reading() as conn:
            r = (await conn.execute(select(t.people).where(t.people.c.email == email))).mappings().first()
        return None if r is None else (_person(r), r["password_hash"])

    async def by_agent(self, agent_id: str) -> list[Person]:
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(*_PERSON_COLUMNS).where(t.people.c.agent_id == agent_id))).mappings()
            return [_person(r) for r in rows.all()]

    async def all(self) -> list[Person]:
        async with self.engines.reading() as conn:
            rows = (await conn.execute(select(*_PERSON_COLUMNS).order_by(t.people.c.created_at, t.people.c.id)))
            return [_person(r) for r in rows.mappings().all()]

    async def update(self, person_id: str, **values: Any) -> None:
        if "role" in values and isinstance(values["role"], Role):
            values["role"] = values["role"].value
        async with self.engines.writing() as conn:
            await conn.execute(update(t.people).where(t.people.c.id == person_id).values(**values))

    # ------------------------------------------------------------ sessions
    async def add_session(self, id_hash: str, person_id: str, now: float, expires_at: float) -> None:
        async with self.engines.writing() as conn:
            await conn.execute(t.sessions.insert().values(id_hash=id_hash, person_id=person_id, created_at=now,
                                                          expires_at=expires_at))

    async def session(self, id_hash: str, now: float) -> tuple[Person, float] | None:
        """Who a live session belongs to, and when it expires: none once it
        is revoked or expired, or its person is disabled."""
        query = (select(*_PERSON_COLUMNS, t.sessions.c.expires_at)
                 .select_from(t.sessions.join(t.people, t.people.c.id == t.sessions.c.person_id))
                 .where(t.sessions.c.id_hash == id_hash, t.sessions.c.revoked_at.is_(None),
                        t.sessions.c.expires_at > now, t.people.c.disabled_at.is_(None)))
        async with self.engines.reading() as conn:
            r = (await conn.execute(query)).mappings().first()
        return None if r is None else (_person(r), r["expires_at"])

    async def end_sessions(self, now: float, *, id_hash: str | None = None, person_id: str | None = None) -> int:
        """Revoke one session, or every live session of a person."""
        where = [t.sessions.c.revoked_at.is_(None)]
        if id_hash is not None:
            where.append(t.sessions.c.id_hash == id_hash)
        if person_id is not None:
            where.append(t.sessions.c.person_id == person_id)
        async with self.engines.writing() as conn:
            result = await conn.execute(update(t.sessions).where(*where).values(revoked_at=now))
        return result.rowcount

    async def session_count(self, person_id: str, now: float) -> int:
        async with self.engines.reading() as conn:
            rows = await conn.execute(select(t.sessions.c.id_hash).where(
                t.sessions.c.person_id == person_id, t.sessions.c.revoked_at.is_(None),
                t.sessions.c.expires_at > now))
            return len(rows.all())

"""One instance at a time ends idle conversations (storage/lease.py)."""

from __future__ import annotations

from storage.engine import create_engines
from storage.lease import SweepLease


async def test_one_postgresql_instance_leads_the_sweep_and_another_takes_over(postgres_database: str) -> None:
    engines = [create_engines(postgres_database) for _ in range(2)]
    first, second = (SweepLease(e) for e in engines)
    try:
        assert await first.held()
        assert not await second.held()
        assert await first.held()  # kept, round after round
        await first.close()  # the instance stops (or loses its connection)
        assert await second.held()
        assert not await first.held()
    finally:
        for lease, e in ((first, engines[0]), (second, engines[1])):
            await lease.close()
            await e.dispose()


async def test_sqlite_always_sweeps(tmp_path, sqlite_template) -> None:  # type: ignore[no-untyped-def]
    import shutil

    path = tmp_path / "t.db"
    shutil.copy(sqlite_template, path)
    engines = create_engines(f"sqlite:///{path}")
    lease = SweepLease(engines)
    try:
        assert await lease.held()
    finally:
        await lease.close()
        await engines.dispose()

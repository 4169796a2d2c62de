"""How database errors become the product's (storage/engine.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from storage.engine import _translated
from tierdesk.errors import Conflict, Unavailable


class DriverError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["40P01", "40001", "55P03"])
async def test_a_transaction_another_one_got_in_the_way_of_is_a_conflict(sqlstate: str) -> None:
    # A deadlock between two instances' batches: written again change by
    # change by the group committer, not failed with everything queued.
    with pytest.raises(Conflict) as caught:
        async with _translated():
            raise exc.OperationalError("UPDATE agents ...", {}, DriverError(sqlstate))
    assert caught.value.code == "write_contention"


@pytest.mark.parametrize("sqlstate", ["08006", "57P01", None])
async def test_other_database_errors_are_unavailable(sqlstate: str | None) -> None:
    with pytest.raises(Unavailable):
        async with _translated():
            raise exc.OperationalError("SELECT 1", {}, DriverError(sqlstate))


async def test_a_clash_with_existing_data_is_a_conflict() -> None:
    with pytest.raises(Conflict):
        async with _translated():
            raise exc.IntegrityError("INSERT ...", {}, DriverError("23505"))

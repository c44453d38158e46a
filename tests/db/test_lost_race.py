"""Which database errors mean "lost a race, run it again": a real deadlock on PostgreSQL."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from luxfact.db.engine import Database
from luxfact.db.errors import lost_race
from luxfact.settings import Settings
from tests.conftest import Hospitals

LOCK = text("SELECT id FROM tenants WHERE id = :id FOR UPDATE")


@pytest.mark.postgres
async def test_a_deadlock_is_a_lost_race_and_other_errors_are_not(
    settings: Settings, hospitals: Hospitals
) -> None:
    db = Database(settings.database_url, pool_size=2)
    a, b = hospitals.a.id, hospitals.b.id
    both_hold_one = asyncio.Barrier(2)

    async def lock(first: object, second: object) -> BaseException | None:
        try:
            async with db.transaction() as session:
                await session.execute(LOCK, {"id": first})
                await both_hold_one.wait()
                await session.execute(LOCK, {"id": second})
        except DBAPIError as exc:
            return exc
        return None

    try:
        outcomes = await asyncio.wait_for(asyncio.gather(lock(a, b), lock(b, a)), 30)
        errors = [e for e in outcomes if e is not None]
        # PostgreSQL breaks the cycle by rolling one of the two back; the other goes on.
        assert len(errors) == 1 and lost_race(errors[0])
        async with db.transaction() as session:
            with pytest.raises(DBAPIError) as duplicate:
                await session.execute(text("INSERT INTO tenants (id) SELECT id FROM tenants "
                                           "LIMIT 1"))
        assert not lost_race(duplicate.value)
    finally:
        await db.dispose()

"""An API key's `last_used_at`: kept within a minute, and never a reason to wait."""

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.engine import make_url

from luxfact.auth.credentials import hash_api_key
from luxfact.auth.repository import K
from luxfact.auth.roles import Role
from luxfact.auth.service import recent_keys
from luxfact.db.engine import Database
from luxfact.settings import Settings
from tests.conftest import Hospital, Hospitals


def clerk_key(hospital: Hospital) -> ColumnElement[bool]:
    return and_(K.c.tenant_id == hospital.id,
                K.c.key_hash == hash_api_key(hospital.keys[Role.clerk]))


async def set_last_used(db: Database, hospital: Hospital, at: datetime | None) -> None:
    async with db.engine.begin() as conn:
        await conn.execute(update(K).where(clerk_key(hospital)).values(last_used_at=at))


async def last_used(db: Database, hospital: Hospital) -> datetime:
    async with db.engine.connect() as conn:
        value = (await conn.execute(select(K.c.last_used_at).where(clerk_key(hospital)))
                 ).scalar()
    assert value is not None
    return value


async def test_last_used_is_written_when_a_minute_old_and_left_when_recent(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database) -> None:
    a = hospitals.a
    stale = datetime.now(UTC) - timedelta(minutes=2)
    await set_last_used(owner_db, a, stale)
    assert (await client.get("/api/v1/patients", headers=a.auth(Role.clerk))).status_code == 200
    written = await last_used(owner_db, a)
    assert datetime.now(UTC) - written < timedelta(seconds=30)

    recent = datetime.now(UTC) - timedelta(seconds=30)
    await set_last_used(owner_db, a, recent)
    recent_keys.clear()  # else the key, found valid just now, is not looked up at all
    assert (await client.get("/api/v1/patients", headers=a.auth(Role.clerk))).status_code == 200
    assert abs(await last_used(owner_db, a) - recent) < timedelta(milliseconds=1)


@pytest.mark.postgres
async def test_a_request_does_not_wait_for_another_noting_the_same_key(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database,
        settings: Settings) -> None:
    """Another transaction holds the key's row, as a request noting its use does until it
    commits: a request with the same key, due to note it too, answers without waiting."""
    a = hospitals.a
    stale = datetime.now(UTC) - timedelta(minutes=2)
    await set_last_used(owner_db, a, stale)
    dsn = make_url(settings.database_url).set(drivername="postgresql")
    holder = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT id FROM api_keys WHERE tenant_id = $1 AND key_hash = $2 "
                             "FOR UPDATE", a.id, hash_api_key(a.keys[Role.clerk]))
        # Waiting for the lock would last until the rollback below: never, within 20 s.
        response = await asyncio.wait_for(
            client.get("/api/v1/patients", headers=a.auth(Role.clerk)), 20)
        assert response.status_code == 200
        await lock.rollback()
    finally:
        await holder.close()
    # The request skipped the row held by the other: its use was not noted this time.
    assert abs(await last_used(owner_db, a) - stale) < timedelta(milliseconds=1)
    # Once free, the next request looking the key up notes it.
    recent_keys.clear()
    assert (await client.get("/api/v1/patients", headers=a.auth(Role.clerk))).status_code == 200
    assert datetime.now(UTC) - await last_used(owner_db, a) < timedelta(seconds=30)

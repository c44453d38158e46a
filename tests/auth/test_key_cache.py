"""API keys remembered as valid for a few seconds: what it saves and what it costs."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from sqlalchemy import and_, update

from luxfact.auth.credentials import hash_api_key
from luxfact.auth.key_cache import KEY_CACHE_SECONDS, NOTIFY, ChangeListener, RecentKeys
from luxfact.auth.repository import K
from luxfact.auth.roles import Role
from luxfact.auth.service import recent_keys
from luxfact.db.engine import Database, asyncpg_dsn
from luxfact.settings import Settings
from tests.conftest import Hospital, Hospitals


@dataclass(frozen=True)
class Key:
    id: uuid.UUID


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


TENANT, OTHER = uuid.uuid4(), uuid.uuid4()


def test_a_key_is_kept_for_its_seconds_then_looked_up_again() -> None:
    clock = Clock()
    keys: RecentKeys[Key] = RecentKeys(seconds=5, clock=clock)
    key = Key(uuid.uuid4())
    keys.put(TENANT, "h1", key, keys.generation)
    clock.now += 4.9
    assert keys.get(TENANT, "h1") is key
    assert keys.get(OTHER, "h1") is None  # another hospital's key of the same hash
    clock.now += 0.1
    assert keys.get(TENANT, "h1") is None


def test_the_oldest_key_goes_when_full() -> None:
    keys: RecentKeys[Key] = RecentKeys(size=2, clock=Clock())
    first, second, third = Key(uuid.uuid4()), Key(uuid.uuid4()), Key(uuid.uuid4())
    keys.put(TENANT, "h1", first, 0)
    keys.put(TENANT, "h2", second, 0)
    keys.put(TENANT, "h3", third, 0)
    assert [keys.get(TENANT, h) for h in ("h1", "h2", "h3")] == [None, second, third]


def test_a_look_up_begun_before_a_clear_puts_nothing_back() -> None:
    """A request reads the key valid, the revocation commits and is heard (a clear), then
    the request would remember the key: it must not, or the revoked key would live on."""
    keys: RecentKeys[Key] = RecentKeys(clock=Clock())
    generation = keys.generation  # the look-up begins
    keys.clear()  # the revocation is heard meanwhile
    keys.put(TENANT, "h1", Key(uuid.uuid4()), generation)
    assert keys.get(TENANT, "h1") is None
    keys.put(TENANT, "h1", key := Key(uuid.uuid4()), keys.generation)
    assert keys.get(TENANT, "h1") is key


@pytest.mark.postgres
async def test_the_listener_hears_and_comes_back_after_losing_its_connection(
        settings: Settings) -> None:
    keys: RecentKeys[Key] = RecentKeys(clock=Clock())
    listener = ChangeListener(keys)
    listener.RETRY_SECONDS = 0.1
    admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))

    async def heard() -> bool:
        keys.put(TENANT, "h1", Key(uuid.uuid4()), keys.generation)
        await admin.execute(str(NOTIFY))
        for _ in range(100):
            if keys.get(TENANT, "h1") is None:
                return True
            await asyncio.sleep(0.02)
        return False

    try:
        await listener.start(asyncpg_dsn(settings.database_url))
        assert listener.connection is not None
        assert await heard()
        pid = listener.connection.get_server_pid()
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # lost, then connected again
            if listener.connection is not None and listener.connection.get_server_pid() != pid:
                break
            await asyncio.sleep(0.05)
        assert listener.connection is not None and listener.connection.get_server_pid() != pid
        assert await heard()
    finally:
        await listener.stop()
        await admin.close()


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock()
    real = recent_keys.clock
    recent_keys.clock = fake
    yield fake
    recent_keys.clock = real


async def _used_then_revoked_in_database(client: httpx.AsyncClient, hospital: Hospital,
                                         owner_db: Database, *, announce: bool
                                         ) -> dict[str, str]:
    """A new key, used once (so remembered valid), then revoked by another process: in the
    database, announced on the channel or not. Its request headers."""
    created = (await client.post("/api/v1/api-keys", json={"name": "his", "role": "clerk"},
                                 headers=hospital.auth(Role.admin))).json()
    his = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/api/v1/patients", headers=his)).status_code == 200
    async with owner_db.engine.begin() as conn:
        await conn.execute(update(K).where(and_(
            K.c.tenant_id == hospital.id, K.c.key_hash == hash_api_key(created["key"]))
        ).values(revoked_at=datetime.now(UTC)))
        if announce:
            await conn.execute(NOTIFY)
    return his


async def test_a_key_revoked_elsewhere_stops_within_the_window(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database,
        clock: Clock) -> None:
    """Revoked where no notification is sent (here: in the database itself; on SQLite, by
    another process): still accepted while this worker remembers it valid, refused once the
    window has passed. The delay that docs/security.md states."""
    his = await _used_then_revoked_in_database(client, hospitals.a, owner_db, announce=False)
    clock.now += KEY_CACHE_SECONDS - 0.5
    assert (await client.get("/api/v1/patients", headers=his)).status_code == 200
    clock.now += 0.5
    assert (await client.get("/api/v1/patients", headers=his)).status_code == 401


@pytest.mark.postgres
async def test_a_change_announced_elsewhere_is_heard_at_once(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database,
        clock: Clock) -> None:
    """Another worker or process revokes a key and announces it (what `revoke_api_key` and a
    hospital's erasure do): this worker forgets its keys when the notification arrives,
    long before its window ends (the clock stands still here)."""
    his = await _used_then_revoked_in_database(client, hospitals.a, owner_db, announce=True)
    deadline = time.monotonic() + 5
    while (status := (await client.get("/api/v1/patients", headers=his)).status_code) == 200:
        assert time.monotonic() < deadline, "the notification was not heard"
        await asyncio.sleep(0.02)
    assert status == 401

"""The tenant hook as the app uses it: through a session, on both databases."""

import pytest
from sqlalchemy import text

from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.settings import Settings
from tests.conftest import Hospitals


async def test_sqlite_connections_have_their_pragmas(settings: Settings) -> None:
    if settings.is_postgres:
        pytest.skip("SQLite only")
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10000
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_session_sets_the_tenant_per_transaction(
    settings: Settings, hospitals: Hospitals
) -> None:
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        with context.tenant_scope(hospitals.a.id):
            async with db.transaction() as session:
                rows = (await session.exec(text("SELECT DISTINCT tenant_id FROM api_keys")))
                assert {r[0] for r in rows} == {hospitals.a.id}
        with context.tenant_scope(hospitals.b.id):
            async with db.transaction() as session:  # same pooled connection, other tenant
                rows = (await session.exec(text("SELECT DISTINCT tenant_id FROM api_keys")))
                assert {r[0] for r in rows} == {hospitals.b.id}
        async with db.transaction() as session:
            assert (await session.exec(text("SELECT count(*) FROM api_keys"))).scalar() == 0
    finally:
        await db.dispose()

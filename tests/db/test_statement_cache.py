"""LUXFACT_DB_STATEMENT_CACHE: 0 (behind PgBouncer in transaction pooling) turns off both
prepared-statement caches, SQLAlchemy's asyncpg dialect's and asyncpg's own; the default keeps
them on."""

from typing import Any

import pytest
from sqlalchemy import text

from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.settings import Settings, load_settings
from tests.conftest import Hospitals


async def _caches(db: Database) -> tuple[Any, int]:
    """(the dialect's statement cache, asyncpg's cache size) of a pooled connection."""
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        raw = await conn.get_raw_connection()
        adapted: Any = raw.dbapi_connection
        return adapted._prepared_statement_cache, raw.driver_connection._stmt_cache.get_max_size()


def test_the_setting_defaults_to_on_and_reads_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUXFACT_DB_STATEMENT_CACHE", raising=False)
    assert load_settings().db_statement_cache == 100
    monkeypatch.setenv("LUXFACT_DB_STATEMENT_CACHE", "0")
    assert load_settings().db_statement_cache == 0


@pytest.mark.postgres
async def test_zero_turns_both_caches_off(settings: Settings, hospitals: Hospitals) -> None:
    db = Database(settings.effective_app_database_url, pool_size=1, statement_cache_size=0)
    try:
        dialect_cache, asyncpg_size = await _caches(db)
        assert dialect_cache is None
        assert asyncpg_size == 0
        # And the service still works on it: the tenant hook, a query, twice (no cached
        # statement is looked for on the second run).
        for _ in range(2):
            with context.tenant_scope(hospitals.a.id):
                async with db.transaction() as session:
                    rows = await session.exec(text("SELECT DISTINCT tenant_id FROM api_keys"))
                    assert {r[0] for r in rows} == {hospitals.a.id}
        async with db.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert len(raw.driver_connection._stmt_cache) == 0
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_default_keeps_both_caches_on(settings: Settings) -> None:
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        dialect_cache, asyncpg_size = await _caches(db)
        assert dialect_cache is not None and dialect_cache.capacity == 100
        assert asyncpg_size == 100
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_the_app_passes_the_setting_on(settings: Settings) -> None:
    from asgi_lifespan import LifespanManager

    from luxfact.app import create_app

    app = create_app(settings.model_copy(update={"db_statement_cache": 0}))
    async with LifespanManager(app) as manager:
        db: Database = manager._state["db"]
        dialect_cache, asyncpg_size = await _caches(db)
        assert dialect_cache is None and asyncpg_size == 0

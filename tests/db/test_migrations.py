"""The migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from luxfact.db.engine import Database
from luxfact.db.migrate import current_revision, head_revision
from luxfact.db.models import metadata


async def test_database_is_at_head_and_matches_the_models(owner_db: Database) -> None:
    async with owner_db.engine.connect() as conn:
        assert await current_revision(conn) == head_revision()
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    assert diff == []

"""Schema migrations: `luxfact db upgrade` and the readiness check's "at head" test."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection

from luxfact.db import rls
from luxfact.db.engine import make_engine
from luxfact.settings import Settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def is_revision(name: str) -> bool:
    """Whether `name` is one revision's id (not "head", "+1", "heads" or a partial id)."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return name in {rev.revision for rev in script.walk_revisions()}


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


async def current_revision(conn: AsyncConnection) -> str | None:
    return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def behind(current: str | None) -> str | None:
    """Why a process may not work on a database at revision `current`, or None if it may."""
    if current == head_revision():
        return None
    return (f"the database is at revision {current or 'none'}, not {head_revision()}: "
            "run `luxfact db upgrade`")


async def upgrade(settings: Settings, revision: str = "head") -> str | None:
    """Migrate as the owner, then (PostgreSQL) make sure the app role exists with its grants.
    Returns the revision the database is at afterwards (an older target changes nothing:
    upgrading never goes back)."""
    if settings.database_url.startswith("sqlite"):
        path = settings.database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    try:
        async with engine.begin() as conn:
            def _upgrade(sync_conn):  # type: ignore[no-untyped-def]
                config = alembic_config(settings.database_url)
                config.attributes["connection"] = sync_conn
                command.upgrade(config, revision)
                rls.ensure_app_role(sync_conn, settings.app_role, settings.app_role_password)
                return MigrationContext.configure(sync_conn).get_current_revision()

            return await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()

"""What every command shares: settings, the owner's database, clear failures."""

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from sqlalchemy import exc as sa_exc
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.db import migrate
from luxfact.db.engine import Database
from luxfact.db.errors import DATABASE_UNAVAILABLE, storage_full
from luxfact.kit import context
from luxfact.kit.errors import LuxfactError
from luxfact.settings import Settings, SettingsError, load_settings
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.service import get_tenant

# soft_wrap: a message is one line however narrow the terminal (tests and logs grep them).
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; expected failures become one clear line and exit 1."""
    try:
        return asyncio.run(coro)
    except LuxfactError as exc:
        fail(exc.detail)
    except sa_exc.DBAPIError as exc:
        # Checked first: SQLite's full disk is an OperationalError, which reads as unreachable.
        if storage_full(exc):
            fail("the database's disk is full: nothing of this command's last step was "
                 f"written; free space and run it again ({describe_db_error(exc)})")
        if isinstance(exc, DATABASE_UNAVAILABLE):
            fail(f"cannot reach the database: {describe_db_error(exc)}")
        raise
    except DATABASE_UNAVAILABLE as exc:
        fail(f"cannot reach the database: {describe_db_error(exc)}")


def describe_db_error(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}".strip()


@asynccontextmanager
async def owner_db(config: Settings) -> AsyncIterator[Database]:
    db = Database(config.database_url, pool_size=2,
                  tenant_setting_mode=config.tenant_setting_mode,
                  statement_cache_size=config.db_statement_cache)
    try:
        await _require_migrated(db)
        yield db
    finally:
        await db.dispose()


async def _require_migrated(db: Database) -> None:
    """Refuse to work on a database that is not at the code's revision: its tables may be
    missing or older, and the command would fail on the first one with a puzzling error."""
    async with db.engine.connect() as conn:
        current = await migrate.current_revision(conn)
    problem = migrate.behind(current)
    if problem:
        raise LuxfactError(problem)


@asynccontextmanager
async def as_tenant(db: Database, slug: str) -> AsyncIterator[tuple[AsyncSession, Tenant]]:
    """A transaction acting for one tenant: find it first, then set it, then work."""
    async with db.transaction() as session:
        tenant = await get_tenant(session, slug)
    with context.tenant_scope(tenant.id, actor="cli"):
        context.current().tenant_slug = slug
        async with db.transaction() as session:
            yield session, tenant

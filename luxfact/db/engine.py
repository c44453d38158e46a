"""Engines and sessions, and the hook that tells PostgreSQL which hospital is asking.

The tenant comes from the request context (`luxfact.kit.context`). On PostgreSQL it is set
for each transaction, so a pooled connection never carries one request's tenant into another;
row-level security policies read it back. No tenant set means no tenant-owned row is visible.
"""

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import TextClause, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.db.errors import DATABASE_UNAVAILABLE, unavailable_sqlstate
from luxfact.kit import context

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def tenant_literal(value: str) -> str:
    """A tenant id that may be written into SQL as a literal: a UUID, or empty for none."""
    if value and not _UUID.fullmatch(value):
        raise ValueError("tenant id is not a UUID")
    return value


def tenant_setting_sql(tenant_id: uuid.UUID | None, mode: str) -> list[tuple[str, dict[str, Any]]]:
    """The statements that put the tenant into the current transaction.

    `set_config` binds the value as a parameter. Citus does not pass `set_config` on to its
    workers, so there the value goes as a `SET LOCAL` literal, which is why it is validated
    as a UUID first (no other text can reach the statement).
    """
    value = str(tenant_id) if tenant_id else ""
    if mode == "citus":
        value = tenant_literal(value)
        return [
            ("SET LOCAL citus.propagate_set_commands = 'local'", {}),
            (f"SET LOCAL app.tenant_id = '{value}'", {}),
        ]
    return [("SELECT set_config('app.tenant_id', :tenant, true)", {"tenant": value})]


@lru_cache(maxsize=64)
def _statement(sql: str) -> TextClause:
    """A text() statement built once per distinct SQL (it runs at every transaction)."""
    return text(sql)


class TenantSession(Session):
    """The sync session class behind every AsyncSession; carries the tenant hook."""

    tenant_setting_mode = "set_config"


class TenantConnection(asyncpg.Connection):
    """An asyncpg connection that can send the transaction's tenant with its BEGIN.

    The tenant is set in every transaction, and on its own it cost a round trip (one of the
    seven of recording an act; on this machine a write to the database's socket alone takes
    about 0.15 ms of the worker's time: docs/performance.md). SQLAlchemy's asyncpg adapter
    begins a transaction lazily, with a bare `BEGIN` sent before the transaction's first
    statement; when the session's hook has left a tenant here, that `BEGIN` goes as
    `BEGIN; SELECT set_config(...)`, one message of the simple protocol. The value is a
    validated UUID (or empty), so the literal cannot carry anything else."""

    _tenant_for_begin: str | None = None

    def send_tenant_with_begin(self, value: str) -> None:
        self._tenant_for_begin = tenant_literal(value)

    # asyncpg's own signature, timeout included.
    async def execute(self, query: str, *args: Any,
                      timeout: float | None = None) -> str:  # noqa: ASYNC109
        tenant = self._tenant_for_begin
        if tenant is None or args or not query.startswith("BEGIN"):
            return await super().execute(query, *args, timeout=timeout)
        self._tenant_for_begin = None
        query = f"{query.rstrip(';')}; SELECT set_config('app.tenant_id', '{tenant}', true)"
        try:
            return await super().execute(query, timeout=timeout)
        except BaseException:
            # Failed or timed out, the server may still have begun this tenant's transaction,
            # and asyncpg would nest the next one in it as a savepoint (which would not send
            # its tenant): the connection goes (`_unusable` refuses it at checkout).
            self.terminate()
            raise


# The tenant set by the session's current transaction, when the server is sure to have it:
# set by the outermost transaction; unknown (_NONE) once a savepoint set another, since
# rolling that savepoint back restores the outer value and releasing it keeps its own.
_TENANT_SET = "tenant_set"
_NONE = object()


@event.listens_for(TenantSession, "after_begin")
def _set_tenant(session: Session, transaction: Any, connection: Connection) -> None:
    if connection.dialect.name != "postgresql":
        return
    mode = session.info.get("tenant_setting_mode", "set_config")
    tenant_id = context.current_tenant_id()
    if transaction.nested:
        if session.info.get(_TENANT_SET, _NONE) == tenant_id:
            return  # a savepoint in a transaction whose tenant is set already
        session.info[_TENANT_SET] = _NONE
    else:
        session.info[_TENANT_SET] = tenant_id
    adapted = connection.connection.dbapi_connection
    driver = getattr(adapted, "driver_connection", None)
    if (mode == "set_config" and isinstance(driver, TenantConnection)
            and getattr(adapted, "_transaction", True) is None):
        # Not begun on the server yet (the adapter begins at the first statement).
        driver.send_tenant_with_begin(str(tenant_id) if tenant_id else "")
        return
    for sql, params in tenant_setting_sql(tenant_id, mode):
        connection.execute(_statement(sql), params)


def _unusable(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """At checkout: a connection closed or still inside a transaction is replaced by the pool
    (a transaction whose BEGIN failed may have begun on the server nonetheless)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, TenantConnection) and (
            driver.is_closed() or driver.is_in_transaction() or driver._top_xact is not None):
        raise sa_exc.DisconnectionError("connection left inside a transaction")


def _forget_tenant(dbapi_connection: Any, _record: Any) -> None:
    """A connection back in the pool carries no tenant into its next transaction (one whose
    session ran no statement never sent its BEGIN, so never took the tenant it was left)."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, TenantConnection):
        driver._tenant_for_begin = None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling starts a transaction only at the first write, so
    # the reads before it (a rule check, a lock) ran outside it; `_sqlite_begin` takes over.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Every transaction takes SQLite's write lock at once: SQLite has no row locks, so
    this is what serialises two requests on one stay (PostgreSQL: SELECT ... FOR UPDATE).
    WAL keeps readers outside transactions unblocked."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _unavailable_as_operational(ctx: ExceptionContext) -> Exception | None:
    """asyncpg reports a connection lost in the middle of a statement (a restart, a killed
    backend, a broken network) and a server refusing connections while it starts up as bare
    DBAPIErrors, which the 503 mapping (DATABASE_UNAVAILABLE: app, CLI, MLLP listener) takes
    for a bug: a 500. Re-raised as OperationalError, as psycopg reports them, they are 503s
    everywhere. Parameters hidden: they may hold a patient's data."""
    wrapped = ctx.sqlalchemy_exception
    if wrapped is None or isinstance(wrapped, DATABASE_UNAVAILABLE):
        return None
    if not (ctx.is_disconnect or unavailable_sqlstate(ctx.original_exception)):
        return None
    return sa_exc.OperationalError(ctx.statement, ctx.parameters, ctx.original_exception,
                                   hide_parameters=True,
                                   connection_invalidated=ctx.is_disconnect)


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy URL (postgresql+asyncpg://...) as asyncpg's own connect() takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10, statement_cache_size: int = 100,
                **kwargs: Any) -> AsyncEngine:
    """`statement_cache_size` (LUXFACT_DB_STATEMENT_CACHE): prepared statements kept per
    connection, by SQLAlchemy's asyncpg dialect and by asyncpg itself. 0 behind PgBouncer in
    transaction pooling: asyncpg then uses unnamed statements, prepared and run within one
    transaction (hence on one server connection); a named, cached one would be looked up later
    on whichever server connection PgBouncer hands out next.

    `hide_parameters`: a database error's message would otherwise carry the statement's
    values (a patient's name, a matricule) into the logged traceback."""
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it costs a round trip on every checkout. After a database restart the
        # first failing statement invalidates the whole pool (SQLAlchemy does so on any
        # disconnect error), that request gets a 503, and the next ones reconnect.
        pool_pre_ping=False,
        pool_recycle=1800,
        # Fail fast when the database is unreachable: the request gets a 503, not a hang.
        connect_args={"timeout": 5, "command_timeout": 60,
                      "prepared_statement_cache_size": statement_cache_size,
                      "statement_cache_size": statement_cache_size,
                      "connection_class": TenantConnection},
        **kwargs,
    )
    event.listen(engine.sync_engine, "handle_error", _unavailable_as_operational)
    event.listen(engine.sync_engine, "checkin", _forget_tenant)
    event.listen(engine.sync_engine, "checkout", _unusable)
    return engine


class Database:
    """One engine and its session factory, built in the lifespan (or by a CLI command)."""

    def __init__(self, url: str, *, pool_size: int = 10, tenant_setting_mode: str = "set_config",
                 statement_cache_size: int = 100):
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size,
                                  statement_cache_size=statement_cache_size)
        self.tenant_setting_mode = tenant_setting_mode
        self.sessionmaker = async_sessionmaker(
            self.engine,
            class_=AsyncSession,
            sync_session_class=TenantSession,
            expire_on_commit=False,
            info={"tenant_setting_mode": tenant_setting_mode},
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: commits when the block ends normally, rolls back otherwise."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()

"""The ASGI application: `create_app(settings)`."""

import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import TypedDict

from sqlalchemy import exc as sa_exc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from luxfact.auth.key_cache import ChangeListener
from luxfact.auth.service import recent_keys
from luxfact.billing import rendering
from luxfact.db.engine import Database, asyncpg_dsn
from luxfact.db.errors import DATABASE_UNAVAILABLE, storage_full
from luxfact.kit import logging as luxlog
from luxfact.kit import problems
from luxfact.kit.errors import Conflict, LuxfactError, ServiceUnavailable
from luxfact.kit.memory import freeze_long_lived
from luxfact.kit.middleware import BodyLimitMiddleware, RequestContextMiddleware
from luxfact.routes import routes
from luxfact.settings import Settings, load_settings
from luxfact.webhooks import addresses as webhook_addresses

# The routes that take a large file (the insurer's return, by the API or the desk) have
# their own body limit.
RETURN_PATH = re.compile(r"/api/v1/claim-batches/[^/]+/return|/desk/claims/[^/]+/return")
# An HL7 message over HTTP is read as a stream and only its first megabyte kept (hl7/api.py):
# a larger one is answered AR as over MLLP, up to its own, larger limit.
HL7_PATH = re.compile(r"/api/v1/hl7/v2")

log = logging.getLogger("luxfact.app")


class State(TypedDict):
    settings: Settings
    db: Database
    tenant_slugs: dict[uuid.UUID, str]


async def _luxfact_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LuxfactError)
    return problems.from_error(exc, request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}
    code, title = titles.get(exc.status_code, ("http-error", "HTTP error"))
    return problems.problem(exc.status_code, code, title, str(exc.detail),
                            instance=request.url.path, headers=exc.headers)


async def _integrity_error(request: Request, exc: Exception) -> Response:
    """A unique or foreign-key violation the service did not foresee: a concurrent change
    won the race. Nothing was written; the client may retry."""
    log.warning("integrity error: %s", type(getattr(exc, "orig", exc)).__name__)
    error = Conflict("The request conflicts with a concurrent change; nothing was changed. "
                     "Retry it.")
    return problems.from_error(error, request.url.path)


def _storage_full(request: Request, exc: Exception) -> Response:
    """The database's disk is full (tests/resilience/test_disk_full.py): 503, not 507, since
    the same request succeeds once space is freed; the transaction was rolled back whole."""
    log.error("database disk full: %s", type(getattr(exc, "orig", exc)).__name__)
    return problems.problem(
        503, "storage-full", "Storage full",
        "The database's disk is full; nothing was changed. Retry once space is freed.",
        instance=request.url.path, headers={"Retry-After": "60"})


async def _database_error(request: Request, exc: Exception) -> Response:
    """asyncpg's disk_full arrives as a bare DBAPIError; any other one stays a bug (500)."""
    if storage_full(exc):
        return _storage_full(request, exc)
    raise exc


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """The database is down or unreachable: 503, and the transaction was rolled back."""
    if storage_full(exc):  # SQLite's "database or disk is full" is an OperationalError
        return _storage_full(request, exc)
    log.warning("database unavailable: %s", type(exc).__name__)
    error = ServiceUnavailable("The database is not reachable; nothing was changed. Retry later.",
                               headers={"Retry-After": "5"})
    return problems.from_error(error, request.url.path)




def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        db = Database(settings.effective_app_database_url, pool_size=settings.db_pool_size,
                      tenant_setting_mode=settings.tenant_setting_mode,
                      statement_cache_size=settings.db_statement_cache)
        recent_keys.clear()  # keys remembered by another app of this process, on another database
        webhook_addresses.configure(settings.webhook_networks)
        listener = ChangeListener(recent_keys)
        if db.dialect == "postgresql":
            # Direct to PostgreSQL: LISTEN needs a session of its own, which PgBouncer's
            # transaction pooling (where the app URL may point) does not give.
            await listener.start(asyncpg_dsn(settings.database_url))
        freeze_long_lived()
        try:
            yield {"settings": settings, "db": db, "tenant_slugs": {}}
        finally:
            try:
                await listener.stop()
            finally:
                await db.dispose()
                rendering.shutdown()

    handlers = {
        LuxfactError: _luxfact_error,
        HTTPException: _http_error,
        sa_exc.IntegrityError: _integrity_error,
        sa_exc.DBAPIError: _database_error,
        **{cls: _database_unavailable for cls in DATABASE_UNAVAILABLE},
    }
    app = Starlette(
        routes=routes(),
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       larger=((RETURN_PATH, settings.max_return_bytes),
                               (HL7_PATH, settings.max_hl7_body_bytes))),
        ],
        exception_handlers=handlers,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    return app


def app_factory() -> Starlette:
    """For `uvicorn --factory` and `luxfact serve`: settings from the environment."""
    settings = load_settings()
    luxlog.configure(settings.log_level)
    return create_app(settings)

"""Liveness and readiness probes (no authentication: they reveal nothing of any tenant)."""

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from luxfact.db.engine import Database
from luxfact.db.migrate import current_revision, head_revision


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    db: Database = request.state.db
    head = head_revision()
    try:
        async with asyncio.timeout(5):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                current = await current_revision(conn)
    except Exception as exc:  # any failure to reach the database means "not ready"
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable", "reason": type(exc).__name__},
            status_code=503,
        )
    if current != head:
        return JSONResponse(
            {"status": "unavailable", "database": "ok", "migrations": "behind",
             "current": current, "head": head},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "database": "ok", "migrations": "at head",
                         "revision": current})

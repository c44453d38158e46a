"""The bare ceiling of benchmarks/api.py: Starlette + asyncpg, one row inserted per request
under the same tenant setting as the product, nothing else (no auth, no validation, no ORM).

    LUXFACT_BENCH_DSN=postgresql://... uvicorn --app-dir benchmarks bare_app:app
"""

import contextlib
import json
import os
import uuid

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TENANT = os.environ.get("LUXFACT_BENCH_TENANT", str(uuid.UUID(int=1)))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
    pool = await asyncpg.create_pool(os.environ["LUXFACT_BENCH_DSN"], min_size=4, max_size=10)
    yield {"pool": pool}
    await pool.close()


async def insert(request: Request) -> JSONResponse:
    body = json.loads(await request.body() or b"{}")
    row_id = uuid.uuid4()
    async with request.state.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", TENANT)
        await conn.execute("INSERT INTO bench_bare (tenant_id, id, payload) VALUES ($1, $2, $3)",
                           uuid.UUID(TENANT), row_id, json.dumps(body))
    return JSONResponse({"id": str(row_id)}, status_code=201)


app = Starlette(routes=[Route("/bare", insert, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    # Served exactly as `luxfact serve` serves the product: same socket, same supervisor.
    import sys

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from luxfact.cli.serve import listening_socket

    port, workers = int(sys.argv[1]), int(sys.argv[2])
    # The product's loop (`luxfact serve` runs on asyncio's): the ceiling on the same one.
    config = uvicorn.Config("bare_app:app", host="127.0.0.1", port=port, workers=workers,
                            log_level="warning", loop="asyncio")
    sock = listening_socket("127.0.0.1", port)
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])

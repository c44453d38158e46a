"""`luxfact serve`: the web process (uvicorn)."""

import asyncio
import socket

import typer
import uvicorn
from sqlalchemy import text
from uvicorn.supervisors import Multiprocess

from luxfact.cli.common import describe_db_error, fail, settings
from luxfact.db.engine import make_engine
from luxfact.db.migrate import current_revision, head_revision
from luxfact.kit import logging as luxlog


async def _check_database(url: str) -> str | None:
    """Why the service cannot start on this database, or None when it can."""
    engine = make_engine(url)
    try:
        async with asyncio.timeout(10), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await current_revision(conn)
    except Exception as exc:  # reported, then the process exits non-zero
        return f"cannot reach the database: {describe_db_error(exc)}"
    finally:
        await engine.dispose()
    if current != head_revision():
        return (f"the database is at revision {current or 'none'}, not {head_revision()}: "
                "run `luxfact db upgrade`")
    return None


def serve(
    host: str | None = typer.Option(None, help="Default: LUXFACT_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, help="Default: LUXFACT_PORT or 8000."),
    workers: int | None = typer.Option(None, help="Default: LUXFACT_WORKERS or 1."),
) -> None:
    """Serve the API and the web pages."""
    config = settings()
    problem = asyncio.run(_check_database(config.effective_app_database_url))
    if problem:
        fail(problem)
    luxlog.configure(config.log_level)
    uv_config = uvicorn.Config(
        "luxfact.app:app_factory", factory=True, host=host or config.host,
        port=port or config.port, workers=workers or config.workers, log_config=None,
        proxy_headers=True, server_header=False)
    try:
        sock = listening_socket(uv_config.host, uv_config.port)
    except OSError as exc:
        fail(f"cannot listen on {uv_config.host}:{uv_config.port}: {exc.strerror}")
    server = uvicorn.Server(uv_config)
    if uv_config.workers > 1:
        Multiprocess(uv_config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


def listening_socket(host: str, port: int) -> socket.socket:
    """The listening socket, created with its protocol (TCP) named.

    uvicorn's own, made with `socket.socket(family)`, has proto 0; its accepted connections
    inherit that, and asyncio then skips TCP_NODELAY (it checks proto == IPPROTO_TCP), so
    with several workers every response written in two parts waited for the client's
    delayed ACK: 44 ms per request, measured here.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock

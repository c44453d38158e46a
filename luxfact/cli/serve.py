"""`luxfact serve`: the web process (uvicorn)."""

import asyncio
import os
import socket
import tempfile
from pathlib import Path

import typer
import uvicorn
from sqlalchemy import text
from uvicorn.supervisors import Multiprocess, multiprocess
from uvicorn.supervisors.multiprocess import Process

from luxfact.cli import claim as port_claim
from luxfact.cli.common import describe_db_error, err, fail, settings
from luxfact.db.engine import make_engine
from luxfact.db.migrate import behind, current_revision
from luxfact.kit import logging as luxlog
from luxfact.observability.metrics import MULTIPROC_ENV
from luxfact.settings import Settings

AUTOVACUUM_OFF = (
    "PostgreSQL runs with autovacuum off: tables will not be analysed as they grow, and "
    "statements keep plans made for tables of a few rows (measured: locking a stay took "
    "20 ms instead of under 1 ms). Turn autovacuum on, or run ANALYZE regularly "
    "(docs/operations.md).")


def database_advice(server_settings: dict[str, str]) -> list[str]:
    """What to tell the operator about the database server's settings (not fatal)."""
    advice = []
    if server_settings.get("autovacuum") == "off":
        advice.append(AUTOVACUUM_OFF)
    return advice


async def _check_database(url: str, statement_cache_size: int = 100
                          ) -> tuple[str | None, list[str]]:
    """Why the service cannot start on this database (None when it can), and advice."""
    engine = make_engine(url, statement_cache_size=statement_cache_size)
    server_settings: dict[str, str] = {}
    try:
        async with asyncio.timeout(10), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            current = await current_revision(conn)
            if conn.dialect.name == "postgresql":
                server_settings["autovacuum"] = (
                    await conn.execute(text("SHOW autovacuum"))).scalar_one()
    except Exception as exc:  # reported, then the process exits non-zero
        return f"cannot reach the database: {describe_db_error(exc)}", []
    finally:
        await engine.dispose()
    problem = behind(current)
    if problem:
        return problem, []
    return None, database_advice(server_settings)


def require_database(config: Settings) -> None:
    """Exit with the reason when a process cannot start on the database; warn of advice."""
    problem, advice = asyncio.run(_check_database(config.effective_app_database_url,
                                                  config.db_statement_cache))
    if problem:
        fail(problem)
    for line in advice:
        err.print(f"[yellow]warning:[/yellow] {line}")


def serve(
    host: str | None = typer.Option(None, help="Default: LUXFACT_HOST or 127.0.0.1."),
    port: int | None = typer.Option(None, help="Default: LUXFACT_PORT or 8000."),
    workers: int | None = typer.Option(None, help="Default: LUXFACT_WORKERS or 1."),
) -> None:
    """Serve the API and the web pages."""
    config = settings()
    require_database(config)
    luxlog.configure(config.log_level)
    uv_config = uvicorn.Config(
        "luxfact.app:app_factory", factory=True, host=host or config.host,
        port=port or config.port, workers=workers or config.workers, log_config=None,
        proxy_headers=True, server_header=False,
        # asyncio's loop, not uvloop (installed for the MLLP listener): measured, uvloop
        # sped up a bare endpoint and not the API (docs/performance.md).
        loop="asyncio")
    # Held as long as this process lives: the workers' sockets share the port, which no
    # other server may then join (luxfact/cli/claim.py).
    claim = port_claim.claim(uv_config.port)
    if claim is None and port_claim.supported():
        fail(f"port {uv_config.port} is claimed by another luxfact server: stop it first")
    try:
        # Bound, not listening: says now (not in a worker) whether the port can be had.
        probe = listening_socket(uv_config.host, uv_config.port, reuse_port=True)
    except OSError as exc:
        fail(f"cannot listen on {uv_config.host}:{uv_config.port}: {exc.strerror}")
    if uv_config.workers > 1:
        probe.close()
        metrics_dir = prepare_metrics_dir()
        err.print(f"metrics of the {uv_config.workers} workers in {metrics_dir}")
        WorkerSupervisor(uv_config, sockets=[]).run()
    else:
        probe.listen(uv_config.backlog)
        uvicorn.Server(uv_config).run(sockets=[probe])
    if claim is not None:
        claim.close()


class ReusePortServer(uvicorn.Server):
    """A worker's server listening on a socket of its own (SO_REUSEPORT).

    With one socket shared by every worker, the first worker to wake accepts every pending
    connection (asyncio accepts up to the backlog at once): 64 keep-alive clients all landed
    on one worker and a second worker added nothing. With a socket per worker the kernel
    spreads the connections."""

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        port_claim.stop_without(os.getppid())
        sock = listening_socket(self.config.host, self.config.port, reuse_port=True)
        sock.listen(self.config.backlog)
        super().run(sockets=[sock])


class WorkerProcess(Process):
    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = ReusePortServer(config=self.config)
        return self._server


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor (health checks, restarts, signals), with ReusePortServer workers."""

    def run(self) -> None:
        # The supervisor creates its workers through the module's `Process`.
        multiprocess.Process = WorkerProcess  # type: ignore[misc]
        super().run()


def prepare_metrics_dir() -> str:
    """Several workers share their Prometheus metrics through files (docs/metrics.md).

    PROMETHEUS_MULTIPROC_DIR given: its metric files of a previous run are removed (their
    counts would be summed with this run's). Not given: a new directory under $TMPDIR. Set
    here, before uvicorn starts the workers, which inherit it and import prometheus_client
    afresh."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return given
    made = tempfile.mkdtemp(prefix="luxfact-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made


def listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """The listening socket, created with its protocol (TCP) named.

    uvicorn's own, made with `socket.socket(family)`, has proto 0; its accepted connections
    inherit that, and asyncio then skips TCP_NODELAY (it checks proto == IPPROTO_TCP), so
    with several workers every response written in two parts waited for the client's
    delayed ACK: 44 ms per request, measured here.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock

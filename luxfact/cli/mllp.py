"""`luxfact mllp`: the HL7 v2 listener (MLLP over TCP)."""

import asyncio
import os
import signal
import subprocess
import sys

import typer
import uvloop

from luxfact.cli.common import settings
from luxfact.cli.serve import require_database
from luxfact.db.engine import Database
from luxfact.hl7.mllp import MAX_BYTES, Listener, tenant_by_slug
from luxfact.kit import logging as luxlog
from luxfact.settings import Settings


def mllp(
    host: str = typer.Option("127.0.0.1", help="The address to listen on."),
    port: int = typer.Option(2575, min=1, max=65535, help="The TCP port (2575: HL7's)."),
    tenant: str | None = typer.Option(
        None, "--tenant", help="The hospital (slug) of every message on this listener. "
        "Without it, each message's hospital is the one whose tenant file lists its "
        "sending facility (MSH-4) in integration.hl7_facilities."),
    idle_timeout: float = typer.Option(
        60.0, "--idle-timeout", min=0.1, help="Seconds a connection may stay silent, "
        "between messages or within one, before it is closed."),
    max_bytes: int = typer.Option(MAX_BYTES, "--max-bytes", min=1024,
                                  help="The largest message accepted (AR beyond)."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Processes listening on the port (one per core)."),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True),
) -> None:
    """Receive HL7 v2 ADT and DFT messages over MLLP, each answered with its ACK."""
    config = settings()
    require_database(config)
    if workers > 1:
        options = ["--host", host, "--port", str(port), "--idle-timeout", str(idle_timeout),
                   "--max-bytes", str(max_bytes), *(["--tenant", tenant] if tenant else [])]
        raise typer.Exit(_supervise(workers, options))
    luxlog.configure(config.log_level)
    # uvloop's event loop: the listener is bound by the loop's own work (socket writes to
    # the clients and PostgreSQL, callbacks) as much as by ours; measured 389 → 479
    # messages/s with two workers on 8,000 messages (docs/performance.md).
    code = uvloop.run(_serve(config, host, port, tenant, idle_timeout, max_bytes,
                             reuse_port))
    if code:
        raise typer.Exit(code)


def _supervise(workers: int, options: list[str]) -> int:
    """Start the workers (this command again, one process each, sharing the port), pass
    SIGTERM and SIGINT on to them, and stop them all when one of them stops."""
    command = [sys.executable, "-m", "luxfact.cli.main", "mllp", *options, "--reuse-port"]
    # Our own interpreter and module, with options typer validated: no shell, no input.
    children = [subprocess.Popen(command) for _ in range(workers)]  # noqa: S603

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid, status = os.wait()  # the first worker to stop stops the others
    stop(signal.SIGTERM, None)
    codes = [os.waitstatus_to_exitcode(status)]
    codes += [child.wait() for child in children if child.pid != pid]
    return max(abs(code) for code in codes)


async def _serve(config: Settings, host: str, port: int, slug: str | None,
                 idle_timeout: float, max_bytes: int, reuse_port: bool) -> int:
    db = Database(config.effective_app_database_url, pool_size=config.db_pool_size,
                  tenant_setting_mode=config.tenant_setting_mode,
                  statement_cache_size=config.db_statement_cache)
    try:
        tenant = None
        if slug is not None:
            tenant = await tenant_by_slug(db, slug)
            if tenant is None:
                print(f"error: no tenant {slug!r}: run `luxfact tenants sync` or check the "
                      "slug", file=sys.stderr)
                return 1
        listener = Listener(db, tenant=tenant, idle_timeout=idle_timeout, max_bytes=max_bytes)
        try:
            server = await listener.start(host, port, reuse_port=reuse_port)
        except OSError as exc:
            print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        bound = server.sockets[0].getsockname()
        print(f"MLLP listening on {bound[0]}:{bound[1]}"
              f"{f' for {slug}' if slug else ' (hospital by sending facility)'}"
              f" (pid {os.getpid()})", file=sys.stderr, flush=True)
        await stop.wait()
        await listener.close()
        return 0
    finally:
        await db.dispose()

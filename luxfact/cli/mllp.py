"""`luxfact mllp`: the HL7 v2 listener (MLLP over TCP)."""

import asyncio
import os
import signal
import subprocess
import sys

import typer
import uvloop

from luxfact.cli import claim as port_claim
from luxfact.cli.common import settings
from luxfact.cli.serve import require_database
from luxfact.db.engine import Database
from luxfact.hl7.mllp import MAX_BYTES, MAX_CONNECTIONS, Listener, tenant_by_slug
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
        "between messages or within one, before it is closed; one that completes no "
        "message within twice that is closed too."),
    max_bytes: int = typer.Option(MAX_BYTES, "--max-bytes", min=1024,
                                  help="The largest message accepted (AR beyond)."),
    max_connections: int = typer.Option(
        MAX_CONNECTIONS, "--max-connections", min=1, help="Connections open at once, per "
        "worker; one more is closed at once."),
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="Processes listening on the port (one per core)."),
    claim_fd: int | None = typer.Option(None, "--claim-fd", hidden=True),
    supervisor: int | None = typer.Option(None, "--supervisor", hidden=True),
) -> None:
    """Receive HL7 v2 ADT and DFT messages over MLLP, each answered with its ACK."""
    config = settings()
    require_database(config)
    if workers > 1:
        options = ["--host", host, "--port", str(port), "--idle-timeout", str(idle_timeout),
                   "--max-bytes", str(max_bytes), "--max-connections", str(max_connections),
                   *(["--tenant", tenant] if tenant else [])]
        raise typer.Exit(_supervise(workers, port, options))
    # A worker shares the port with its siblings (SO_REUSEPORT) only with its supervisor's
    # claim on the port passed on to it (luxfact/cli/claim.py): never one started by hand.
    reuse_port = claim_fd is not None
    if reuse_port and not port_claim.holds(claim_fd, port):  # type: ignore[arg-type]
        print(f"error: --claim-fd is not the claim on port {port} of a `luxfact mllp "
              "--workers` supervisor", file=sys.stderr)
        raise typer.Exit(1)
    luxlog.configure(config.log_level)
    # uvloop's event loop: the listener is bound by the loop's own work (socket writes to
    # the clients and PostgreSQL, callbacks) as much as by ours; measured 389 → 479
    # messages/s with two workers on 8,000 messages (docs/performance.md).
    code = uvloop.run(_serve(config, host, port, tenant, idle_timeout, max_bytes,
                             max_connections, reuse_port, supervisor))
    if code:
        raise typer.Exit(code)


def _supervise(workers: int, port: int, options: list[str]) -> int:
    """Claim the port, start the workers (this command again, one process each, sharing the
    port), pass SIGTERM and SIGINT on to them, and stop them all when one of them stops."""
    if not port_claim.supported():
        print("error: --workers needs Linux (its abstract sockets claim the port)",
              file=sys.stderr)
        return 1
    claim = port_claim.claim(port)
    if claim is None:
        print(f"error: port {port} is claimed by another luxfact server (or its workers, "
              "still running): stop it first", file=sys.stderr)
        return 1
    command = [sys.executable, "-m", "luxfact.cli.main", "mllp", *options,
               "--claim-fd", str(claim.fileno()), "--supervisor", str(os.getpid())]
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # Before the workers start: a signal meanwhile stops those started, and no more start.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(workers):
        if stopping:
            break
        # Our own interpreter and module, with options typer validated: no shell, no input.
        children.append(subprocess.Popen(command, pass_fds=(claim.fileno(),)))  # noqa: S603
    claim.close()  # held by the workers now: it ends with the last of them
    if not children:
        return 0
    if stopping:  # a signal while a worker started may have missed it: passed on again
        stop(stopping[-1], None)
    pid, status = os.wait()  # the first worker to stop stops the others
    asked = bool(stopping)
    stop(signal.SIGTERM, None)
    codes = [os.waitstatus_to_exitcode(status)]
    codes += [child.wait() for child in children if child.pid != pid]
    # Stopped as asked: a worker the signal reached before its handler (still starting)
    # ended by the signal itself, which is no failure.
    return max(0 if asked and -code in stopping else abs(code) for code in codes)


async def _serve(config: Settings, host: str, port: int, slug: str | None,
                 idle_timeout: float, max_bytes: int, max_connections: int,
                 reuse_port: bool, supervisor: int | None) -> int:
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
        listener = Listener(db, tenant=tenant, idle_timeout=idle_timeout, max_bytes=max_bytes,
                            max_connections=max_connections)
        try:
            server = await listener.start(host, port, reuse_port=reuse_port)
        except OSError as exc:
            print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if supervisor is not None:  # after the handler above: SIGTERM then sets `stop`
            port_claim.stop_without(supervisor)
        bound = server.sockets[0].getsockname()
        print(f"MLLP listening on {bound[0]}:{bound[1]}"
              f"{f' for {slug}' if slug else ' (hospital by sending facility)'}"
              f" (pid {os.getpid()})", file=sys.stderr, flush=True)
        await stop.wait()
        await listener.close()
        return 0
    finally:
        await db.dispose()

"""`luxfact mllp`: the HL7 v2 listener (MLLP over TCP)."""

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import typer
import uvloop

from luxfact.cli import claim as port_claim
from luxfact.cli.common import settings
from luxfact.cli.serve import listening_socket, require_database
from luxfact.db.engine import Database
from luxfact.hl7.mllp import MAX_BYTES, MAX_CONNECTIONS, Listener, tenant_by_slug
from luxfact.kit import handoff
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
                                help="Processes serving the port's connections (one per "
                                "core), each handed the next by a supervisor that listens."),
    handoff_fd: int | None = typer.Option(None, "--handoff-fd", hidden=True),
    supervisor: int | None = typer.Option(None, "--supervisor", hidden=True),
) -> None:
    """Receive HL7 v2 ADT and DFT messages over MLLP, each answered with its ACK."""
    config = settings()
    require_database(config)
    if workers > 1:
        options = ["--idle-timeout", str(idle_timeout), "--max-bytes", str(max_bytes),
                   "--max-connections", str(max_connections),
                   *(["--tenant", tenant] if tenant else [])]
        raise typer.Exit(_supervise(workers, host, port, options))
    # A worker serves the connections its supervisor hands over (luxfact/kit/handoff.py),
    # only from the supervisor that started it: never one started by hand.
    handed = None
    if handoff_fd is not None:
        handed = handoff.from_supervisor(handoff_fd, supervisor or 0)
        if handed is None:
            print("error: --handoff-fd is not the hand-off socket of this process's "
                  "`luxfact mllp --workers` supervisor", file=sys.stderr)
            raise typer.Exit(1)
    luxlog.configure(config.log_level)
    # uvloop's event loop: the listener is bound by the loop's own work (socket writes to
    # the clients and PostgreSQL, callbacks) as much as by ours; measured 389 → 479
    # messages/s with two workers on 8,000 messages (docs/performance.md).
    code = uvloop.run(_serve(config, host, port, tenant, idle_timeout, max_bytes,
                             max_connections, handed, supervisor))
    if code:
        raise typer.Exit(code)


def _supervise(workers: int, host: str, port: int, options: list[str]) -> int:
    """Claim the port and listen on it, start the workers (this command again, one process
    each), hand each connection accepted to the worker with the fewest open, pass SIGTERM
    and SIGINT on to them, and stop them all when one of them stops."""
    if not port_claim.supported():
        print("error: --workers needs Linux (its abstract sockets claim the port)",
              file=sys.stderr)
        return 1
    claim = port_claim.claim(port)
    if claim is None:
        print(f"error: port {port} is claimed by another luxfact server (or its workers, "
              "still running): stop it first", file=sys.stderr)
        return 1
    try:
        listening = listening_socket(host, port)
        listening.listen(1024)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    listening.set_inheritable(False)  # the supervisor's alone: it ends with it
    listening.setblocking(False)
    children: list[subprocess.Popen[bytes]] = []
    pairs: list[socket.socket] = []
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
        ours, theirs = handoff.pair()
        command = [sys.executable, "-m", "luxfact.cli.main", "mllp", "--host", host,
                   "--port", str(port), *options, "--handoff-fd", str(theirs.fileno()),
                   "--supervisor", str(os.getpid())]
        # Our own interpreter and module, with options typer validated: no shell, no input.
        children.append(subprocess.Popen(command, pass_fds=(theirs.fileno(),)))  # noqa: S603
        theirs.close()
        pairs.append(ours)
    if children and not stopping:
        print(f"MLLP listening on {host}:{port} with {len(children)} workers "
              f"(supervisor pid {os.getpid()})", file=sys.stderr, flush=True)
        _dispatch(listening, pairs, stopping)
    listening.close()  # no more connections: the port is free as the workers finish
    claim.close()
    asked = bool(stopping)
    stop(stopping[-1] if stopping else signal.SIGTERM, None)
    codes = [child.wait() for child in children]
    # Stopped as asked: a worker the signal reached before its handler (still starting)
    # ended by the signal itself, which is no failure.
    return max((0 if asked and -code in stopping else abs(code) for code in codes),
               default=0)


def _dispatch(listening: socket.socket, pairs: list[socket.socket],
              stopping: list[int]) -> None:
    """Hand connections over until a signal comes or a worker is gone (its end of the pair
    closed: whatever ended it)."""
    dispatcher = handoff.Dispatcher(listening, pairs)
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    # A signal's handler runs between two statements; this wakes the select it came in.
    previous = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    paused_until = 0.0  # accepting paused (no descriptor left) until then
    with selectors.DefaultSelector() as selector:
        selector.register(listening, selectors.EVENT_READ, -1)
        selector.register(wake_read, selectors.EVENT_READ, -2)
        for index, sock in enumerate(pairs):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        try:
            while not stopping:
                timeout = None
                if paused_until:
                    timeout = paused_until - time.monotonic()
                    if timeout <= 0:
                        selector.register(listening, selectors.EVENT_READ, -1)
                        paused_until, timeout = 0.0, None
                for key, _ in selector.select(timeout):
                    if key.data == -1 and not dispatcher.accept():
                        print("warning: cannot accept connections (no file descriptor or "
                              f"memory left): paused {handoff.PAUSE:g} s", file=sys.stderr,
                              flush=True)
                        selector.unregister(listening)
                        paused_until = time.monotonic() + handoff.PAUSE
                    elif key.data == -2:
                        wake_read.recv(64)
                    elif key.data >= 0 and not dispatcher.notices(key.data):
                        return  # a worker is gone: the others stop
        finally:
            signal.set_wakeup_fd(previous)
            wake_read.close()
            wake_write.close()


async def _serve(config: Settings, host: str, port: int, slug: str | None,
                 idle_timeout: float, max_bytes: int, max_connections: int,
                 handed: socket.socket | None, supervisor: int | None) -> int:
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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        serving = f"{f' for {slug}' if slug else ' (hospital by sending facility)'}"
        if handed is not None:
            gone = listener.take_handed(handed)
            gone.add_done_callback(lambda _: stop.set())  # the supervisor is gone
            print(f"MLLP worker{serving} (pid {os.getpid()})", file=sys.stderr, flush=True)
        else:
            try:
                server = await listener.start(host, port)
            except OSError as exc:
                print(f"error: cannot listen on {host}:{port}: {exc.strerror}",
                      file=sys.stderr)
                return 1
            bound = server.sockets[0].getsockname()
            print(f"MLLP listening on {bound[0]}:{bound[1]}{serving} (pid {os.getpid()})",
                  file=sys.stderr, flush=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if supervisor is not None:  # after the handler above: SIGTERM then sets `stop`
            port_claim.stop_without(supervisor)
        await stop.wait()
        await listener.close()
        return 0
    finally:
        await db.dispose()

"""A real `luxfact serve` process on this run's database, for tests that need one."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from luxfact.settings import Settings
from tests import suite_logs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    """A process's /proc stat fields after its name (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a server's workers)."""
    found = []
    for entry in os.listdir("/proc"):
        stat = _stat(int(entry)) if entry.isdigit() else None
        if stat is not None and int(stat[1]) == pid:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def connections_of(pid: int, port: int) -> int:
    """How many established TCP connections to this local port the process holds."""
    ours = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for line in rows.readlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    ours.add(f"socket:[{fields[9]}]")
    held = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            held += os.readlink(f"/proc/{pid}/fd/{fd}") in ours
    return held


def _listeners_on(port: int) -> int:
    """How many sockets listen on this port (from /proc/net/tcp; 0A is LISTEN)."""
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table.readlines()[1:]
                   if line.split()[3] == "0A" and int(line.split()[1].split(":")[1], 16) == port)


@contextmanager
def live_server(settings: Settings, workers: int = 1) -> Iterator[tuple[str, int]]:
    """(base URL, supervisor pid) of a server started as `luxfact serve` starts it."""
    port = free_port()
    env = {**os.environ, "LUXFACT_DATABASE_URL": settings.database_url,
           "LUXFACT_APP_ROLE": settings.app_role, "LUXFACT_SECRET_KEY": settings.secret_key,
           "LUXFACT_LOG_LEVEL": "INFO", "LUXFACT_MAX_BODY_BYTES": str(settings.max_body_bytes)}
    # Its log lines go where the privacy scan of the suite's logs reads them.
    log = (suite_logs.directory() / f"serve-{port}.jsonl").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "luxfact.cli.main", "serve", "--port", str(port),
         "--workers", str(workers)], env=env,
        stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                # Every worker binds its own socket: wait until all of them listen, or the
                # first connections all go to the worker that started first.
                if (_listeners_on(port) >= workers
                        and httpx.get(f"{url}/readyz", timeout=1).status_code == 200):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=20)

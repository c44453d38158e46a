"""A real `luxfact serve` process on this run's database, for tests that need one."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from luxfact.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def live_server(settings: Settings, workers: int = 1) -> Iterator[tuple[str, int]]:
    """(base URL, supervisor pid) of a server started as `luxfact serve` starts it."""
    port = free_port()
    env = {**os.environ, "LUXFACT_DATABASE_URL": settings.database_url,
           "LUXFACT_APP_ROLE": settings.app_role, "LUXFACT_SECRET_KEY": settings.secret_key,
           "LUXFACT_LOG_LEVEL": "WARNING", "LUXFACT_MAX_BODY_BYTES": str(settings.max_body_bytes)}
    process = subprocess.Popen(
        [sys.executable, "-m", "luxfact.cli.main", "serve", "--port", str(port),
         "--workers", str(workers)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
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

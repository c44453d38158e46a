"""`luxfact serve` itself: a real process, several workers, fast answers."""

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from luxfact.cli.serve import listening_socket
from luxfact.settings import Settings


def test_listening_socket_names_tcp_so_asyncio_sets_nodelay() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_workers_answer_without_delayed_ack_stalls(settings: Settings) -> None:
    """With uvicorn's own socket, every keep-alive answer of a multi-worker server waited
    ~40 ms for the client's delayed ACK (no TCP_NODELAY). A median under 20 ms proves the
    fix on a real process; the stall it guards against is twice that."""
    port = _free_port()
    env = {**os.environ, "LUXFACT_DATABASE_URL": settings.database_url,
           "LUXFACT_APP_ROLE": settings.app_role, "LUXFACT_SECRET_KEY": settings.secret_key,
           "LUXFACT_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "luxfact.cli.main", "serve", "--port",
                                str(port), "--workers", "2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not start")
        timings = []
        with httpx.Client(base_url=url) as client:  # one keep-alive connection
            for _ in range(30):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                timings.append(time.perf_counter() - started)
        assert sorted(timings)[15] < 0.020
    finally:
        process.terminate()
        process.wait(timeout=20)

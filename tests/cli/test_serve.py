"""`luxfact serve` itself: a real process, several workers, fast answers."""

import socket
import time

import httpx
import pytest

from luxfact.cli.serve import listening_socket
from luxfact.settings import Settings
from tests.live import live_server


def test_listening_socket_names_tcp_so_asyncio_sets_nodelay() -> None:
    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


@pytest.mark.slow
def test_two_workers_answer_without_delayed_ack_stalls(settings: Settings) -> None:
    """With uvicorn's own socket, every keep-alive answer of a multi-worker server waited
    ~40 ms for the client's delayed ACK (no TCP_NODELAY). A median under 20 ms proves the
    fix on a real process; the stall it guards against is twice that."""
    with live_server(settings, workers=2) as (url, _), httpx.Client(base_url=url) as client:
        timings = []
        for _ in range(30):  # one keep-alive connection
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            timings.append(time.perf_counter() - started)
    assert sorted(timings)[15] < 0.020

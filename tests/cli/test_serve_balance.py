"""Several workers share the load: each listens on a socket of its own (SO_REUSEPORT)."""

import os
import socket

import pytest

from luxfact.settings import Settings
from tests.live import live_server


@pytest.mark.slow
def test_connections_are_spread_over_the_workers(settings: Settings) -> None:
    with live_server(settings, workers=2) as (url, supervisor):
        pids = _healthz_from_40_connections(int(url.rsplit(":", 1)[1]), supervisor)
    assert len(pids) == 2, pids


def _healthz_from_40_connections(port: int, supervisor: int) -> set[int]:
    """40 connections opened at once, as a load balancer or a busy integration would, each
    asking /healthz (answered 200) of the process that accepted it: those processes."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        for sock in sockets:
            assert b" 200 " in sock.recv(4096)
        return _server_pids_of(sockets, port, supervisor)
    finally:
        for sock in sockets:
            sock.close()


def _server_pids_of(sockets: list[socket.socket], server_port: int,
                    supervisor: int) -> set[int]:
    """The worker processes holding the server ends of these connections (from /proc)."""
    ports = {sock.getsockname()[1] for sock in sockets}
    inodes = set()
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].split(":")[1], 16)
            remote_port = int(fields[2].split(":")[1], 16)
            # Both ends must match: another program's connection may happen to have one of
            # our client ports as its remote port.
            if local_port == server_port and remote_port in ports:
                inodes.add(fields[9])
    pids = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == supervisor:
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(pid))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_a_scrape_sums_every_workers_metrics(settings: Settings) -> None:
    with live_server(settings, workers=2) as (url, supervisor):
        port = int(url.rsplit(":", 1)[1])
        pids = _healthz_from_40_connections(port, supervisor)
        assert len(pids) == 2, pids  # each worker answered some, neither all 40
        # Whichever worker answers a scrape, it reports both workers' counts.
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", port))
            try:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                body = b""
                while chunk := sock.recv(65536):
                    body += chunk
            finally:
                sock.close()
            line = next(line for line in body.decode().splitlines() if line.startswith(
                'luxfact_http_requests_total{method="GET",route="/healthz",status="200"}'))
            assert float(line.rsplit(" ", 1)[1]) == 40.0, line

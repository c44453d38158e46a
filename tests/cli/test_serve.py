"""`luxfact serve` itself: a real process, several workers, fast answers."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from luxfact.auth.roles import Role
from luxfact.cli.serve import AUTOVACUUM_OFF, _check_database, database_advice, listening_socket
from luxfact.db.engine import make_engine
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.live import alive, children, live_server
from tests.patients.test_api import patient_body


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


@pytest.mark.slow
async def test_sigterm_lets_the_request_in_flight_finish(settings: Settings,
                                                         hospitals: Hospitals) -> None:
    """An orchestrator stopping the server (SIGTERM) mid-request: the request is answered
    and its record written whole; only then does the process exit."""
    body = json.dumps(patient_body()).encode()
    sent_half = asyncio.Event()

    async def slowly() -> AsyncIterator[bytes]:  # the body arrives over a second
        yield body[: len(body) // 2]
        sent_half.set()
        await asyncio.sleep(1.0)
        yield body[len(body) // 2:]

    with live_server(settings) as (url, supervisor):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            request = asyncio.create_task(client.post(
                "/api/v1/patients", content=slowly(),
                headers={**hospitals.a.auth(Role.clerk), "Content-Type": "application/json"}))
            await sent_half.wait()
            await asyncio.sleep(0.2)
            os.kill(supervisor, signal.SIGTERM)
            response = await request
            code = await asyncio.to_thread(_wait, supervisor)
    assert response.status_code == 201, response.text
    assert response.json()["family_name"] == patient_body()["family_name"]
    # After its graceful shutdown uvicorn re-raises the signal it handled, so that the
    # exit status says why it stopped: -SIGTERM, not a crash's 1 or a kill's -9.
    assert code in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_a_second_server_on_the_port_is_refused(settings: Settings) -> None:
    """Each worker has a socket of its own on the port (SO_REUSEPORT), which the kernel
    lets any process of the same user join: a second `luxfact serve` there, perhaps on
    another database, would silently answer a share of the requests. It is refused."""
    with live_server(settings) as (url, _):
        port = url.rsplit(":", 1)[1]
        second = subprocess.run(
            [sys.executable, "-m", "luxfact.cli.main", "serve", "--port", port],
            env={**os.environ, "LUXFACT_DATABASE_URL": settings.database_url,
                 "LUXFACT_APP_ROLE": settings.app_role,
                 "LUXFACT_SECRET_KEY": settings.secret_key},
            capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1
        assert f"port {port} is claimed by another luxfact server" in second.stderr
        assert httpx.get(f"{url}/healthz").status_code == 200


@pytest.mark.slow
def test_workers_stop_when_their_supervisor_is_killed(settings: Settings) -> None:
    """The port's claim is the supervisor's: workers left serving after it was killed
    outright (SIGKILL, the OOM killer) would let a second server join the port. They stop
    within seconds, and the port can be had again."""
    with live_server(settings, workers=2) as (url, supervisor):
        workers = children(supervisor)
        assert len(workers) >= 2
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in workers), "the workers outlived their supervisor"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/healthz", timeout=2)


def _wait(pid: int) -> int:
    """The exit status of the server process (a child of this one)."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_advice_names_autovacuum_off_and_only_then() -> None:
    assert database_advice({"autovacuum": "off"}) == [AUTOVACUUM_OFF]
    assert database_advice({"autovacuum": "on"}) == []
    assert database_advice({}) == []  # SQLite: nothing to say


@pytest.mark.postgres
async def test_check_reads_the_servers_autovacuum(settings: Settings) -> None:
    """The advice follows the server's real setting (this machine's cluster runs without
    autovacuum; a default one runs with it)."""
    problem, advice = await _check_database(settings.effective_app_database_url)
    assert problem is None
    engine = make_engine(settings.effective_app_database_url)
    try:
        async with engine.connect() as conn:
            autovacuum = (await conn.execute(text("SHOW autovacuum"))).scalar_one()
    finally:
        await engine.dispose()
    assert (AUTOVACUUM_OFF in advice) == (autovacuum == "off")

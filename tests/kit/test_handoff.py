"""The hand-off of connections from a supervisor to its workers (luxfact/kit/handoff.py), on
real sockets: the least busy worker first, a stalled one passed over, counts that do not
drift when notices are lost, accept() pausing when descriptors run out."""

import asyncio
import errno
import socket
import sys

import pytest

from luxfact.kit import handoff

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SOCK_SEQPACKET, Linux")


@pytest.fixture
def listening() -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock  # type: ignore[misc]
    sock.close()


def pairs(count: int) -> tuple[list[socket.socket], list[socket.socket]]:
    ours, theirs = zip(*(handoff.pair() for _ in range(count)), strict=True)
    for sock in ours:
        sock.setblocking(False)
    return list(ours), list(theirs)


def connect(listening: socket.socket, count: int) -> list[socket.socket]:
    return [socket.create_connection(listening.getsockname()) for _ in range(count)]


def received(worker: socket.socket) -> int:
    """Descriptors waiting for a worker (closed as they are read)."""
    worker.setblocking(False)
    found = 0
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(worker, 16, 4)
        except BlockingIOError:
            return found
        for fd in fds:
            socket.socket(fileno=fd).close()
        found += len(fds)


async def settle(dispatcher: handoff.Dispatcher, listening: socket.socket, expected: int
                 ) -> None:
    """Accept until `expected` connections were handed (they arrive as the kernel
    completes them)."""
    for _ in range(200):
        assert dispatcher.accept()
        if sum(dispatcher.handed) >= expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"handed {dispatcher.handed}, expected {expected}")


async def test_the_least_busy_worker_gets_the_next_connection(
        listening: socket.socket) -> None:
    ours, theirs = pairs(2)
    dispatcher = handoff.Dispatcher(listening, ours)
    clients = connect(listening, 8)
    await settle(dispatcher, listening, 8)
    assert dispatcher.handed == [4, 4] and [received(w) for w in theirs] == [4, 4]
    # Three of worker 0's end: the next three go to it, then in turn.
    notices = handoff.Notices(theirs[0])
    for _ in range(3):
        notices.ended_one()
    assert dispatcher.notices(0) and [dispatcher.open(i) for i in (0, 1)] == [1, 4]
    clients += connect(listening, 4)
    await settle(dispatcher, listening, 12)
    assert sorted(dispatcher.open(i) for i in (0, 1)) == [4, 5]
    assert [received(w) for w in theirs] in ([3, 1], [4, 0])
    for sock in clients + ours + theirs:
        sock.close()


async def test_a_stalled_worker_is_passed_over(listening: socket.socket) -> None:
    """Worker 0 reads nothing: once its pair is full, the connections go to worker 1 (it
    used to be chosen again and again, as the least busy, and every connection dropped)."""
    ours, theirs = pairs(2)
    ours[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)  # full after a few
    dispatcher = handoff.Dispatcher(listening, ours)
    clients: list[socket.socket] = []
    for batch in range(1, 7):  # within the listening backlog
        clients += connect(listening, 50)
        await settle(dispatcher, listening, 50 * batch)
        received(theirs[1])  # worker 1 reads what it is given
    stalled = dispatcher.handed[0]
    assert sum(dispatcher.handed) == 300 and stalled < 150
    assert dispatcher.handed[1] == 300 - stalled
    for sock in clients + ours + theirs:
        sock.close()


async def test_lost_notices_are_made_good(listening: socket.socket) -> None:
    """500 connections end while the supervisor reads nothing: the pair holds a few hundred
    notices, the rest are not lost for good, the running total catches up."""
    ours, theirs = pairs(1)
    theirs[0].setblocking(False)
    dispatcher = handoff.Dispatcher(listening, ours)
    dispatcher.handed[0] = 500
    notices = handoff.Notices(theirs[0])
    for _ in range(500):
        notices.ended_one()
    assert notices.retry is not None  # the pair filled up: sent again later
    for _ in range(100):
        assert dispatcher.notices(0)
        if dispatcher.open(0) == 0:
            break
        await asyncio.sleep(0.02)
    assert dispatcher.open(0) == 0
    for sock in ours + theirs:
        sock.close()


class _Scarce:
    """A listening socket out of file descriptors."""

    def accept(self) -> tuple[socket.socket, object]:
        raise OSError(errno.EMFILE, "Too many open files")


class _Aborted:
    def __init__(self) -> None:
        self.calls = 0

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        if self.calls == 1:
            raise OSError(errno.ECONNABORTED, "Software caused connection abort")
        raise BlockingIOError


def test_accepting_pauses_when_descriptors_run_out() -> None:
    """EMFILE returns at once (the supervisor pauses, then tries again), where retrying in
    a loop spun a core and never saw SIGTERM; a connection aborted before its turn is
    skipped."""
    ours, theirs = pairs(1)
    assert handoff.Dispatcher(_Scarce(), ours).accept() is False  # type: ignore[arg-type]
    aborted = _Aborted()
    assert handoff.Dispatcher(aborted, ours).accept() is True  # type: ignore[arg-type]
    assert aborted.calls == 2
    for sock in ours + theirs:
        sock.close()


def test_a_worker_gone_is_seen(listening: socket.socket) -> None:
    ours, theirs = pairs(2)
    dispatcher = handoff.Dispatcher(listening, ours)
    theirs[1].close()
    assert dispatcher.notices(0) and not dispatcher.notices(1)
    for sock in ours + theirs[:1]:
        sock.close()

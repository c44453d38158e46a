"""Connections accepted by a supervisor and handed to its workers, the least busy first.

With a listening socket per worker (SO_REUSEPORT) the kernel picks a connection's worker by
a hash of its addresses: 8 connections opened at once landed 3 and 5, or 2 and 6, on two
workers (measured), and an HL7 sender keeps its connections for hours, so one worker served
most of the messages while the other idled (408 to 564 messages/s from one run of the
benchmark to the next on the same machine). A supervisor therefore listens alone, accepts,
and hands each connection (its file descriptor, over a socket pair) to the worker with the
fewest open; a worker writes one byte back as each closes.

The socket pairs are SOCK_SEQPACKET: each hand-off is one message with its descriptor, never
merged with the next.
"""

import contextlib
import os
import socket
import struct

HANDED = b"c"  # supervisor -> worker, with the connection's descriptor
CLOSED = b"x"  # worker -> supervisor, a connection ended


def pair() -> tuple[socket.socket, socket.socket]:
    """The supervisor's end and the worker's (inheritable: passed to the worker)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


class Dispatcher:
    """The supervisor's side: accepts and hands over; counts what each worker has open."""

    def __init__(self, listening: socket.socket, workers: list[socket.socket]) -> None:
        self.listening = listening
        self.workers = workers
        self.open = [0] * len(workers)
        self.next = 0  # among equals, in turn

    def accept(self) -> None:
        """Every connection waiting, each to the worker with the fewest open."""
        while True:
            try:
                conn, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the peer gone before its turn (ECONNABORTED): nothing to hand
                continue
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        count = len(self.workers)
        order = [(self.next + n) % count for n in range(count)]
        chosen = min(order, key=lambda index: self.open[index])
        self.next = (chosen + 1) % count
        try:
            socket.send_fds(self.workers[chosen], [HANDED], [conn.fileno()])
        except OSError:  # that worker is going: the connection closes (the sender retries)
            return
        self.open[chosen] += 1

    def notices(self, index: int) -> bool:
        """Read a worker's notices of closed connections; False once it is gone."""
        sock = self.workers[index]
        while True:
            try:
                notice = sock.recv(16)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not notice:
                return False
            self.open[index] = max(0, self.open[index] - notice.count(CLOSED))


def from_supervisor(fd: int, supervisor: int) -> socket.socket | None:
    """In a worker: its end of the pair, if `fd` is one whose other end its supervisor (its
    parent) made; None for anything else (a worker started by hand)."""
    if supervisor != os.getppid():
        return None
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.close()
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[0] != supervisor:
        sock.close()
        return None
    return sock


def closed(sock: socket.socket) -> None:
    """In a worker: tell the supervisor a connection ended (lost if it is gone)."""
    with contextlib.suppress(OSError):
        sock.send(CLOSED)

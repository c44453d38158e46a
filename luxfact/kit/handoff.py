"""Connections accepted by a supervisor and handed to its workers, the least busy first.

With a listening socket per worker (SO_REUSEPORT) the kernel picks a connection's worker by
a hash of its addresses: 8 connections opened at once landed 3 and 5, or 2 and 6, on two
workers (measured), and an HL7 sender keeps its connections for hours, so one worker served
most of the messages while the other idled (408 to 564 messages/s from one run of the
benchmark to the next on the same machine). A supervisor therefore listens alone, accepts,
and hands each connection (its file descriptor, over a socket pair) to the worker with the
fewest open.

A worker tells how many of the connections it was handed have ended, as a running total:
a notice lost (the pair's buffer full while the supervisor is busy) is made good by the
next one, and one left unsent is sent again shortly, so the counts never drift.

The socket pairs are SOCK_SEQPACKET: each hand-off is one message with its descriptor, never
merged with the next.
"""

import asyncio
import errno
import os
import socket
import struct

HANDED = b"c"  # supervisor -> worker, with the connection's descriptor
_ENDED = struct.Struct("!Q")  # worker -> supervisor: connections ended so far
# accept() failing for want of resources (descriptors, memory): retried after a pause, as
# asyncio does, instead of at once and for ever.
_SCARCE = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
PAUSE = 1.0


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
        self.handed = [0] * len(workers)
        self.ended = [0] * len(workers)
        self.next = 0  # among equals, in turn

    def open(self, index: int) -> int:
        return self.handed[index] - self.ended[index]

    def accept(self) -> bool:
        """Every connection waiting, each to the worker with the fewest open. False when
        accepting must pause (no descriptor or memory left: trying again at once would
        spin)."""
        while True:
            try:
                conn, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as error:
                if error.errno in _SCARCE:
                    return False
                continue  # the peer gone before its turn (ECONNABORTED, EPROTO)
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        """To the least busy worker that takes it: one that stopped reading (its pair full)
        is passed over, not given every connection for being the least busy."""
        count = len(self.workers)
        order = sorted(((self.next + n) % count for n in range(count)), key=self.open)
        for index in order:
            try:
                socket.send_fds(self.workers[index], [HANDED], [conn.fileno()])
            except OSError:  # full (a stalled worker) or gone: the next one
                continue
            self.handed[index] += 1
            self.next = (index + 1) % count
            return
        # No worker takes it: the connection closes, and the sender connects again.

    def notices(self, index: int) -> bool:
        """Read a worker's notices of ended connections; False once it is gone."""
        sock = self.workers[index]
        while True:
            try:
                notice = sock.recv(_ENDED.size)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if not notice:
                return False
            if len(notice) == _ENDED.size:
                self.ended[index] = max(self.ended[index], _ENDED.unpack(notice)[0])


class Notices:
    """A worker's side of the counts: how many of its connections have ended, told to the
    supervisor as a running total, again shortly when the pair is full."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ended = 0
        self.retry: asyncio.TimerHandle | None = None

    def ended_one(self) -> None:
        self.ended += 1
        self._send()

    def _send(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        try:
            self.sock.send(_ENDED.pack(self.ended))
        except (BlockingIOError, InterruptedError):
            self.retry = asyncio.get_running_loop().call_later(0.05, self._send)
        except OSError:
            pass  # the supervisor is gone: the worker stops


def from_supervisor(fd: int, supervisor: int) -> socket.socket | None:
    """In a worker: its end of the pair, if `fd` is one whose other end its supervisor (its
    parent) made; None for anything else (a worker started by hand). The descriptor passed
    is closed either way: the socket returned holds its own."""
    if supervisor != os.getppid():
        return None
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    os.close(fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.close()
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    if struct.unpack("3i", creds)[0] != supervisor:
        sock.close()
        return None
    return sock

"""A claim on a TCP port by one group of processes: a server and its workers.

Workers share a port with a socket each (SO_REUSEPORT: the kernel spreads the connections
among them), and the kernel lets any other process of the same user join them just as
readily: a second server started on the port (another hospital's MLLP listener, another
database's web server) would silently take a share of the connections. So a server claims
the port first by binding a name only one socket of the machine can hold, in Linux's
abstract socket namespace: released when the last process holding it ends, by whatever
death, with no file to clean up. (`luxfact mllp --workers` listens alone and hands the
connections over, luxfact/kit/handoff.py; it claims its port all the same, so that a second
server on it is refused with the same words.)
"""

import os
import signal
import socket
import sys
import threading
import time


def _name(port: int) -> bytes:
    # By port only: 0.0.0.0 and an address of the machine share a port just as well.
    return f"\0luxfact-port:{port}".encode()


def supported() -> bool:
    return sys.platform == "linux"


def claim(port: int) -> socket.socket | None:
    """The claim on the port, or None when another group holds it (or this is not Linux:
    there is nothing to claim with)."""
    if not supported():
        return None
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        held.bind(_name(port))
    except OSError:
        held.close()
        return None
    return held


def holds(fd: int, port: int) -> bool:
    """Whether a file descriptor passed on by a server is its claim on the port."""
    try:
        held = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    with held:
        return held.family == socket.AF_UNIX and held.getsockname() == _name(port)


def stop_without(supervisor: int) -> None:
    """In a worker: stop as on SIGTERM once its supervisor is gone (killed outright, it
    passed nothing on). A worker left behind would go on serving a port whose claim it may
    no longer hold, or hold it with nobody to stop it. Watched from a thread, once a
    second."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="supervisor-watch").start()

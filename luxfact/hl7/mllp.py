"""The MLLP listener: HL7 v2 messages over TCP, each framed as 0x0B message 0x1C 0x0D.

Every connection is a task of its own; its messages are processed one after the other, each
in one transaction, and each answered with its ACK in the same framing. The hospital of a
message is the listener's (`--tenant`) or the one whose tenant file maps its sending
facility (MSH-4, `[integration] hl7_facilities`).

Framing problems never stop the listener nor touch another connection:

- bytes outside a frame (before a start block) are kept, not answered (no message: an ACK
  for them would put a lock-step sender one ACK behind);
- a message over `max_bytes` is read to its end block, not kept, and answered AR;
- a connection silent for `idle_timeout` seconds is closed, in a frame or between frames,
  and so is one that completes no message within twice that (bytes that make no message,
  a trickle, blanks, start blocks, keep nothing open); a message left unfinished is kept
  and, on a timeout, answered AR before the connection closes;
- beyond `max_connections` open at once, a new connection is closed at once.
"""

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select

from luxfact.db.engine import Database
from luxfact.db.errors import DATABASE_UNAVAILABLE, storage_full
from luxfact.hl7 import ack as acks
from luxfact.hl7 import parse, service
from luxfact.kit import context, handoff
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.tenancy.models import Tenant

START, END = b"\x0b", b"\x1c\x0d"
MAX_BYTES = parse.MAX_BYTES
# What is kept of a message that is refused for its size or its framing.
KEPT_BYTES = parse.KEPT_BYTES
READ_SIZE = 64 * 1024
FACILITY_TTL = 30.0
# Connections open at once (each may hold a message of up to max_bytes being read): a few
# per sending system is the usual, so this bounds memory against a misbehaving peer.
MAX_CONNECTIONS = 200

log = logging.getLogger("luxfact.mllp")


def frame(payload: bytes) -> bytes:
    return START + payload + END


class Frame:
    """The bytes of a frame being read: all of them up to `max_bytes`; past that only its
    first KEPT_BYTES (for the log and the ACK), the rest counted and dropped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.data = bytearray()

    def add(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size <= self.max_bytes:
            self.data += data
        elif len(self.data) > KEPT_BYTES:
            del self.data[KEPT_BYTES:]
        elif len(self.data) < KEPT_BYTES:
            self.data += data[:KEPT_BYTES - len(self.data)]

    def kept(self) -> bytes:
        return bytes(self.data)


@dataclass
class Facilities:
    """MSH-4 sending facility -> tenant, from the tenants' files (as synced), re-read every
    FACILITY_TTL seconds so that a `tenants sync` is seen without a restart."""

    db: Database
    mapping: dict[str, tuple[uuid.UUID, str]] = field(default_factory=dict)
    read_at: float = -FACILITY_TTL

    async def lookup(self, facility: str) -> tuple[uuid.UUID, str] | None:
        if time.monotonic() - self.read_at > FACILITY_TTL:
            async with self.db.transaction() as session:
                tenants = (await session.execute(
                    select(Tenant.id, Tenant.slug, Tenant.config)  # type: ignore[call-overload]
                    .where(Tenant.active))).all()
            mapping: dict[str, tuple[uuid.UUID, str] | None] = {}
            for row in tenants:
                for name in (row.config or {}).get("integration", {}).get(
                        "hl7_facilities", []):
                    # Claimed by two hospitals (stored before `tenants sync` refused it):
                    # mapped to neither, rather than to whichever row came last.
                    mapping[name] = None if name in mapping else (row.id, row.slug)
            self.mapping = {name: found for name, found in mapping.items() if found}
            self.read_at = time.monotonic()
        return self.mapping.get(facility)


class Listener:
    def __init__(self, db: Database, *, tenant: tuple[uuid.UUID, str] | None = None,
                 idle_timeout: float = 60.0, max_bytes: int = MAX_BYTES,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.db = db
        self.tenant = tenant
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_bytes = max_bytes
        self.facilities = Facilities(db)
        self.connections: set[asyncio.Task[None]] = set()
        self.readers: set[asyncio.StreamReader] = set()
        self.closing = False
        self.server: asyncio.Server | None = None
        self.handoff: socket.socket | None = None
        self.handed: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Listen, alone on the port (workers of `--workers`: `take_handed`)."""
        self.server = await asyncio.start_server(self._connection, host, port,
                                                 limit=READ_SIZE, reuse_address=True)
        return self.server

    def take_handed(self, sock: socket.socket) -> asyncio.Future[None]:
        """As a worker of `luxfact mllp --workers`: serve the connections the supervisor
        accepts and hands over (luxfact/kit/handoff.py) instead of listening. The future
        ends when the supervisor is gone."""
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self.handoff = sock
        notices = handoff.Notices(sock)
        gone: asyncio.Future[None] = loop.create_future()

        def receive() -> None:
            while True:
                try:
                    data, fds, _, _ = socket.recv_fds(sock, 16, 4)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as error:
                    log.error("mllp hand-off socket failed: %s", error)
                    data, fds = b"", []
                if not data and not fds:  # the supervisor is gone
                    loop.remove_reader(sock.fileno())
                    if not gone.done():
                        gone.set_result(None)
                    return
                if not fds:  # its descriptor lost on the way (none left here): ended
                    notices.ended_one()
                for fd in fds:
                    conn = socket.socket(fileno=fd)
                    if self.closing:
                        conn.close()
                        notices.ended_one()
                    else:
                        task = loop.create_task(self._handed(conn, notices))
                        self.handed.add(task)  # a reference, until it ends
                        task.add_done_callback(self.handed.discard)

        loop.add_reader(sock.fileno(), receive)
        return gone

    async def _handed(self, conn: socket.socket, notices: handoff.Notices) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=READ_SIZE)
        except OSError:
            conn.close()
        else:
            if self.closing:  # handed over as the worker stops: not served
                writer.transport.abort()
            else:
                await self._connection(reader, writer)
        finally:
            notices.ended_one()

    async def close(self, grace: float = 10.0) -> None:
        """Stop listening; connections are closed once their message in progress is
        answered (a message is never cut in the middle of its transaction)."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        if self.handoff is not None:
            with contextlib.suppress(ValueError, OSError):  # gone with the supervisor
                asyncio.get_running_loop().remove_reader(self.handoff.fileno())
        for reader in list(self.readers):
            reader.feed_eof()  # the read in progress ends: the connection finishes
        if self.connections:
            _, pending = await asyncio.wait(list(self.connections), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        if self.server is not None:
            await self.server.wait_closed()

    # -- one connection ---------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self.connections) >= self.max_connections:
            log.warning("mllp connection refused: %d open already", len(self.connections))
            writer.transport.abort()
            return
        self.connections.add(task)
        self.readers.add(reader)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the listener is stopping: this connection ends here
        except Exception:  # a bug must not take the listener down: this connection ends
            log.exception("mllp connection failed")
        finally:
            self.connections.discard(task)
            self.readers.discard(reader)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        frame_ = Frame(self.max_bytes)
        in_frame = False
        junk = False  # bytes outside a frame were kept already (until the next frame)
        # Only a whole message keeps a connection open: bytes that make none (a trickle,
        # blanks or start blocks between frames) would otherwise hold one of the
        # `max_connections` places for ever. Silence alone closes it sooner.
        progress = 2 * self.idle_timeout
        due = time.monotonic() + progress
        while True:
            if not buffer or buffer == b"\x1c":
                left = due - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError
                    # Not under a millisecond: a read given no time is cancelled even when
                    # its data is there.
                    chunk = await asyncio.wait_for(reader.read(READ_SIZE),
                                                   max(min(self.idle_timeout, left), 0.001))
                except TimeoutError:
                    if in_frame:
                        why = (f"no message was whole within {progress:g} s"
                               if time.monotonic() >= due else
                               f"nothing more came for {self.idle_timeout:g} s")
                        await self._unfinished(writer, frame_, buffer, why)
                    return
                if not chunk:
                    if in_frame:
                        await self._unfinished(writer, frame_, buffer, (
                            "the listener was stopping" if self.closing else
                            "the connection was closed"), reply=False)
                    return
                buffer += chunk
            if not in_frame:
                start = buffer.find(START)
                outside = bytes(buffer if start < 0 else buffer[:start])
                if outside.strip() and not junk:
                    junk = True
                    # Kept, not answered: an ACK answers a message, and a sender waiting for
                    # one per message would take this one as its next message's, and stay
                    # one ACK behind for the rest of the connection.
                    await self._answer(writer, outside[:KEPT_BYTES], parse.TransportRejected(
                        "bytes outside an MLLP frame (start block 0x0B expected)",
                        parse.Location("MSH"), parse.SEGMENT_SEQUENCE), len(outside),
                        reply=False)
                if start < 0:
                    buffer.clear()
                    continue
                del buffer[:start + 1]
                # Start blocks one after another open nothing: the last one opens the frame
                # (skipped as a run, once, not one search of the buffer each).
                del buffer[:len(buffer) - len(buffer.lstrip(START))]
                in_frame, junk = True, False
                frame_ = Frame(self.max_bytes)
            end = buffer.find(END)
            restart = buffer.find(START)
            if restart >= 0 and (end < 0 or restart < end):
                # A new start block before the end: the frame so far is broken.
                frame_.add(buffer[:restart])
                del buffer[:restart]
                in_frame = False
                if not frame_.kept().strip():
                    # Start blocks one after another hold no message: nothing to answer or
                    # keep (a peer sending megabytes of them would otherwise get, and leave
                    # in the log, one rejection each).
                    continue
                await self._answer(writer, frame_.kept(), parse.TransportRejected(
                    "a start block (0x0B) came before the end of the message (0x1C 0x0D)",
                    parse.Location("MSH"), parse.SEGMENT_SEQUENCE), frame_.size)
                continue
            if end < 0:
                # A 0x1C at the very end may be the first half of the end block: kept back.
                take = len(buffer) - 1 if buffer.endswith(b"\x1c") else len(buffer)
                frame_.add(buffer[:take])
                del buffer[:take]
                continue
            frame_.add(buffer[:end])
            del buffer[:end + len(END)]
            in_frame = False
            due = time.monotonic() + progress  # a whole message: the sender is working
            if frame_.size > self.max_bytes:
                await self._answer(writer, frame_.kept(), parse.TransportRejected(
                    f"the message is over {self.max_bytes} bytes ({frame_.size}): not "
                    "processed", parse.Location("MSH"), parse.DATA_TYPE), frame_.size)
            else:
                await self._answer(writer, frame_.kept(), None, frame_.size)

    async def _unfinished(self, writer: asyncio.StreamWriter, frame_: Frame,
                          buffer: bytearray, why: str, *, reply: bool = True) -> None:
        """A message begun and never ended: kept (rejected), so that the log shows why its
        sender heard nothing, and answered AR when the sender may still be listening."""
        frame_.add(buffer)  # a 0x1C held back, waiting for its 0x0D
        if not frame_.kept().strip():
            return
        missing = ("a 0x1C came without the 0x0D that must follow it"
                   if b"\x1c" in frame_.kept() else "its end block (0x1C 0x0D) never came")
        await self._answer(writer, frame_.kept(), parse.TransportRejected(
            f"the message has no end: {missing} ({why})", parse.Location("MSH"),
            parse.SEGMENT_SEQUENCE), frame_.size, reply=reply)

    # -- one message --------------------------------------------------------------------

    async def _answer(self, writer: asyncio.StreamWriter, payload: bytes,
                      rejection: parse.Rejected | None, size: int, *,
                      reply: bool = True) -> None:
        """Process and keep what was received; answer it when `reply`."""
        info = context.RequestInfo(route="mllp")
        token = context.install(info)
        started = time.perf_counter()
        try:
            text, code, charset, kind = await self._process(info, payload, rejection, size)
            if reply:
                writer.write(frame(text.encode(charset, errors="replace")))
                try:
                    # A peer that stops reading its ACKs is idle too: its connection is
                    # closed.
                    await asyncio.wait_for(writer.drain(), self.idle_timeout)
                except TimeoutError:
                    # Closing would wait for the unread data to drain: dropped instead.
                    writer.transport.abort()
                    raise ConnectionError(
                        "the peer does not read its acknowledgements") from None
            log.info("MLLP %s %s", kind or "?", code, extra={"fields": {
                "route": "mllp", "message_type": kind, "ack": code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2)}})
        finally:
            context.reset(token)

    async def _process(self, info: context.RequestInfo, payload: bytes,
                       rejection: parse.Rejected | None, size: int
                       ) -> tuple[str, str, str, str]:
        parsed: parse.Parsed | None = None
        header: parse.Header | None = None
        if rejection is not None:
            header = parse.header_of(payload)
            rejection.header = header
        else:
            try:
                parsed = parse.read(payload)
                header = parsed.header
            except parse.Rejected as exc:
                rejection, header = exc, exc.header
        charset = header.charset if header else "utf-8"
        kind = header.type_code if header else ""
        tenant = self.tenant
        if tenant is None:
            facility = header.sending_facility if header else ""
            try:
                tenant = await self.facilities.lookup(facility) if facility else None
            except DATABASE_UNAVAILABLE:
                return _reject(header, "the database is not reachable: deliver the message "
                               "again later"), acks.REJECT, charset, kind
            if tenant is None:
                reason = (f"MSH-4: sending facility {facility!r} is not mapped to a hospital"
                          if facility else "MSH-4 (sending facility) is needed to find the "
                          "hospital")
                if rejection is not None:
                    reason = f"{rejection.reason}; {reason}"
                return _reject(header, reason, parse.UNKNOWN_KEY), acks.REJECT, charset, kind
        tenant_id, slug = tenant
        info.tenant_id, info.tenant_slug = tenant_id, slug
        info.actor = service.actor_for(header.sending_facility if header else "")
        try:
            received = await service.receive_alone(
                self.db, tenant_id, payload, channel="mllp", parsed=parsed,
                rejection=rejection, size=size)
        except DATABASE_UNAVAILABLE as exc:
            if storage_full(exc):  # SQLite's full disk is an OperationalError
                log.error("database disk full")
                return _reject(header, "the hospital's database is full: deliver the "
                               "message again later"), acks.REJECT, charset, kind
            log.warning("database unavailable")
            return _reject(header, "the database is not reachable: deliver the message "
                           "again later"), acks.REJECT, charset, kind
        except Exception as exc:
            if storage_full(exc):
                log.error("database disk full")
                return _reject(header, "the hospital's database is full: deliver the message "
                               "again later"), acks.REJECT, charset, kind
            log.exception("mllp message failed")
            return _reject(header, "the message could not be processed (internal error): "
                           "deliver it again, or ask the hospital's administrator"), \
                acks.REJECT, charset, kind
        return received.ack, received.code, received.charset, kind


def _reject(header: parse.Header | None, reason: str,
            code: str = parse.INTERNAL_ERROR) -> str:
    return acks.build(header, acks.Outcome(acks.REJECT, reason, code), "LFX" +
                      uuid.uuid4().hex[:17].upper(), utcnow().astimezone(LUXEMBOURG))


async def tenant_by_slug(db: Database, slug: str) -> tuple[uuid.UUID, str] | None:
    async with db.transaction() as session:
        row = (await session.execute(select(Tenant.id).where(  # type: ignore[call-overload]
            Tenant.slug == slug))).first()
    return (row.id, slug) if row else None

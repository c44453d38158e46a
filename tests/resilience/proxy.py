"""A TCP relay on loopback in front of PostgreSQL, which a test switches to play a restart.

The application connects to the relay instead of the database. `cut()` closes every relayed
connection at once, both sides, as a server going down does, and then refuses new ones;
`starting_up()` answers new ones as PostgreSQL does while it recovers (FATAL 57P03, "the
database system is starting up"); `forward()` relays again. The real server is never
touched: other tests and other work use it.

The relay runs its own event loop on a thread of its own, so it keeps relaying while the
test's loop is blocked (a server started with blocking calls, a synchronous wait).
"""

import asyncio
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal

Mode = Literal["forward", "refuse", "starting_up"]

SSL_REQUEST = 80877103
# ErrorResponse fields: severity (localised and not), SQLSTATE, message; then a terminator.
_STARTING_UP_FIELDS = (b"SFATAL\x00VFATAL\x00C57P03\x00"
                       b"Mthe database system is starting up\x00\x00")
STARTING_UP = b"E" + struct.pack("!I", 4 + len(_STARTING_UP_FIELDS)) + _STARTING_UP_FIELDS


class PostgresProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: Mode = "forward"
        self.port = 0
        self.relayed = 0  # connections relayed since the start (the app did go through here)
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------ control (test's thread)

    def start(self) -> int:
        self._thread.start()
        self._call(self._listen())
        return self.port

    def stop(self) -> None:
        self._call(self._close_all(stop=True))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> int:
        """Close every open connection (both sides) and refuse new ones; how many were cut."""
        return self._call(self._switch("refuse"))

    def starting_up(self) -> None:
        self._call(self._switch("starting_up"))

    def forward(self) -> None:
        self._call(self._switch("forward"))

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    # ------------------------------------------------------------ the relay (its own loop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _switch(self, mode: Mode) -> int:
        self.mode = mode
        return 0 if mode == "forward" else await self._close_all()

    async def _close_all(self, stop: bool = False) -> int:
        pairs = list(self._pairs)
        for client, server in pairs:
            # abort(): no graceful shutdown, whatever was in flight is lost, as in a crash.
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()
        if stop and self._server is not None:
            self._server.close()
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        if self.mode == "starting_up":
            await self._answer_starting_up(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        if self.mode != "forward":  # switched while connecting
            up_writer.transport.abort()
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self.relayed += 1
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side gone: the other goes too (PostgreSQL has no half-open conversation).
            target.transport.abort()

    @staticmethod
    async def _answer_starting_up(reader: asyncio.StreamReader,
                                  writer: asyncio.StreamWriter) -> None:
        """Read the startup packet (after declining SSL, if asked) and refuse it with the
        error PostgreSQL sends while it recovers."""
        try:
            async with asyncio.timeout(5):
                length, code = struct.unpack("!II", await reader.readexactly(8))
                if code == SSL_REQUEST:
                    writer.write(b"N")
                    await writer.drain()
                    length, code = struct.unpack("!II", await reader.readexactly(8))
                await reader.readexactly(length - 8)
                writer.write(STARTING_UP)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

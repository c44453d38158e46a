"""A real HTTP receiver on loopback that records what it gets and answers 200, 500, or
never (hangs until closed)."""

import asyncio
import contextlib
from dataclasses import dataclass, field

from tests.live import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    mode: str = "ok"  # ok, fail, hang, flood (200, then a body that never ends)
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    server: asyncio.Server | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            self.arrived.set()
            if self.mode == "hang":
                await self.release.wait()
                return
            if self.mode == "flood":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                while not self.release.is_set():
                    writer.write(b"x" * 65536)
                    await writer.drain()
                return
            status = b"200 OK" if self.mode == "ok" else b"500 Internal Server Error"
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n"
                         b"Connection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def start(self) -> "Receiver":
        self.port = free_port()
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.release.set()
            self.server.close()
            await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

"""What a test sees of the database protocol: the messages written to PostgreSQL's socket."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession


async def driver_of(session: AsyncSession) -> Any:
    """The asyncpg connection under a session (its transaction begun on the session side)."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection


@contextmanager
def socket_writes(driver: Any) -> Iterator[list[bytes]]:
    """Every write to the connection's socket while the block runs: one per round trip,
    since asyncpg sends each statement's messages in one write and waits for the answer."""
    transport = driver._transport
    writes: list[bytes] = []
    write = transport.write

    def counted(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = counted
    try:
        yield writes
    finally:
        del transport.write

"""API keys recently found valid, kept by each worker for a few seconds.

Looking a key up is one round trip on every API request; on this machine the write to the
database's socket alone costs the worker about 0.15 ms, and remembering keys raised the API
benchmark's median ratio from 0.30 to 0.33 (docs/performance.md). A key found valid is
therefore trusted for `KEY_CACHE_SECONDS` without asking the database again. A change to
keys (a revocation, a hospital erased) is announced on PostgreSQL's LISTEN/NOTIFY channel
when its transaction commits, and every worker forgets the keys it remembers when it hears
it; the window bounds the wait only where no notification can come (SQLite across
processes, a listener lost). Unknown and revoked keys are never kept, so every refusal is
the database's answer (docs/security.md).
"""

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import asyncpg
from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

log = logging.getLogger(__name__)

KEY_CACHE_SECONDS = 5.0
MAX_KEYS = 1024  # keys in use at once in one deployment: a few per hospital system


P = TypeVar("P")


class RecentKeys(Generic[P]):
    """Valid keys by (tenant, key hash), each for `seconds` after its look-up."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, size: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._keys: OrderedDict[tuple[uuid.UUID, str], tuple[float, P]] = OrderedDict()
        # Counts the clears: a look-up that began before a clear must not put back what the
        # clear removed (a key read valid just before its revocation committed).
        self.generation = 0

    def get(self, tenant_id: uuid.UUID, key_hash: str) -> P | None:
        found = self._keys.get((tenant_id, key_hash))
        if found is None:
            return None
        if self.clock() >= found[0]:
            del self._keys[(tenant_id, key_hash)]
            return None
        return found[1]

    def put(self, tenant_id: uuid.UUID, key_hash: str, principal: P, generation: int) -> None:
        """Remember a key found valid by a look-up begun at `generation`."""
        if generation != self.generation:
            return
        self._keys[(tenant_id, key_hash)] = (self.clock() + self.seconds, principal)
        self._keys.move_to_end((tenant_id, key_hash))
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)  # the longest-kept one

    def clear(self) -> None:
        self.generation += 1
        self._keys.clear()


# --- telling the other workers -----------------------------------------------------------

# PostgreSQL's LISTEN/NOTIFY channel on which a change to any key (a revocation, a hospital
# erased) is announced; every worker listening forgets the keys it remembers when it hears.
CHANNEL = "luxfact_api_keys"
NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', '')")


async def announce_change(session: AsyncSession, keys: RecentKeys[Any]) -> None:
    """Keys changed in this transaction: forget them here now, and in every listening worker
    when it commits (PostgreSQL delivers a notification at commit, none on rollback)."""
    keys.clear()
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(NOTIFY)


class ChangeListener:
    """A worker's ear on CHANNEL: a connection of its own, LISTENing for the life of the
    worker. Lost (a database restart), it forgets every key and connects again every
    RETRY_SECONDS; meanwhile the window of `KEY_CACHE_SECONDS` bounds what a revocation
    waits for."""

    RETRY_SECONDS = 5.0

    def __init__(self, keys: RecentKeys[Any]) -> None:
        self.keys = keys
        self.connection: asyncpg.Connection | None = None
        self.dsn = ""
        self.retry: asyncio.Task[None] | None = None
        self.stopped = False

    async def start(self, dsn: str) -> None:
        self.dsn = dsn
        if not await self._listen():
            log.warning("not listening for API key changes: a revoked key may be accepted "
                        "for %s s by this worker until it can", KEY_CACHE_SECONDS)
            self.retry = asyncio.create_task(self._reconnect())

    async def _listen(self) -> bool:
        connection = None
        try:
            connection = await asyncpg.connect(self.dsn, timeout=5)
            await connection.add_listener(CHANNEL, self._heard)
            connection.add_termination_listener(self._lost)
        except Exception as exc:  # any failure: the window is the fallback, and we retry
            log.warning("cannot listen for API key changes: %s", type(exc).__name__)
            if connection is not None:
                connection.terminate()
            return False
        self.connection = connection
        self.keys.clear()  # whatever was announced while not listening
        return True

    def _heard(self, *_args: object) -> None:
        self.keys.clear()

    def _lost(self, *_args: object) -> None:
        self.connection = None
        self.keys.clear()
        if not self.stopped and (self.retry is None or self.retry.done()):
            log.warning("lost the connection listening for API key changes; reconnecting")
            self.retry = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self.stopped:
            await asyncio.sleep(self.RETRY_SECONDS)
            if await self._listen():
                return

    async def stop(self) -> None:
        self.stopped = True
        if self.retry is not None:
            self.retry.cancel()
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                await connection.close(timeout=2)
            except Exception:  # closing at shutdown: nothing left to do but drop it
                connection.terminate()

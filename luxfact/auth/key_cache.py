"""API keys recently found valid, kept by each worker for a few seconds.

Looking a key up is one round trip on every API request; on this machine a round trip costs
the worker about 0.3 ms of its own time, a tenth of a recorded act (docs/performance.md). A
key found valid is therefore trusted for `KEY_CACHE_SECONDS` without asking the database
again. The cost is stated in docs/security.md: a key revoked through one worker stops
working there at once (`forget`), and in the other workers and processes within that time.
Unknown and revoked keys are never kept, so every refusal is the database's answer.
"""

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

KEY_CACHE_SECONDS = 5.0
MAX_KEYS = 1024  # keys in use at once in one deployment: a few per hospital system


class HasId(Protocol):
    id: uuid.UUID


P = TypeVar("P", bound=HasId)


class RecentKeys(Generic[P]):
    """Valid keys by (tenant, key hash), each for `seconds` after its look-up."""

    def __init__(self, seconds: float = KEY_CACHE_SECONDS, size: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._keys: OrderedDict[tuple[uuid.UUID, str], tuple[float, P]] = OrderedDict()

    def get(self, tenant_id: uuid.UUID, key_hash: str) -> P | None:
        found = self._keys.get((tenant_id, key_hash))
        if found is None:
            return None
        if self.clock() >= found[0]:
            del self._keys[(tenant_id, key_hash)]
            return None
        return found[1]

    def put(self, tenant_id: uuid.UUID, key_hash: str, principal: P) -> None:
        self._keys[(tenant_id, key_hash)] = (self.clock() + self.seconds, principal)
        self._keys.move_to_end((tenant_id, key_hash))
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)  # the longest-kept one

    def forget(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        """A key revoked here: refused from the next request on, in this process."""
        for entry in [k for k, (_, p) in self._keys.items()
                      if k[0] == tenant_id and p.id == key_id]:
            del self._keys[entry]

    def clear(self) -> None:
        self._keys.clear()

"""Login throttling: after repeated failures for an account or from an address, wait.

Kept in the process's memory: each server process counts on its own, so with N processes an
attacker gets at most N times the allowance before every one of them refuses. That bounds
guessing well enough for passwords checked by a slow hash; a shared store would be needed
for an exact count across processes.
"""

import time
from collections import deque

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window: int = WINDOW_SECONDS) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        found = self._failures.setdefault(key, deque())
        while found and now - found[0] > self.window:
            found.popleft()
        if not found:
            del self._failures[key]
            return deque()
        return found

    def wait_seconds(self, keys: list[str], now: float | None = None) -> int:
        """0 when a login may be tried; else how long to wait, in seconds."""
        now = time.monotonic() if now is None else now
        longest = 0.0
        for key in keys:
            recent = self._recent(key, now)
            if len(recent) >= self.max_failures:
                longest = max(longest, self.window - (now - recent[0]))
        return int(longest) + (1 if longest else 0)

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._recent(key, now)
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)

"""What each kind of job does: `@handles("kind")` on `async def run(session, job)`, or a
`Staged` job whose middle step waits on the outside world with no transaction open."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

Handler = Callable[[AsyncSession, Any], Awaitable[None]]


@dataclass(frozen=True)
class Staged:
    """A job in three steps, for work that waits on another system (a webhook's receiver,
    up to its timeout): `prepare(session, job)` reads what the call needs in one
    transaction (None: nothing to call, the job is done there); `call(plan)` runs with no
    transaction open, so no database lock or connection waits with it (on SQLite a
    transaction holds the only write lock); `finish(session, job, plan, outcome)` records
    the outcome in a second transaction with the job's `done` mark. A failure of any step
    is the job's failure, retried as any other. A worker dying between the call and its
    record leaves the job to be recovered and called again: at least once, not exactly."""
    prepare: Callable[[AsyncSession, Any], Awaitable[Any | None]]
    call: Callable[[Any], Awaitable[Any]]
    finish: Callable[[AsyncSession, Any, Any, Any], Awaitable[None]]


HANDLERS: dict[str, Handler | Staged] = {}


class Permanent(Exception):
    """A failure that no retry will cure (bad payload): the job dies at once."""


def handles(kind: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[kind] = handler
        return handler
    return register


def stages(kind: str, staged: Staged) -> Staged:
    HANDLERS[kind] = staged
    return staged

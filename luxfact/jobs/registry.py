"""What each kind of job does: `@handles("kind")` on `async def run(session, job)`."""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

Handler = Callable[[AsyncSession, Any], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


class Permanent(Exception):
    """A failure that no retry will cure (bad payload): the job dies at once."""


def handles(kind: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[kind] = handler
        return handler
    return register

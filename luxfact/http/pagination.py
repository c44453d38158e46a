"""Cursor pagination: an opaque cursor holding the sort key of the last item returned.

Cursors survive inserts between pages (no skipped or repeated items, unlike offsets) and are
signed-free on purpose: they carry only a sort position, never anything the client could not
see already, and every query still filters by tenant.
"""

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from luxfact.kit.errors import ValidationFailed
from luxfact.kit.types import MAX_YEAR, MIN_YEAR

T = TypeVar("T")


class PageQuery(BaseModel):
    # An unknown parameter is refused: a misspelt filter must not silently list everything.
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(default=None, max_length=500)
    limit: int = Field(default=50, ge=1, le=200)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def bad_cursor() -> ValidationFailed:
    return ValidationFailed(errors=[{"field": "query.cursor",
                                     "reason": "not a cursor returned by this list"}])


def encode_cursor(position: list[Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, list) or len(position) != size:
        raise bad_cursor()
    return position


def decode_time_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """A cursor over (time, id), the order of every "newest first" list."""
    position = decode_cursor(cursor, 2)
    if position is None:
        return None
    try:
        at, last_id = datetime.fromisoformat(position[0]), uuid.UUID(position[1])
        # A forged year 1 or 9999 shifted to UTC would overflow in the database layer.
        if at.tzinfo is None or not MIN_YEAR <= at.astimezone(UTC).year <= MAX_YEAR:
            raise ValueError(position[0])
    except (TypeError, ValueError, OverflowError):
        raise bad_cursor() from None
    return at, last_id


def page(model: type[BaseModel], rows: list[Any], limit: int,
         position: Callable[[Any], list[Any]]) -> BaseModel:
    """A page of `model` from rows fetched with `limit + 1`: the extra row only says that
    there is more, and the cursor points after the last row shown."""
    shown = rows[:limit]
    cursor = encode_cursor(position(shown[-1])) if len(rows) > limit and shown else None
    return Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(r, from_attributes=True) for r in shown],
        next_cursor=cursor)


def whole(model: type[BaseModel], rows: list[Any]) -> BaseModel:
    """A list short enough to return at once, in the same shape as a page."""
    return Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(r, from_attributes=True) for r in rows])

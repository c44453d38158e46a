"""Time: stored in UTC, shown and cut into days in Europe/Luxembourg."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LUXEMBOURG = ZoneInfo("Europe/Luxembourg")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken as Luxembourg local time (the desk's)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=LUXEMBOURG)
    return value.astimezone(UTC)

"""Time: stored in UTC, shown and cut into days in Europe/Luxembourg."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LUXEMBOURG = ZoneInfo("Europe/Luxembourg")


def utcnow() -> datetime:
    return datetime.now(UTC)


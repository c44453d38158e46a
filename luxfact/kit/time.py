"""Time: stored in UTC, shown and cut into days in Europe/Luxembourg."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LUXEMBOURG = ZoneInfo("Europe/Luxembourg")


def utcnow() -> datetime:
    return datetime.now(UTC)



def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """A calendar month as [start, end) in Luxembourg time: what "issued in November" means."""
    start = datetime(year, month, 1, tzinfo=LUXEMBOURG)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=LUXEMBOURG)
    return start, end

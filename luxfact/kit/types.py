"""Input types stricter than pydantic's defaults: a date is an ISO string, never a number."""

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# Years a hospital record can carry; beyond them a date is a typo (and 0001 or 9999 shifted
# by a time zone would overflow).
MIN_YEAR, MAX_YEAR = 1850, 2200


def _year(value: str) -> None:
    if not MIN_YEAR <= int(value[:4]) <= MAX_YEAR:
        raise ValueError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")


def _iso_date(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    _year(value)
    return value


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value[:10]) or "T" not in value:
        raise ValueError("expected a date-time as YYYY-MM-DDTHH:MM:SS with a time zone")
    _year(value)
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime), AfterValidator(_utc)]


def _no_control(value: str) -> str:
    # PostgreSQL refuses NUL in text, and no other control character belongs in a reason or
    # a reference a person typed: refuse them at the door, with the field's name.
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("control characters are not allowed")
    return value


# One line of text typed by a person (a reason, a reference): no control characters.
PlainText = Annotated[str, AfterValidator(_no_control)]

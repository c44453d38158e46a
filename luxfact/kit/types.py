"""Input types stricter than pydantic's defaults: a date is an ISO string, never a number."""

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_date(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


def _iso_datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value[:10]) or "T" not in value:
        raise ValueError("expected a date-time as YYYY-MM-DDTHH:MM:SS with a time zone")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_iso_date)]
IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_datetime)]

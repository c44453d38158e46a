"""Column types that behave the same on SQLite and PostgreSQL."""

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases.

    SQLite has no time zones and hands back naive values; PostgreSQL's timestamptz is used
    as it is.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type() -> JSON:
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact)."""
    return JSON().with_variant(JSONB(), "postgresql")  # type: ignore[return-value]


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal stored as text: SQLite has no exact numeric type (it would store REAL).

    Used for coefficients, key-letter values and rates, whose digits are the tariff's own.
    """

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError("DecimalText takes Decimal values only (never float)")
        return format(value, "f")

    def process_result_value(self, value: str | None, dialect: object) -> Decimal | None:
        return None if value is None else Decimal(value)


def search_key_type(length: int = 100) -> String:
    """Text compared byte by byte: prefix ranges and keyset pagination need an order that
    is the same in SQL and in Python, whatever the cluster's collation (COLLATE "C")."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")  # type: ignore[return-value]

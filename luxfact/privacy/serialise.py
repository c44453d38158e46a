"""Database rows as JSON values, the same way in every export: no I/O.

UUIDs, dates and datetimes (UTC, ISO 8601) as strings, money as the integer cents it is
stored in, binary content (PDFs, claim files) as base64. Keys are sorted when written, so two
exports of the same data are the same bytes.
"""

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

# Never exported, even to the hospital itself: credentials, and a column every row repeats.
OMITTED = {
    "users": {"password_hash"},
    "api_keys": {"key_hash"},
    "webhook_endpoints": {"secret"},
}
ALWAYS_OMITTED = {"tenant_id"}


def value(item: Any) -> Any:
    if isinstance(item, uuid.UUID | Decimal):
        return str(item)
    if isinstance(item, datetime | date):
        return item.isoformat()
    if isinstance(item, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(item)).decode("ascii")
    if isinstance(item, Mapping):
        return {str(k): value(v) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return [value(v) for v in item]
    return item


def row(table: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """One row of `table` (a SQLAlchemy row mapping) as a JSON object."""
    skip = ALWAYS_OMITTED | OMITTED.get(table, set())
    return {name: value(item) for name, item in mapping.items() if name not in skip}


def hl7_text(raw: bytes) -> tuple[str, str]:
    """An HL7 message as text, exactly: UTF-8 when it is, else Latin-1 (which maps every byte,
    so nothing is lost either way); returns (text, encoding)."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def dumps(document: Any) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def json_line(document: Any) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def rows(table: str, mappings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [row(table, m) for m in mappings]

"""The hospitals served. Not tenant-owned itself: it is the registry of tenants."""

import uuid
from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, json_field, utc_column
from luxfact.kit.time import utcnow


class Tenant(SQLModel, table=True):
    __tablename__ = "tenants"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    slug: str = Field(max_length=40, unique=True)
    legal_name: str = Field(max_length=200)
    cns_provider_code: str = Field(max_length=8)
    iban: str | None = Field(default=None, max_length=34)
    bic: str | None = Field(default=None, max_length=11)
    invoice_number_pattern: str = Field(max_length=80)
    credit_note_number_pattern: str = Field(max_length=80)
    default_language: str = Field(max_length=2)
    timezone: str = Field(max_length=64)
    # The rest of the tenant file (address, languages, logo, integration mappings), as read.
    config: dict[str, Any] = json_field()
    # SHA-256 of the normalised config: `tenants sync` compares it to say "unchanged".
    config_hash: str = Field(max_length=64)
    active: bool = True
    created_at: datetime = created_at_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())

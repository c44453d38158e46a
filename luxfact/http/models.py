"""Stored responses of idempotent requests."""

import uuid
from datetime import datetime

from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, json_field, tenant_id_field


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a (client, Idempotency-Key): replayed for every retry."""

    __tablename__ = "idempotency_keys"

    tenant_id: uuid.UUID = tenant_id_field()
    actor: str = Field(primary_key=True, max_length=60)
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str = Field(max_length=64)  # SHA-256 of method, path and body
    status: int
    body: str
    headers: dict[str, str] = json_field()  # ETag, Location: what a retry needs too
    created_at: datetime = created_at_field()

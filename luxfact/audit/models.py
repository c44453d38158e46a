"""The audit trail: append-only, written in the same transaction as what it records."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from luxfact.db.base import id_field, json_field, tenant_id_field, utc_column
from luxfact.kit.time import utcnow


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_at", "tenant_id", "at", "id"),
        Index("ix_audit_events_tenant_object", "tenant_id", "object_type", "object_id"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    actor: str = Field(max_length=60)  # "user:<uuid>", "key:<uuid>", "cli", "hl7:<facility>"
    action: str = Field(max_length=60)  # "patient.read", "apikey.revoke", ...
    object_type: str = Field(max_length=40)
    object_id: str = Field(max_length=64)
    request_id: str = Field(max_length=128)
    # What changed (field names, never patient identifiers in clear).
    details: dict[str, Any] = json_field()

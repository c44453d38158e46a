"""The log of HL7 v2 messages received: each kept with its ACK and what it touched."""

import uuid
from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from luxfact.db.base import id_field, tenant_id_field, utc_column
from luxfact.db.types import json_type
from luxfact.kit.time import utcnow


class HL7Message(SQLModel, table=True):
    """One message as received (bytes), how it was answered, and the patients, stays and
    acts it created or changed. A (sending facility, control id) is applied once: the unique
    constraint makes a second delivery, even a concurrent one, replay the first's ACK."""

    __tablename__ = "hl7_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "sending_facility", "control_id"),
        Index("ix_hl7_messages_tenant_received", "tenant_id", "received_at", "id"),
        Index("ix_hl7_messages_tenant_status", "tenant_id", "status", "received_at", "id"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    channel: str = Field(max_length=10)  # mllp, http
    sending_application: str = Field(default="", max_length=100)  # MSH-3
    sending_facility: str = Field(default="", max_length=100)  # MSH-4
    # MSH-10; None when a rejected message has none (NULLs never collide in the constraint).
    control_id: str | None = Field(default=None, max_length=100)
    message_type: str = Field(default="", max_length=20)  # ADT^A01
    version: str = Field(default="", max_length=10)
    status: str = Field(max_length=12)  # accepted, error, rejected
    ack_code: str = Field(max_length=2)  # AA, AE, AR
    reason: str = Field(default="", max_length=1000)
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    ack: str
    patient_ids: list[str] = Field(default_factory=list,
                                   sa_column=Column(json_type(), nullable=False))
    stay_ids: list[str] = Field(default_factory=list,
                                sa_column=Column(json_type(), nullable=False))
    act_ids: list[str] = Field(default_factory=list,
                               sa_column=Column(json_type(), nullable=False))
    attempts: int = 1
    received_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())
    processed_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())

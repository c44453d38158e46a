"""Stays (admissions), their movements, and the acts performed during them."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKeyConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, json_field, tenant_id_field, utc_column
from luxfact.db.types import json_type
from luxfact.kit.time import utcnow


class Stay(SQLModel, table=True):
    __tablename__ = "stays"
    __table_args__ = (
        UniqueConstraint("tenant_id", "external_id"),
        Index("ix_stays_tenant_patient", "tenant_id", "patient_id", "admitted_at"),
        Index("ix_stays_tenant_state", "tenant_id", "state", "admitted_at"),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    patient_id: uuid.UUID
    kind: str = Field(max_length=20)  # inpatient, day_hospital, outpatient, emergency
    state: str = Field(max_length=20)  # planned, admitted, discharged, cancelled, closed
    external_id: str | None = Field(default=None, max_length=40)  # HL7 PV1-19 visit number
    admitted_at: datetime = Field(sa_column=utc_column())
    discharged_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    # Where the patient is now: derived from the movements, kept here for fast reads.
    unit: str = Field(default="", max_length=40)
    room: str = Field(default="", max_length=20)
    bed: str = Field(default="", max_length=20)
    room_class: str = Field(default="second", max_length=10)
    admitting_doctor: str | None = Field(default=None, max_length=8)
    attending_doctor: str | None = Field(default=None, max_length=8)
    childbirth: bool = False
    psychiatric: bool = False
    # Created planned (a pre-admission, HL7 A05): the planned admission (`admitted_at`,
    # `unit`, `room`, `bed`, `room_class`), which cancelling its admission restores instead
    # of cancelling the stay. Empty for a stay admitted at once.
    pre_admission: dict[str, Any] = json_field()
    version: int = 1
    created_at: datetime = created_at_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())


class Movement(SQLModel, table=True):
    """One event of a stay, never edited: a cancellation is a movement of its own."""

    __tablename__ = "movements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "stay_id", "seq"),
        ForeignKeyConstraint(["tenant_id", "stay_id"], ["stays.tenant_id", "stays.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    stay_id: uuid.UUID
    seq: int
    type: str = Field(max_length=20)
    at: datetime = Field(sa_column=utc_column())
    unit: str = Field(default="", max_length=40)
    room: str = Field(default="", max_length=20)
    bed: str = Field(default="", max_length=20)
    room_class: str = Field(default="", max_length=10)
    cancels: uuid.UUID | None = None
    cancelled_by: uuid.UUID | None = None
    actor: str = Field(max_length=60)
    created_at: datetime = created_at_field()


class Act(SQLModel, table=True):
    """An act performed during a stay, priced when recorded (the price keeps its tariff)."""

    __tablename__ = "acts"
    __table_args__ = (
        Index("ix_acts_tenant_stay", "tenant_id", "stay_id", "performed_at"),
        ForeignKeyConstraint(["tenant_id", "stay_id"], ["stays.tenant_id", "stays.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    stay_id: uuid.UUID
    code: str = Field(max_length=20)
    performed_at: datetime = Field(sa_column=utc_column())
    performer: str | None = Field(default=None, max_length=8)
    specialty: str | None = Field(default=None, max_length=40)
    quantity: int = 1
    modifiers: list[str] = Field(default_factory=list,
                                 sa_column=Column(json_type(), nullable=False))
    note: str = Field(default="", max_length=500)
    state: str = Field(default="recorded", max_length=20)  # recorded, cancelled, invoiced
    invoice_id: uuid.UUID | None = None
    # The price when recorded: its tariff version and amounts in cents, and the whole line.
    tariff_version: str = Field(max_length=40)
    gross_cents: int
    insurer_cents: int
    patient_cents: int
    pricing: dict[str, Any] = json_field()
    version: int = 1
    created_at: datetime = created_at_field()
    updated_at: datetime = Field(default_factory=utcnow, sa_column=utc_column())

"""Invoices, their lines, the number counters, payments and the archived documents."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKeyConstraint, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column


class NumberCounter(SQLModel, table=True):
    """The last number drawn in one series (invoices, credit notes) of one year.

    Drawn by an UPDATE in the issuing transaction: the row stays locked until commit, so a
    failed issue rolls the number back with everything else and no number is ever lost.
    """

    __tablename__ = "number_counters"

    tenant_id: uuid.UUID = tenant_id_field()
    series: str = Field(primary_key=True, max_length=20)  # invoice, credit_note
    year: int = Field(primary_key=True)
    last: int = 0


class Invoice(SQLModel, table=True):
    """An issued invoice or credit note. Its number, amounts and lines never change; only
    what is owed (payments, credits) moves."""

    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "number"),
        Index("ix_invoices_tenant_issued", "tenant_id", "issued_at", "id"),
        Index("ix_invoices_tenant_patient", "tenant_id", "patient_id", "issued_at"),
        Index("ix_invoices_tenant_stay", "tenant_id", "stay_id"),
        # A credit note finds its invoice's credited lines through this.
        Index("ix_invoices_tenant_credited", "tenant_id", "credited_invoice_id"),
        Index("ix_invoices_tenant_due", "tenant_id", "doc_type", "due_on"),
        ForeignKeyConstraint(["tenant_id", "stay_id"], ["stays.tenant_id", "stays.id"]),
        ForeignKeyConstraint(["tenant_id", "patient_id"], ["patients.tenant_id", "patients.id"]),
        ForeignKeyConstraint(["tenant_id", "credited_invoice_id"],
                             ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    doc_type: str = Field(max_length=12)     # invoice, credit_note
    kind: str = Field(max_length=10)         # insurer, patient
    payer: str = Field(max_length=60)        # CNS, CMFEP, a complementary insurer, patient
    coverage_id: uuid.UUID | None = None
    billing: str = Field(max_length=8)       # interim, final (a credit note: its invoice's)
    stay_id: uuid.UUID
    patient_id: uuid.UUID
    number: str = Field(max_length=40)
    year: int
    seq: int
    issued_at: datetime = Field(sa_column=utc_column())
    issued_on: date                           # Luxembourg day of issue
    due_on: date | None = None
    period_from: date
    period_to: date
    language: str = Field(max_length=2)
    currency: str = Field(default="EUR", max_length=3)
    total_cents: int                          # what this document bills (or credits)
    gross_cents: int                          # the lines' gross amounts, for the record
    credited_invoice_id: uuid.UUID | None = None
    reason: str = Field(default="", max_length=500)
    reference: str = Field(max_length=25)     # ISO 11649 RF creditor reference
    # What is owed moves with payments and credit notes; the trigger leaves these alone.
    paid_cents: int = 0
    credited_cents: int = 0
    actor: str = Field(max_length=60)
    version: int = 1
    created_at: datetime = created_at_field()


class InvoiceLine(SQLModel, table=True):
    """One billed part of an act, or of the daily participation, with its explanation."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        Index("ix_invoice_lines_tenant_act", "tenant_id", "act_id"),
        # Whether a line was credited: one index probe per line.
        Index("ix_invoice_lines_tenant_credited", "tenant_id", "credited_invoice_id",
              "credited_seq"),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    invoice_id: uuid.UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    act_id: uuid.UUID | None = None           # None: daily participation
    part: str = Field(max_length=14)          # insurer, patient, complementary
    code: str = Field(max_length=20)
    label_fr: str = Field(max_length=300)
    label_de: str = Field(max_length=300)
    day: date                                 # the act's day, or the first participation day
    last_day: date                            # the same, or the last participation day
    quantity: int                             # acts, or participation days charged
    unit_price_cents: int
    gross_cents: int
    insurer_cents: int
    patient_cents: int
    amount_cents: int                         # what this line bills to the invoice's payer
    # A credit note's line names the line it credits: its invoice and its seq.
    credited_invoice_id: uuid.UUID | None = None
    credited_seq: int | None = None
    # The engine's record and its explanation: written once, read whole, never queried
    # inside, so plain JSON (text) rather than JSONB spares PostgreSQL a parse per line.
    pricing: dict[str, Any] = Field(default_factory=dict,
                                    sa_column=Column(JSON(), nullable=False))


class Payment(SQLModel, table=True):
    """A payment received (recorded, never processed here)."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_tenant_invoice", "tenant_id", "invoice_id"),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    invoice_id: uuid.UUID
    amount_cents: int
    paid_on: date
    method: str = Field(max_length=20)        # transfer, card, cash, cheque, direct_debit
    reference: str = Field(default="", max_length=140)
    actor: str = Field(max_length=60)
    created_at: datetime = created_at_field()


class InvoiceDocument(SQLModel, table=True):
    """A rendered PDF, archived as first rendered and served byte for byte ever after."""

    __tablename__ = "invoice_documents"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    invoice_id: uuid.UUID = Field(primary_key=True)
    # invoice (the invoice or credit note itself) or reminder-N (the Nth reminder letter).
    kind: str = Field(primary_key=True, max_length=20)
    sha256: str = Field(max_length=64)
    size: int
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = created_at_field()

"""Claim batches: the insurer invoices of one payer and month, sent as one XML file."""

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column
from luxfact.db.types import json_type

NOT_FROZEN = "state IN ('open', 'validated')"


class ClaimBatch(SQLModel, table=True):
    __tablename__ = "claim_batches"
    __table_args__ = (
        UniqueConstraint("tenant_id", "file_reference"),
        # One batch not yet frozen per payer and month, even under concurrent builds.
        Index("ix_claim_batches_one_open", "tenant_id", "payer", "period", unique=True,
              postgresql_where=text(NOT_FROZEN), sqlite_where=text(NOT_FROZEN)),
        Index("ix_claim_batches_tenant_created", "tenant_id", "created_at", "id"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    payer: str = Field(max_length=60)
    period: str = Field(max_length=7)             # YYYY-MM
    # open, validated, frozen, sent, answered, reconciled
    state: str = Field(max_length=12)
    file_reference: str = Field(max_length=40)
    invoice_count: int = 0
    line_count: int = 0
    # A month of a large hospital passes the 21 million euros of a 32-bit integer of cents.
    gross_cents: int = Field(default=0, sa_type=BigInteger)
    net_cents: int = Field(default=0, sa_type=BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    size: int | None = Field(default=None, sa_type=BigInteger)
    # The insurer's id of the return imported (identifiantGroupeTraitementOrganisme): the
    # same return imported again changes nothing.
    return_id: str | None = Field(default=None, max_length=60)
    actor: str = Field(max_length=60)
    frozen_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    sent_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    version: int = 1
    created_at: datetime = created_at_field()


class ClaimFileChunk(SQLModel, table=True):
    """A frozen claim file, in pieces of 1 MiB: a month's file can weigh hundreds of MB, and
    is written, stored and served a piece at a time, never held whole in memory."""

    __tablename__ = "claim_file_chunks"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "batch_id"],
                             ["claim_batches.tenant_id", "claim_batches.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    batch_id: uuid.UUID = Field(primary_key=True)
    n: int = Field(primary_key=True)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class ClaimBatchInvoice(SQLModel, table=True):
    """An invoice in a batch: an invoice is claimed once (its primary key says so)."""

    __tablename__ = "claim_batch_invoices"
    __table_args__ = (
        Index("ix_claim_batch_invoices_batch", "tenant_id", "batch_id"),
        ForeignKeyConstraint(["tenant_id", "batch_id"],
                             ["claim_batches.tenant_id", "claim_batches.id"]),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    invoice_id: uuid.UUID = Field(primary_key=True)
    batch_id: uuid.UUID


class ClaimLineResult(SQLModel, table=True):
    """What the insurer answered for one claimed line (or took back later)."""

    __tablename__ = "claim_line_results"
    __table_args__ = (
        Index("ix_claim_line_results_status", "tenant_id", "status", "invoice_id", "seq"),
        Index("ix_claim_line_results_batch", "tenant_id", "batch_id", "status"),
        ForeignKeyConstraint(["tenant_id", "batch_id"],
                             ["claim_batches.tenant_id", "claim_batches.id"]),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    invoice_id: uuid.UUID = Field(primary_key=True)
    seq: int = Field(primary_key=True)
    batch_id: uuid.UUID
    # paid, partly_paid, rejected, reversed (a storno took it back); resolved since:
    # written_off, credited (to be claimed again, corrected)
    status: str = Field(max_length=12)
    claimed_cents: int
    paid_cents: int
    paid_code: str = Field(max_length=20)
    insurer_invoice_id: str = Field(max_length=60)
    insurer_line_id: str = Field(max_length=60)
    return_id: str = Field(max_length=60)
    anomalies: list[dict[str, str]] = Field(default_factory=list,
                                            sa_column=Column(json_type(), nullable=False))
    updated_at: datetime = created_at_field()

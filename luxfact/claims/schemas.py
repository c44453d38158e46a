"""Claim batches over the API."""

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BatchState = Literal["open", "validated", "frozen", "sent", "answered", "reconciled"]


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    payer: str = Field(min_length=1, max_length=60, pattern=r"^[\w .\-/]+$", examples=["CNS"])
    period: str = Field(pattern=r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])$", examples=["2026-11"],
                        description="The month the invoices were issued, YYYY-MM.")


class BatchOut(BaseModel):
    id: uuid.UUID
    payer: str
    period: str
    state: BatchState
    file_reference: str
    invoice_count: int
    line_count: int
    gross: str
    net: str = Field(description="What is claimed from the insurer.")
    sha256: str | None
    size: int | None
    created_at: dt.datetime
    frozen_at: dt.datetime | None
    sent_at: dt.datetime | None
    version: int


class BatchError(BaseModel):
    invoice_id: uuid.UUID
    invoice_number: str
    stay_id: uuid.UUID
    line: int | None = Field(description="The invoice line (seq), or null for the invoice.")
    field: str
    reason: str

"""Invoices, credit notes and payments over the API. Amounts are decimal strings in euros."""

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from luxfact.http.pagination import PageQuery
from luxfact.kit.types import IsoDate, PlainText

# At most 9,999,999.99 EUR: a hospital invoice never comes near, and every sum of cents
# stays within a 32-bit integer column.
Money = Field(pattern=r"^[0-9]{1,7}(\.[0-9]{1,2})?$", examples=["19.92"],
              description="Euros as a decimal string, at most two decimals.")
InvoiceStatus = Literal["open", "partly_paid", "overdue", "paid", "credited", "overpaid"]
PaymentMethod = Literal["transfer", "card", "cash", "cheque", "direct_debit"]


class BillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["interim", "final"]
    until: IsoDate | None = Field(
        default=None, description="Interim only: bill acts and days up to this day "
        "(default: today, or the discharge).")
    dry_run: bool = Field(default=False, description="Show what would be issued; store nothing.")


class InvoiceLineOut(BaseModel):
    seq: int
    act_id: uuid.UUID | None
    part: Literal["insurer", "complementary", "patient"]
    code: str
    label_fr: str
    label_de: str
    day: dt.date
    last_day: dt.date
    quantity: int
    unit_price: str
    gross: str
    insurer: str
    patient: str
    amount: str = Field(description="What this line bills to the document's payer.")
    credited_seq: int | None = None
    explanation: str


class InvoiceOut(BaseModel):
    id: uuid.UUID | None = Field(description="Null in a dry run.")
    number: str | None = Field(description="Null in a dry run: numbers are drawn at issue.")
    doc_type: Literal["invoice", "credit_note"]
    kind: Literal["insurer", "patient"]
    payer: str
    coverage_id: uuid.UUID | None
    billing: Literal["interim", "final"]
    stay_id: uuid.UUID
    patient_id: uuid.UUID
    issued_at: dt.datetime | None
    issued_on: dt.date | None
    due_on: dt.date | None
    period_from: dt.date
    period_to: dt.date
    language: str
    currency: str
    total: str
    gross: str
    paid: str
    credited: str
    balance: str
    status: InvoiceStatus | Literal["issued", "draft"] = Field(
        description="Of an invoice: open, partly_paid, overdue, paid, credited or overpaid; "
        "`issued` for a credit note, `draft` in a dry run.")
    reference: str | None = Field(description="ISO 11649 creditor reference (RF...).")
    credited_invoice_id: uuid.UUID | None = None
    reason: str = ""
    lines: list[InvoiceLineOut]
    version: int | None = None


class BillOut(BaseModel):
    dry_run: bool
    stay_state: str
    invoices: list[InvoiceOut]


class CreditNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: PlainText = Field(min_length=1, max_length=500)
    lines: list[StrictInt] | None = Field(
        default=None, min_length=1, max_length=1000,
        description="Line numbers (seq) to credit; omitted: every line not yet credited.")


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    amount: str = Money
    paid_on: IsoDate
    method: PaymentMethod
    reference: PlainText = Field(default="", max_length=140)


class PaymentOut(BaseModel):
    id: uuid.UUID
    invoice_id: uuid.UUID
    amount: str
    paid_on: dt.date
    method: str
    reference: str
    created_at: dt.datetime


class InvoiceQuery(PageQuery):
    status: InvoiceStatus | None = None
    patient_id: uuid.UUID | None = None
    stay_id: uuid.UUID | None = None
    kind: Literal["insurer", "patient"] | None = None
    doc_type: Literal["invoice", "credit_note"] | None = None
    issued_from: IsoDate | None = Field(default=None, description="Issued on or after this day.")
    issued_to: IsoDate | None = Field(default=None, description="Issued on or before this day.")

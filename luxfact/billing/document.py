"""What a printed document says, as plain values: the renderer's only input.

The billing service builds one of these from the database; `billing.pdf` turns it into
bytes without any I/O of its own beyond the shipped layout, texts and fonts. Keeping the
two apart lets the rendering run in another process and be tested without a database.
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

DocumentKind = Literal["invoice", "credit_note", "reminder"]


@dataclass(frozen=True, slots=True)
class Address:
    name: str
    street: str = ""
    postal_code: str = ""
    city: str = ""
    country: str = "LU"


@dataclass(frozen=True, slots=True)
class Hospital:
    legal_name: str
    address: Address
    cns_provider_code: str
    iban: str | None              # None: no bank details, so no QR code and a notice instead
    bic: str | None
    logo: bytes | None = None     # PNG or JPEG bytes from the tenant's directory
    footer: str = ""              # the tenant's own footer line


@dataclass(frozen=True, slots=True)
class StayPeriod:
    kind: str                     # inpatient, day_hospital, outpatient, emergency
    admitted_on: date
    discharged_on: date | None
    period_from: date             # what this invoice covers
    period_to: date


@dataclass(frozen=True, slots=True)
class DocumentLine:
    code: str
    label: str                    # already in the document's language where the catalogue has it
    day: date
    quantity: int
    unit_price: Decimal
    amount: Decimal               # gross of the line
    insurer: Decimal
    patient: Decimal


@dataclass(frozen=True, slots=True)
class InvoiceDocument:
    kind: DocumentKind
    language: Literal["fr", "de", "en"]
    number: str                   # the invoice (or credit note) number
    issued_on: date
    due_on: date | None
    hospital: Hospital
    patient: Address
    patient_birth_date: date | None
    stay: StayPeriod | None
    lines: tuple[DocumentLine, ...]
    total: Decimal                # sum of the lines' amounts
    insurer_total: Decimal
    patient_total: Decimal
    paid: Decimal = Decimal("0.00")
    amount_due: Decimal = Decimal("0.00")
    # ISO 11649 structured creditor reference (RF..), derived from the invoice number.
    reference: str = ""
    # A credit note names the invoice it corrects and why.
    credited_number: str | None = None
    reason: str | None = None
    # A reminder names the date of the letter (issued_on is the invoice's own date).
    reminder_on: date | None = None
    currency: str = "EUR"
    notes: tuple[str, ...] = field(default_factory=tuple)

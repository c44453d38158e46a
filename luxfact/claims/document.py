"""What a claim file says, as plain values: the XML writer's only input (no database)."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class ClaimHeader:
    provider_code: str            # the hospital's CNS provider code (8 digits)
    payer: str                    # CNS, CMFEP, ...
    sent_on: date
    file_reference: str           # unique per file, e.g. LXF-90000017-202611-01
    year: int                     # the billing period
    month: int


@dataclass(frozen=True, slots=True)
class ClaimTotals:
    """The control totals of the header, known before the invoices are written."""

    invoices: int
    lines: int
    gross: Decimal
    net: Decimal


@dataclass(frozen=True, slots=True)
class ClaimStay:
    reference: str                # the stay's id (or visit number)
    kind: str                     # inpatient, day_hospital, outpatient, emergency
    admitted_at: datetime         # Luxembourg local time, naive or aware
    discharged_at: datetime | None
    unit: str
    room_class: str               # first, second
    payer: str
    member_number: str = ""
    accident_number: str | None = None
    accident_on: date | None = None   # the work accident's day, written when known


# Not frozen: a month's file makes a million of these, and a frozen dataclass takes three
# times as long to build. Nothing changes one after it is made.
@dataclass(slots=True)
class ClaimLine:
    reference: str                # the line's number on its invoice
    code: str
    modifiers: tuple[str, ...]
    day: date
    quantity: int
    gross: Decimal                # what the line costs
    net: Decimal                  # what is claimed from the insurer
    performer: str | None = None  # 8-digit provider code of the doctor
    # When the act was performed, if its time is known (heureDebut); naive means Luxembourg
    # local time. Its Luxembourg day must be `day`.
    performed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClaimInvoice:
    number: str
    matricule: str                # 13 digits
    issued_on: date
    stay: ClaimStay
    lines: tuple[ClaimLine, ...]

"""Who is billed what: a priced stay split into invoices per payer. Pure: no I/O, no clock.

Each priced act has up to three parts, each billed once: the insurer's share (to the
statutory fund or the accident insurer covering the act's day), the first-class surcharge
when a complementary insurer covers it, and what remains for the patient. The daily
participation is the patient's. A part already on an invoice that was not credited is not
billed again, so an interim invoice, a credit note and a re-billing never double-count.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from luxfact.tariffs.pricing import (
    ParticipationLine,
    PricedLine,
    StayPricing,
    explain_body,
    explain_head,
)

ZERO = Decimal("0.00")
ONE_DAY = timedelta(days=1)
PARTICIPATION_CODE = "PARTICIPATION"
PARTICIPATION_LABELS = {
    "inpatient": ("Participation journalière (hospitalisation)",
                  "Tägliche Eigenbeteiligung (stationär)"),
    "day_hospital": ("Participation journalière (hôpital de jour)",
                     "Tägliche Eigenbeteiligung (Tagesklinik)"),
}


@dataclass(frozen=True, slots=True)
class Payer:
    """A coverage that pays for a span of days."""

    name: str
    coverage_id: Any
    kind: str                       # statutory, other_fund, foreign, accident, complementary
    valid_from: date
    valid_to: date | None
    first_class: bool = False

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class DraftLine:
    act_id: Any                     # None for the daily participation
    part: str                       # insurer, complementary, patient
    code: str
    label_fr: str
    label_de: str
    day: date
    last_day: date
    quantity: int
    unit_price: Decimal
    gross: Decimal
    insurer: Decimal
    patient: Decimal
    amount: Decimal                 # what the invoice's payer is billed for this line
    pricing: dict[str, Any]


@dataclass
class DraftInvoice:
    kind: str                       # insurer, patient
    payer: str
    coverage_id: Any
    lines: list[DraftLine] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def gross(self) -> Decimal:
        return sum((line.gross for line in self.lines), ZERO)

    @property
    def period(self) -> tuple[date, date]:
        return (min(line.day for line in self.lines), max(line.last_day for line in self.lines))


class PricingChanged(Exception):
    """Acts priced differently now than when a part of them was invoiced: billing only the
    other part would leave the difference billed to nobody."""

    def __init__(self, acts: list[str]) -> None:
        super().__init__(f"pricing changed for {len(acts)} act(s)")
        self.acts = acts


class UncoveredDay(Exception):
    """An insurer's share falls on a day no coverage covers."""

    def __init__(self, day: date, code: str) -> None:
        super().__init__(f"no coverage on {day} for {code}")
        self.day = day
        self.code = code


def split(pricing: StayPricing, lines: Sequence[PricedLine], payers: Sequence[Payer],
          billed: Mapping[tuple[str, str], int], billed_days: set[date]) -> list[DraftInvoice]:
    """The invoices that bill `lines` and the participation not yet billed.

    `billed` holds the (act id, part) already on a live invoice, with the cents billed;
    `billed_days` the participation days already billed. An act is billed as a whole: if a
    part of it is on an invoice and today's price gives that part another amount, nothing
    is billed (`PricingChanged`). Each line carries the engine's record of its computation.
    Insurer invoices come first (by payer), then the patient's.
    """
    invoices: dict[tuple[str, str], DraftInvoice] = {}

    def add(kind: str, payer: Payer | None, line: DraftLine) -> None:
        name = payer.name if payer else "patient"
        key = (kind, name)
        if key not in invoices:
            invoices[key] = DraftInvoice(kind, name, payer.coverage_id if payer else None)
        invoices[key].lines.append(line)

    records: dict[tuple[Any, ...], dict[str, Any]] = {}
    changed: list[str] = []
    for line in lines:
        act_id = line.line_id
        complementary = _first_class_payer(line, payers)
        first_class = line.amounts.first_class_amount if complementary else ZERO
        parts = [("insurer", line.insurer), ("complementary", first_class),
                 ("patient", line.patient - first_class)]
        if line.gross == ZERO:
            parts = [("insurer", ZERO)]  # a free act is still billed once, to close it
        if any((act_id, part) in billed and billed[(act_id, part)] != int(amount * 100)
               for part, amount in parts):
            changed.append(act_id)
            continue
        for part, amount in parts:
            if (amount == ZERO and line.gross != ZERO) or (act_id, part) in billed:
                continue
            payer = complementary if part == "complementary" else None
            if part == "insurer":
                payer = _statutory_payer(line.day, payers)
                if payer is None:
                    raise UncoveredDay(line.day, line.code)
            kind = "patient" if part == "patient" else "insurer"
            add(kind, payer, _act_line(line, part, amount, records))
    if changed:
        raise PricingChanged(changed)
    for item in pricing.participation:
        for piece in unbilled_participation(item, billed_days):
            if piece.amount > ZERO:
                add("patient", None, _participation_line(piece))
    return sorted(invoices.values(), key=lambda inv: (inv.kind != "insurer", inv.payer))


def _statutory_payer(day: date, payers: Iterable[Payer]) -> Payer | None:
    """A work accident's insurer first, then the statutory fund (or other, or foreign)."""
    ranked = sorted((p for p in payers if p.kind != "complementary" and p.covers(day)),
                    key=lambda p: (p.kind != "accident", p.valid_from))
    return ranked[0] if ranked else None


def _first_class_payer(line: PricedLine, payers: Iterable[Payer]) -> Payer | None:
    if line.amounts.first_class_amount == ZERO:
        return None
    return next((p for p in payers if p.kind == "complementary" and p.first_class
                 and p.covers(line.day)), None)


def _act_line(line: PricedLine, part: str, amount: Decimal,
              records: dict[tuple[Any, ...], dict[str, Any]]) -> DraftLine:
    # Identical acts (same tariff, amounts, quantity and modifiers: the same single room
    # every day) share one record and the body of their explanation, computed once per
    # stay; only the explanation's first line (which act, which day) is the line's own.
    # The amounts by value: a line's `Amounts` is made when the line is read, so another
    # line's may later have the same id. The tariff is the index's own, alive all along.
    key = (id(line.tariff), line.amounts, line.act.quantity, line.act.modifiers)
    record = records.get(key)
    if record is None:
        record = records[key] = _record(line)
    pricing = {**record, "explanation": explain_head(line) + "\n" + record["explanation"]}
    return DraftLine(
        act_id=line.line_id, part=part, code=line.code, label_fr=line.label_fr,
        label_de=line.label_de, day=line.day, last_day=line.day, quantity=line.quantity,
        unit_price=line.unit_price, gross=line.gross, insurer=line.insurer,
        patient=line.patient, amount=amount, pricing=pricing)


# What a line's record keeps of the computation; code, day, amounts are columns already.
RECORD_FIELDS = ("version_id", "nomenclature", "category", "key_letter", "key_letter_value",
                 "cote", "coefficient", "unit_price", "percent", "modifiers", "reasons")


def _record(line: PricedLine) -> dict[str, Any]:
    record = {name: _jsonable(getattr(line, name)) for name in RECORD_FIELDS}
    record["explanation"] = explain_body(line)
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal | date):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


# ------------------------------------------------------------------------ participation


@dataclass(frozen=True, slots=True)
class ParticipationPiece:
    """Consecutive unbilled days of one participation line."""

    kind: str
    first_day: date
    last_day: date
    days: int                       # charged
    days_exempt: int
    daily_amount: Decimal
    amount: Decimal
    reasons: tuple[str, ...]


def unbilled_participation(line: ParticipationLine,
                           billed_days: set[date]) -> list[ParticipationPiece]:
    """The line's days not billed yet, as runs of consecutive days."""
    exempt: dict[date, tuple[str, ...]] = {}
    for period in line.exempt_periods:
        day = period.first_day
        while day <= period.last_day:
            exempt[day] = period.reasons
            day += ONE_DAY
    pieces: list[ParticipationPiece] = []
    run: list[date] = []
    day = line.first_day
    while day <= line.last_day + ONE_DAY:
        if day <= line.last_day and day not in billed_days:
            run.append(day)
        elif run:
            pieces.append(_piece(line, run, exempt))
            run = []
        day += ONE_DAY
    return pieces


def _piece(line: ParticipationLine, run: list[date],
           exempt: dict[date, tuple[str, ...]]) -> ParticipationPiece:
    exempt_days = [d for d in run if d in exempt]
    reasons = tuple(sorted({r for d in exempt_days for r in exempt[d]}))
    charged = len(run) - len(exempt_days)
    return ParticipationPiece(line.kind, run[0], run[-1], charged, len(exempt_days),
                              line.daily_amount, line.daily_amount * charged, reasons)


def _participation_line(piece: ParticipationPiece) -> DraftLine:
    label_fr, label_de = PARTICIPATION_LABELS[piece.kind]
    explanation = (f"{piece.days} day(s) from {piece.first_day} to {piece.last_day} at "
                   f"{piece.daily_amount} € = {piece.amount} €")
    if piece.days_exempt:
        explanation += f"; {piece.days_exempt} day(s) not charged ({', '.join(piece.reasons)})"
    return DraftLine(
        act_id=None, part="patient", code=PARTICIPATION_CODE, label_fr=label_fr,
        label_de=label_de, day=piece.first_day, last_day=piece.last_day, quantity=piece.days,
        unit_price=piece.daily_amount, gross=piece.amount, insurer=ZERO, patient=piece.amount,
        amount=piece.amount,
        pricing={"kind": piece.kind, "first_day": str(piece.first_day),
                 "last_day": str(piece.last_day), "days": piece.days,
                 "days_exempt": piece.days_exempt, "daily_amount": str(piece.daily_amount),
                 "reasons": list(piece.reasons), "explanation": explanation})

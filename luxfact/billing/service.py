"""Billing use cases: bill a stay (or show what would be billed), credit, record payments.

Never commits: the request (or the command) commits or rolls back the whole. The number is
drawn in the same transaction as the invoice it names, so a failure anywhere rolls both back.
"""

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record, record_many
from luxfact.billing import split as splitting
from luxfact.billing.models import Invoice, InvoiceLine
from luxfact.billing.reference import creditor_reference
from luxfact.billing.repository import BillingRepository
from luxfact.billing.schemas import BillIn, CreditNoteIn, InvoiceLineOut, InvoiceOut, PaymentIn
from luxfact.claims import returns as claim_returns
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.money import cents_str, to_cents
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.observability.metrics import INVOICES_ISSUED
from luxfact.patients.repository import PatientRepository
from luxfact.stays import acts as act_service
from luxfact.stays.models import Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import ActPatch
from luxfact.stays.service import coverage_gaps, get_stay, local_day, room_classes
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import pricing
from luxfact.tariffs import service as tariffs
from luxfact.tenancy.models import Tenant
from luxfact.webhooks.service import emit


def today() -> date:
    return datetime.now(LUXEMBOURG).date()


# ------------------------------------------------------------------------------ status


def invoice_status(invoice: Invoice, on: date) -> str:
    """What is owed on an invoice, in one word (repository.status_condition is its SQL)."""
    if invoice.doc_type == "credit_note":
        return "issued"
    balance = invoice.total_cents - invoice.credited_cents - invoice.paid_cents
    if 0 < invoice.total_cents <= invoice.credited_cents and invoice.paid_cents == 0:
        return "credited"
    if balance < 0:
        return "overpaid"
    if balance == 0:
        return "paid"
    if invoice.due_on is not None and invoice.due_on < on:
        return "overdue"
    return "partly_paid" if invoice.paid_cents else "open"


def line_out(line: Any, seq: int) -> InvoiceLineOut:
    """A stored line (a row, or a just-written one) or a dry run's draft line."""
    if isinstance(line, splitting.DraftLine):
        cents = {name: to_cents(getattr(line, name))
                 for name in ("unit_price", "gross", "insurer", "patient", "amount")}
        credited_seq = None
    else:
        cents = {"unit_price": line.unit_price_cents, "gross": line.gross_cents,
                 "insurer": line.insurer_cents, "patient": line.patient_cents,
                 "amount": line.amount_cents}
        credited_seq = line.credited_seq
    return InvoiceLineOut(
        seq=seq, act_id=line.act_id, part=line.part, code=line.code, label_fr=line.label_fr,
        label_de=line.label_de, day=line.day, last_day=line.last_day, quantity=line.quantity,
        credited_seq=credited_seq, explanation=line.pricing.get("explanation", ""),
        **{name: cents_str(value) for name, value in cents.items()})


def invoice_out(invoice: Invoice, lines: list[Any], on: date) -> InvoiceOut:
    balance = invoice.total_cents - invoice.credited_cents - invoice.paid_cents
    return InvoiceOut(
        id=invoice.id, number=invoice.number, doc_type=invoice.doc_type,  # type: ignore[arg-type]
        kind=invoice.kind, payer=invoice.payer,  # type: ignore[arg-type]
        coverage_id=invoice.coverage_id, billing=invoice.billing,  # type: ignore[arg-type]
        stay_id=invoice.stay_id, patient_id=invoice.patient_id, issued_at=invoice.issued_at,
        issued_on=invoice.issued_on, due_on=invoice.due_on, period_from=invoice.period_from,
        period_to=invoice.period_to, language=invoice.language, currency=invoice.currency,
        total=cents_str(invoice.total_cents), gross=cents_str(invoice.gross_cents),
        paid=cents_str(invoice.paid_cents), credited=cents_str(invoice.credited_cents),
        balance=cents_str(balance) if invoice.doc_type == "invoice" else "0.00",
        status=invoice_status(invoice, on), reference=invoice.reference,  # type: ignore[arg-type]
        credited_invoice_id=invoice.credited_invoice_id, reason=invoice.reason,
        lines=[line_out(line, line.seq) for line in lines], version=invoice.version)


# ------------------------------------------------------------------------ billing a stay


@dataclass
class Issued:
    stay: Stay
    invoices: list[tuple[Invoice, list[Any]]]


@dataclass
class Draft:
    stay: Stay
    drafts: list[splitting.DraftInvoice]
    language: dict[str, str]
    billing: str


async def bill_stay(session: AsyncSession, tenant: Tenant, stay_id: uuid.UUID, data: BillIn,
                    actor: str) -> Draft | Issued:
    """Bill what is not billed yet on a stay; a dry run stops before anything is written."""
    tenant_id = tenant.id
    stay = await _lock_patient_and_stay(session, tenant_id, stay_id, lock=not data.dry_run)
    on = today()
    until = _billing_limit(stay, data, on)
    acts = await StayRepository(session, tenant_id).billable_acts(stay.id)
    repo = BillingRepository(session, tenant_id)
    patients = PatientRepository(session, tenant_id)
    coverages = await patients.coverages(stay.patient_id)
    _check_coverage(stay, coverages, until, on)
    live = await repo.live_parts(stay.id)
    billed = {(str(row.act_id), row.part): row.amount_cents for row in live
              if row.act_id is not None}
    billed_days = {row.day + timedelta(days=n) for row in live if row.act_id is None
                   for n in range((row.last_day - row.day).days + 1)}
    facts, language = await patients.billing_facts(stay.patient_id)
    priced = await _price_stay(session, tenant_id, stay, acts, until,
                               await repo.participation_days_by_year(stay.patient_id, stay.id),
                               facts)
    lines = [line for line in priced.lines if line.day <= until]
    payers = [splitting.Payer(c.payer, c.id, c.kind, c.valid_from, c.valid_to, c.first_class)
              for c in coverages if c.kind != "social_tiers_payant"]
    try:
        drafts = splitting.split(priced, lines, payers, billed, billed_days)
    except splitting.UncoveredDay as exc:
        raise ValidationFailed(
            f"No coverage on {exc.day} for {exc.code}: add the patient's coverage first.",
            errors=[{"field": "coverage", "reason": f"no coverage on {exc.day}"}]) from None
    except splitting.PricingChanged as exc:
        raise Conflict(
            f"The price of {len(exc.acts)} act(s) changed since a part of them was invoiced: "
            "credit their remaining invoice lines, then bill again.",
            acts=[str(act) for act in exc.acts]) from None
    if not drafts and not (data.kind == "final" and not data.dry_run):
        raise Conflict("Nothing to invoice on this stay: every act and day up to "
                       f"{until} is on an invoice already.")
    languages = {"patient": language, "insurer": tenant.default_language}
    billing = data.kind
    if data.dry_run:
        return Draft(stay, drafts, languages, billing)
    issued_at = utcnow()
    terms = int(tenant.config.get("invoices", {}).get("payment_terms_days", 30))
    issued = [_prepare(tenant, stay, draft, billing, languages[draft.kind], issued_at, terms,
                       actor) for draft in drafts]
    await _lock_billed_acts(session, tenant_id, issued)
    if data.kind == "final" and not _left_to_bill(acts, issued, billed):
        await StayRepository(session, tenant_id).set_state(stay.id, "closed", issued_at)
        stay.state = "closed"
    # Numbers last: the counter row stays locked from here to the commit.
    if issued:
        await _number_and_insert(repo, tenant, "invoice", issued)
    for invoice, _lines in issued:
        await emit(session, tenant_id, "invoice.issued", {
            "invoice_id": str(invoice.id), "number": invoice.number, "kind": invoice.kind,
            "payer": invoice.payer, "stay_id": str(invoice.stay_id),
            "patient_id": str(invoice.patient_id), "issued_on": invoice.issued_on.isoformat(),
            "due_on": invoice.due_on.isoformat() if invoice.due_on else None,
            "total": cents_str(invoice.total_cents)})
    return Issued(stay, issued)


async def _lock_patient_and_stay(session: AsyncSession, tenant_id: uuid.UUID,
                                 stay_id: uuid.UUID, *, lock: bool) -> Stay:
    """The stay, and for a real billing its patient then itself locked, in that order (the
    order a merge takes them): two stays of one patient are then billed one after the
    other, so the yearly cap of participation days counts what the other one billed."""
    stay = await get_stay(session, tenant_id, stay_id)
    if not lock:
        return stay
    await PatientRepository(session, tenant_id).lock(stay.patient_id)
    locked = await get_stay(session, tenant_id, stay_id, lock=True)
    if locked.patient_id != stay.patient_id:  # merged meanwhile: the new patient's turn
        raise Conflict("The stay's patient was merged meanwhile: retry.")
    return locked


def _billing_limit(stay: Stay, data: BillIn, on: date) -> date:
    """The last day billed: the day before discharge for a final invoice, `until` (or today)
    for an interim one."""
    if stay.state in ("cancelled", "planned"):
        raise Conflict(f"The stay is {stay.state}: only admitted or discharged stays are billed.")
    if stay.state == "closed":
        raise Conflict("The stay is closed: everything on it is invoiced. Credit an invoice "
                       "to bill again.")
    admitted = local_day(stay.admitted_at)
    discharged = local_day(stay.discharged_at) if stay.discharged_at else None
    if data.kind == "final":
        if data.until is not None:
            raise ValidationFailed(errors=[{"field": "until",
                                            "reason": "only for an interim invoice"}])
        if stay.state != "discharged" or discharged is None:
            raise Conflict("A final invoice needs a discharged stay: discharge it first, or "
                           "issue an interim invoice.")
        return discharged
    until = data.until or min(on, discharged or on)
    if until < admitted:
        raise ValidationFailed(errors=[{"field": "until", "reason": "before the admission"}])
    if until > on:
        raise ValidationFailed(errors=[{"field": "until", "reason": "in the future"}])
    if discharged is not None and until > discharged:
        raise ValidationFailed(errors=[{"field": "until", "reason": "after the discharge"}])
    return until


def _check_coverage(stay: Stay, coverages: list[Any], until: date, on: date) -> None:
    gaps = [gap for gap in coverage_gaps(stay, coverages, on) if gap.start <= until]
    if gaps:
        raise ValidationFailed(
            "The stay is not covered on every day billed: add the missing coverage.",
            errors=[{"field": "coverage",
                     "reason": f"no coverage from {gap.start} to {min(gap.end, until)}"}
                    for gap in gaps],
            gaps=[{"start": str(gap.start), "end": str(min(gap.end, until))} for gap in gaps])


async def _price_stay(session: AsyncSession, tenant_id: uuid.UUID, stay: Stay, acts: list[Any],
                      until: date, prior_days: dict[int, int],
                      facts: act_service.Facts) -> pricing.StayPricing:
    """Price the stay with today's catalogue for each act's day; every act that can no
    longer be priced is listed, not only the first."""
    stay_info, patient_info = await act_service.pricing_context(session, tenant_id, stay, facts)
    stay_info = pricing.StayInfo(
        kind=stay_info.kind, admitted=stay_info.admitted, discharged=stay_info.discharged,
        childbirth=stay_info.childbirth, psychiatric=stay_info.psychiatric,
        social_tiers_payant=stay_info.social_tiers_payant,
        prior_participation_days=prior_days)
    room_class = room_classes(await StayRepository(session, tenant_id).movements(stay.id))
    inputs = [pricing.ActInput(
        line_id=str(a.id), code=a.code, day=local_day(a.performed_at), quantity=a.quantity,
        modifiers=tuple(a.modifiers), performer=a.performer, specialty=a.specialty,
        first_class=room_class(a.performed_at) == "first") for a in acts]
    snapshot = await tariffs.snapshot(session, tenant_id)
    try:
        priced = pricing.price_stay(snapshot, stay_info, patient_info, inputs, until)
    except cat.CatalogueError as failure:
        errors = []
        for act in inputs:
            try:
                pricing.price_act(snapshot, stay_info, patient_info, act)
            except cat.CatalogueError as exc:
                errors.append({"field": f"acts.{act.line_id}",
                               "reason": f"{act.code} on {act.day}: {exc}"})
        if errors:
            raise ValidationFailed(
                f"{len(errors)} act(s) can no longer be priced: correct or cancel them.",
                errors=errors) from None
        # Not an act's: the stay's own (participation after the patient's death) or the
        # catalogue's (a parameter with no value on a day of the stay). Said, never a 500.
        field = failure.field if isinstance(failure, pricing.RuleViolation) else "tariffs"
        raise ValidationFailed(f"The stay cannot be priced: {failure}",
                               errors=[{"field": field, "reason": str(failure)}]) from None
    _refuse_changed_tariffs(acts, priced)
    return priced


def _rates(reasons: Any) -> list[str]:
    """The percentages a line applied on top of its unit price: its modifiers' and the
    first-class surcharge's, as their reasons say them (`modifier_NUIT_25`)."""
    if isinstance(reasons, str):  # a driver that answers JSON as text
        reasons = json.loads(reasons)
    return sorted(r for r in reasons or () if r.startswith(("modifier_", "first_class_")))


def _same_amount(recorded: str, amount: Decimal) -> bool:
    try:
        return Decimal(recorded) == amount
    except ArithmeticError:  # not a number: an act recorded without it
        return False


class TariffsChanged(Conflict):
    """Acts whose tariff changed since they were priced: `acts` is the re-pricing report."""


async def reprice_changed(session: AsyncSession, tenant: Tenant, stay_id: uuid.UUID,
                          actor: str) -> int:
    """Confirm the re-pricing report: the acts a final billing refuses for a tariff changed
    since they were priced, each priced again with today's catalogue (audited as an act
    update). How many were; 0 when billing refuses none."""
    try:
        await bill_stay(session, tenant, stay_id, BillIn(kind="final", dry_run=True), actor)
    except TariffsChanged as report:
        for item in report.extra["acts"]:
            act = await act_service.get_act(session, tenant.id, stay_id,
                                            uuid.UUID(item["act_id"]))
            await act_service.update_act(session, tenant.id, act, ActPatch(reprice=True))
        return len(report.extra["acts"])
    except (Conflict, ValidationFailed):
        return 0  # refused for another reason: that one is the preview's to show
    return 0


def _refuse_changed_tariffs(acts: list[Any], priced: pricing.StayPricing) -> None:
    """An act keeps the tariff it was priced with: one whose tariff changed since (a
    correction imported in place, a hospital's price replaced) is not billed at another
    price without a word. Refused, listing each: the re-pricing report, which the billing
    officer confirms by re-pricing the acts (`PATCH …/acts/{id}` with `"reprice": true`)."""
    recorded = {str(act.id): act for act in acts}
    changed = []
    for line in priced.lines:
        act = recorded[line.line_id]
        if act.unit_price is None or act.state == "invoiced":
            # Recorded without its price (loaded in bulk): nothing to compare with. On an
            # invoice: its parts are compared with what was invoiced (`PricingChanged`).
            continue
        was = (act.tariff_version, str(act.unit_price))
        now = (line.version_id, str(line.unit_price))
        if was[0] != now[0] or not _same_amount(was[1], line.unit_price) or (
                _rates(act.reasons) != _rates(line.reasons)):
            changed.append({"act_id": line.line_id, "code": line.code,
                            "day": line.day.isoformat(), "priced_with": was[0],
                            "unit_price": was[1], "today": now[0],
                            "unit_price_today": now[1]})
    if changed:
        first = changed[0]
        raise TariffsChanged(
            f"The tariff of {len(changed)} act(s) changed since they were priced ({first['code']}"
            f" on {first['day']}: {first['unit_price']} then, {first['unit_price_today']} "
            "today): re-price them (PATCH the act with \"reprice\": true), then bill.",
            acts=changed)


def _prepare(tenant: Tenant, stay: Stay, draft: splitting.DraftInvoice, billing: str,
             language: str, issued_at: datetime, terms: int,
             actor: str) -> tuple[Any, list[Any]]:
    """An invoice ready to insert, but for its number (drawn by `_number_and_insert`)."""
    issued_on = issued_at.astimezone(LUXEMBOURG).date()
    period_from, period_to = draft.period
    invoice_id = uuid.uuid4()
    # A plain record, not a table model: it is inserted by a Core statement and answered.
    invoice = SimpleNamespace(
        tenant_id=tenant.id, id=invoice_id, doc_type="invoice", kind=draft.kind,
        payer=draft.payer, coverage_id=draft.coverage_id, billing=billing, stay_id=stay.id,
        patient_id=stay.patient_id, number="", year=issued_on.year, seq=0,
        issued_at=issued_at, issued_on=issued_on, due_on=issued_on + timedelta(days=terms),
        period_from=period_from, period_to=period_to, language=language, currency="EUR",
        total_cents=to_cents(draft.total), gross_cents=to_cents(draft.gross),
        credited_invoice_id=None, reason="", reference="", paid_cents=0, credited_cents=0,
        actor=actor, version=1, created_at=issued_at)
    rows = [_line_row(invoice_id, n, line) for n, line in enumerate(draft.lines, 1)]
    return invoice, [SimpleNamespace(**row) for row in rows]


INVOICE_COLUMNS = tuple(Invoice.__table__.columns.keys())  # type: ignore[attr-defined]


async def _number_and_insert(repo: BillingRepository, tenant: Tenant, series: str,
                             issued: list[tuple[Any, list[Any]]]) -> None:
    """Draw the documents' numbers as one block, then write them with their lines."""
    pattern = (tenant.invoice_number_pattern if series == "invoice"
               else tenant.credit_note_number_pattern)
    year = issued[0][0].year
    seqs = await repo.draw_numbers(series, year, len(issued))
    for (invoice, _lines), seq in zip(issued, seqs, strict=True):
        invoice.seq = seq
        invoice.number = pattern.format(year=year, seq=seq)
        invoice.reference = creditor_reference(invoice.number)
    await repo.insert_invoices([{name: getattr(invoice, name) for name in INVOICE_COLUMNS
                                 if name != "tenant_id"} for invoice, _lines in issued])
    await repo.insert_lines([vars(line) for _invoice, lines in issued for line in lines])
    for invoice, _lines in issued:
        INVOICES_ISSUED.labels(invoice.kind if series == "invoice" else "credit_note").inc()
    action = "invoice.issue" if series == "invoice" else "invoice.credit"
    await record_many(repo.session, [
        (action, "invoice", invoice.id,
         {"number": invoice.number, "kind": invoice.kind, "payer": invoice.payer,
          "total": cents_str(invoice.total_cents), "stay": str(invoice.stay_id),
          **({"credits": str(invoice.credited_invoice_id), "reason": invoice.reason}
             if series != "invoice" else {})})
        for invoice, _lines in issued], tenant_id=tenant.id)


def _line_row(invoice_id: uuid.UUID, seq: int, line: splitting.DraftLine,
              credited_seq: int | None = None) -> dict[str, Any]:
    return dict(
        invoice_id=invoice_id, seq=seq,
        act_id=uuid.UUID(line.act_id) if isinstance(line.act_id, str) else line.act_id,
        part=line.part, code=line.code, label_fr=line.label_fr[:300],
        label_de=line.label_de[:300], day=line.day, last_day=line.last_day,
        quantity=line.quantity, unit_price_cents=to_cents(line.unit_price),
        gross_cents=to_cents(line.gross), insurer_cents=to_cents(line.insurer),
        patient_cents=to_cents(line.patient), amount_cents=to_cents(line.amount),
        credited_invoice_id=None, credited_seq=credited_seq, pricing=line.pricing)


async def _lock_billed_acts(session: AsyncSession, tenant_id: uuid.UUID,
                            issued: list[tuple[Invoice, list[Any]]]) -> None:
    """Acts on an issued invoice are locked: state `invoiced`, pointing at the first invoice
    (insurer first) that bills them."""
    first: dict[uuid.UUID, uuid.UUID] = {}
    for invoice, lines in issued:
        for line in lines:
            if line.act_id is not None:
                first.setdefault(line.act_id, invoice.id)
    by_invoice: dict[uuid.UUID, list[uuid.UUID]] = {}
    for act_id, invoice_id in first.items():
        by_invoice.setdefault(invoice_id, []).append(act_id)
    stays = StayRepository(session, tenant_id)
    for invoice_id, act_ids in by_invoice.items():
        await stays.set_acts_state(act_ids, "invoiced", invoice_id)


def _left_to_bill(acts: list[Any], issued: list[tuple[Invoice, list[Any]]],
                  billed: set[tuple[str, str]]) -> bool:
    """Whether an act of the stay is on no invoice at all after this billing."""
    on_invoice = {act_id for act_id, _part in billed}
    on_invoice |= {str(line.act_id) for _inv, lines in issued for line in lines if line.act_id}
    return any(str(a.id) not in on_invoice for a in acts)


def draft_out(draft: Draft) -> list[InvoiceOut]:
    """A dry run's invoices: what would be issued, without id, number or reference."""
    out = []
    for item in draft.drafts:
        period_from, period_to = item.period
        total = cents_str(to_cents(item.total))
        out.append(InvoiceOut(
            id=None, number=None, doc_type="invoice", kind=item.kind,  # type: ignore[arg-type]
            payer=item.payer, coverage_id=item.coverage_id,
            billing=draft.billing,  # type: ignore[arg-type]
            stay_id=draft.stay.id, patient_id=draft.stay.patient_id, issued_at=None,
            issued_on=None, due_on=None, period_from=period_from, period_to=period_to,
            language=draft.language[item.kind], currency="EUR", total=total,
            gross=cents_str(to_cents(item.gross)), paid="0.00", credited="0.00",
            balance=total, status="draft", reference=None,
            lines=[line_out(line, n) for n, line in enumerate(item.lines, 1)]))
    return out


# ------------------------------------------------------------------------- credit notes


async def credit(session: AsyncSession, tenant: Tenant, invoice_id: uuid.UUID,
                 data: CreditNoteIn, actor: str) -> tuple[Invoice, list[Any]]:
    """A credit note for chosen lines (or every line left); the acts are released."""
    repo = BillingRepository(session, tenant.id)
    found = await repo.get(invoice_id)
    if found is None:
        raise NotFound("No such invoice.")
    # The stay first, then the invoice: two credit notes on the insurer's and the patient's
    # invoices of one act then run one after the other, and the second sees the first's
    # lines (else neither would release the act). Billing takes the stay first too.
    stays = StayRepository(session, tenant.id)
    stay = await stays.get(found.stay_id, lock=True)
    original = await repo.get(invoice_id, lock=True)
    assert original is not None
    if original.doc_type != "invoice":
        raise Conflict("A credit note cannot itself be credited.")
    lines = await repo.lines(original.id)
    done = await repo.credited_seqs(original.id)
    by_seq = {line.seq: line for line in lines}
    if data.lines is None:
        chosen = [line for line in lines if line.seq not in done]
        if not chosen:
            raise Conflict(f"Invoice {original.number} is already wholly credited.")
    else:
        unknown = sorted(set(data.lines) - set(by_seq))
        if unknown:
            raise ValidationFailed(errors=[{"field": "lines", "reason":
                                            f"no line {n} on invoice {original.number}"}
                                           for n in unknown])
        again = sorted(set(data.lines) & done)
        if again:
            raise Conflict(f"Line(s) {', '.join(map(str, again))} of invoice {original.number} "
                           "are already credited: never more is credited than invoiced.",
                           lines=again)
        chosen = [by_seq[n] for n in sorted(set(data.lines))]
    issued_at = utcnow()
    issued_on = issued_at.astimezone(LUXEMBOURG).date()
    note = Invoice(
        tenant_id=tenant.id, id=uuid.uuid4(), doc_type="credit_note", kind=original.kind,
        payer=original.payer, coverage_id=original.coverage_id, billing=original.billing,
        stay_id=original.stay_id, patient_id=original.patient_id, number="",
        year=issued_on.year, seq=0, issued_at=issued_at, issued_on=issued_on, due_on=None,
        period_from=min(line.day for line in chosen),
        period_to=max(line.last_day for line in chosen), language=original.language,
        currency=original.currency, total_cents=sum(line.amount_cents for line in chosen),
        gross_cents=sum(line.gross_cents for line in chosen),
        credited_invoice_id=original.id, reason=data.reason, reference="", paid_cents=0,
        credited_cents=0, actor=actor, version=1, created_at=issued_at)
    rows = []
    for n, line in enumerate(chosen, 1):
        row = {name: getattr(line, name) for name in (
            "act_id", "part", "code", "label_fr", "label_de", "day", "last_day", "quantity",
            "unit_price_cents", "gross_cents", "insurer_cents", "patient_cents",
            "amount_cents", "pricing")}
        rows.append(SimpleNamespace(**row, invoice_id=note.id, seq=n,
                                    credited_invoice_id=original.id, credited_seq=line.seq))
    await repo.add_to_owed(original.id, credited=note.total_cents)
    await _release_acts(session, tenant.id, original.id, chosen)
    if stay is not None and stay.state == "closed":
        await stays.update_stay(stay.id, {"state": "discharged", "updated_at": issued_at})
    await _number_and_insert(repo, tenant, "credit_note", [(note, rows)])
    if original.kind == "insurer":
        # Lines the insurer refused are resolved by this credit note: the corrected invoice
        # goes into a later batch.
        await claim_returns.resolve_credited(session, tenant.id, original.id,
                                             [line.seq for line in chosen])
    return note, rows


async def _release_acts(session: AsyncSession, tenant_id: uuid.UUID, invoice_id: uuid.UUID,
                        credited: list[Any]) -> None:
    """Acts with no line left on a live invoice (once these lines are credited) can be
    corrected and billed again."""
    act_ids = sorted({line.act_id for line in credited if line.act_id})
    going = {(invoice_id, line.seq) for line in credited}
    live = await BillingRepository(session, tenant_id).live_lines_of_acts(act_ids)
    still = {row.act_id for row in live if (row.invoice_id, row.seq) not in going}
    free = sorted(set(act_ids) - still)
    await StayRepository(session, tenant_id).set_acts_state(free, "recorded", None)


# ----------------------------------------------------------------------------- payments


async def pay(session: AsyncSession, tenant: Tenant, invoice_id: uuid.UUID, data: PaymentIn,
              actor: str) -> tuple[Invoice, dict[str, Any]]:
    repo = BillingRepository(session, tenant.id)
    invoice = await repo.get(invoice_id, lock=True)
    if invoice is None:
        raise NotFound("No such invoice.")
    if invoice.doc_type != "invoice":
        raise Conflict("Payments are recorded on invoices, not on credit notes.")
    amount = to_cents(Decimal(data.amount).quantize(Decimal("0.01")))
    if amount <= 0:
        raise ValidationFailed(errors=[{"field": "amount", "reason": "must be more than 0"}])
    if data.paid_on > today():
        raise ValidationFailed(errors=[{"field": "paid_on", "reason": "in the future"}])
    if data.paid_on < invoice.issued_on:
        raise ValidationFailed(errors=[{"field": "paid_on",
                                        "reason": "before the invoice was issued"}])
    balance = invoice.total_cents - invoice.credited_cents - invoice.paid_cents
    allow = bool(tenant.config.get("invoices", {}).get("allow_overpayment", False))
    if amount > balance and not allow:
        raise ValidationFailed(
            f"The payment is larger than the balance of {cents_str(max(balance, 0))} EUR.",
            errors=[{"field": "amount", "reason":
                     f"larger than the balance ({cents_str(max(balance, 0))}); this hospital "
                     "does not accept overpayments"}])
    # An overpayment is a mistake to refund, not a deposit: at most the invoice's total more.
    if amount > max(balance, 0) + invoice.total_cents:
        raise ValidationFailed(errors=[{"field": "amount", "reason":
                                        "more than twice what is owed: check the amount"}])
    created_at = utcnow()
    values = dict(id=uuid.uuid4(), invoice_id=invoice.id, amount_cents=amount,
                  paid_on=data.paid_on, method=data.method, reference=data.reference,
                  actor=actor, created_at=created_at)
    await repo.insert_payment(values)
    await repo.add_to_owed(invoice.id, paid=amount)
    await record(session, "invoice.payment", "invoice", invoice.id,
                 {"amount": cents_str(amount), "method": data.method}, tenant_id=tenant.id)
    invoice.paid_cents += amount
    invoice.version += 1
    return invoice, values


async def get_invoice(session: AsyncSession, tenant_id: uuid.UUID,
                      invoice_id: uuid.UUID) -> tuple[Invoice, list[InvoiceLine]]:
    repo = BillingRepository(session, tenant_id)
    invoice = await repo.get(invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice, await repo.lines(invoice.id)

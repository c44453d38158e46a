"""Stays ready to bill, the dry-run preview and the issue; invoices, their PDF, credit notes
and payments. Mirrors `luxfact/billing/api.py`: the same services, schemas and audit."""

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.billing import documents, service
from luxfact.billing.models import Invoice
from luxfact.billing.repository import BillingRepository
from luxfact.billing.schemas import BillIn, CreditNoteIn, InvoiceQuery, PaymentIn
from luxfact.claims.repository import ClaimRepository
from luxfact.http.pagination import decode_time_cursor, encode_cursor
from luxfact.kit.errors import Conflict, ValidationFailed
from luxfact.kit.money import cents_str
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients.repository import PatientRepository
from luxfact.stays.models import Act, Stay
from luxfact.stays.service import get_stay
from luxfact.web.billing import (
    BILLING,
    PAGE_SIZE,
    attempt,
    cents_of,
    parse_uuid,
    path_uuid,
    patient_names,
    plain_amount,
    query_string,
    render,
    schema_errors,
    service_errors,
    tenant_of,
)
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

S = Stay.__table__  # type: ignore[attr-defined]
A = Act.__table__  # type: ignore[attr-defined]
I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
PDF = "application/pdf"

STATUSES = {"open": N_("Open"), "partly_paid": N_("Partly paid"), "overdue": N_("Overdue"),
            "paid": N_("Paid"), "credited": N_("Credited"), "overpaid": N_("Overpaid"),
            "issued": N_("Issued"), "draft": N_("Draft")}
KINDS = {"insurer": N_("Insurer part"), "patient": N_("Patient part")}
DOC_TYPES = {"invoice": N_("Invoice"), "credit_note": N_("Credit note")}
METHODS = {"transfer": N_("Bank transfer"), "card": N_("Card"), "cash": N_("Cash"),
           "cheque": N_("Cheque"), "direct_debit": N_("Direct debit")}
CLAIM_STATUSES = {"paid": N_("Paid"), "partly_paid": N_("Partly paid"),
                  "rejected": N_("Rejected"), "reversed": N_("Reversed"),
                  "written_off": N_("Written off"), "credited": N_("Credited")}
# The field's own sentence when the schema refuses it.
FILTER_MESSAGES = {"status": N_("Choose a status from the list."),
                   "kind": N_("Choose a part from the list."),
                   "doc_type": N_("Choose a document type from the list."),
                   "issued_from": N_("Enter a date as YYYY-MM-DD."),
                   "issued_to": N_("Enter a date as YYYY-MM-DD."),
                   "cursor": N_("This page link is not valid: start from the first page.")}
BAD_CURSOR = FILTER_MESSAGES["cursor"]
CHOOSE_LINES = N_("Choose at least one line to credit.")
CREDIT_MESSAGES = {"reason": N_("Give a reason: one line, at most 500 characters."),
                   "lines": CHOOSE_LINES}
PAYMENT_MESSAGES = {"amount": N_("Enter an amount in euros with at most two decimals, "
                                 "like 19.92."),
                    "paid_on": N_("Enter the day of the payment as YYYY-MM-DD."),
                    "method": N_("Choose how it was paid."),
                    "reference": N_("At most 140 characters, on one line.")}


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/billing", ready_to_bill, methods=["GET"]),
        Route("/desk/billing/stays/{stay_id}", preview, methods=["GET"]),
        Route("/desk/billing/stays/{stay_id}", issue, methods=["POST"]),
        Route("/desk/billing/stays/{stay_id}/reprice", reprice, methods=["POST"]),
        Route("/desk/invoices", invoices, methods=["GET"]),
        Route("/desk/invoices/{invoice_id}", invoice_page, methods=["GET"]),
        Route("/desk/invoices/{invoice_id}/pdf", invoice_pdf, methods=["GET"]),
        Route("/desk/invoices/{invoice_id}/credit-notes", credit_note, methods=["POST"]),
        Route("/desk/invoices/{invoice_id}/payments", payment, methods=["POST"]),
    ]


# ------------------------------------------------------------------- stays ready to bill


@page(*BILLING)
async def ready_to_bill(desk: Desk) -> Response:
    """Discharged stays not closed, newest discharge first.

    A final invoice closes a stay once every act of it is on an invoice
    (`service.bill_stay`), and a credit note reopens it: so a stay still `discharged` is
    one with something left to bill (or, with nothing left, one the final billing closes).
    """
    cursor = desk.request.query_params.get("cursor", "")
    try:
        after = decode_time_cursor(cursor or None)
    except ValidationFailed:
        return render(desk, "ready.html", 422, stays=[], next_cursor=None,
                      bad_cursor=True)
    conditions: list[Any] = [S.c.tenant_id == desk.tenant_id, S.c.state == "discharged"]
    if after:
        conditions.append(or_(S.c.discharged_at < after[0],
                              and_(S.c.discharged_at == after[0], S.c.id < after[1])))
    rows = (await desk.session.execute(
        select(S.c.id, S.c.patient_id, S.c.kind, S.c.admitted_at, S.c.discharged_at,
               S.c.unit, S.c.external_id)
        .where(*conditions).order_by(S.c.discharged_at.desc(), S.c.id.desc())
        .limit(PAGE_SIZE + 1))).all()
    shown = rows[:PAGE_SIZE]
    ids = [row.id for row in shown]
    waiting: dict[uuid.UUID, int] = {}
    if ids:
        waiting = {row.stay_id: row.acts for row in (await desk.session.execute(
            select(A.c.stay_id, func.count().label("acts"))
            .where(A.c.tenant_id == desk.tenant_id, A.c.stay_id.in_(ids),
                   A.c.state == "recorded").group_by(A.c.stay_id))).all()}
    names = await patient_names(desk, {row.patient_id for row in shown})
    next_cursor = (encode_cursor([shown[-1].discharged_at.isoformat(), str(shown[-1].id)])
                   if len(rows) > PAGE_SIZE and shown[-1].discharged_at else None)
    return render(desk, "ready.html", stays=[{
        "id": row.id, "patient": names.get(row.patient_id, ""), "kind": row.kind,
        "admitted": row.admitted_at.astimezone(LUXEMBOURG),
        "discharged": row.discharged_at.astimezone(LUXEMBOURG) if row.discharged_at
        else None, "unit": row.unit, "external_id": row.external_id,
        "acts": waiting.get(row.id, 0)} for row in shown], next_cursor=next_cursor,
        bad_cursor=False)


@page(*BILLING)
async def preview(desk: Desk) -> Response:
    """What the final billing would issue (a dry run: nothing is stored)."""
    return await _preview(desk, path_uuid(desk, "stay_id"))


async def _preview(desk: Desk, stay_id: uuid.UUID, status: int = 200,
                   refused: Any = None) -> Response:
    tenant = await tenant_of(desk)
    stay = await get_stay(desk.session, desk.tenant_id, stay_id)
    drafts: list[Any] = []
    problem = refused
    if problem is None:
        try:
            async with attempt(desk):
                result = await service.bill_stay(desk.session, tenant, stay_id,
                                                 BillIn(kind="final", dry_run=True),
                                                 desk.user.actor)
            assert isinstance(result, service.Draft)
            drafts = service.draft_out(result)
        except (Conflict, ValidationFailed) as error:
            problem = error
    names = await patient_names(desk, {stay.patient_id})
    parts = {"insurer": 0, "patient": 0}
    for draft in drafts:
        parts[draft.kind] += cents_of(draft.total)
    return render(
        desk, "preview.html", status, stay=stay, patient=names.get(stay.patient_id, ""),
        admitted=stay.admitted_at.astimezone(LUXEMBOURG),
        discharged=stay.discharged_at.astimezone(LUXEMBOURG) if stay.discharged_at else None,
        drafts=drafts, parts=parts, total=parts["insurer"] + parts["patient"],
        problem=_problem(desk, problem), can_issue=_can_issue(stay, problem),
        idem=uuid.uuid4(), kinds=KINDS)


def _can_issue(stay: Stay, problem: Any) -> bool:
    """Issuing is offered on a discharged stay unless the dry run was refused for a reason
    issuing would meet too (a gap in coverage, an act that cannot be priced, a price that
    changed). With nothing left to invoice, issuing closes the stay."""
    if stay.state != "discharged":
        return False
    return problem is None or (isinstance(problem, Conflict) and "acts" not in problem.extra)


def _problem(desk: Desk, error: Any) -> dict[str, Any] | None:
    """A service's refusal, shown on the page: its message and each reason; for acts whose
    tariff changed since they were priced, the re-pricing report to confirm."""
    if error is None:
        return None
    repricing = isinstance(error, service.TariffsChanged)
    detail = REPRICING if repricing else error.detail  # its own text names an API call
    return {"status": error.status, "detail": desk.translate_reason(detail),
            "reasons": [desk.translate_reason(str(item.get("reason", "")))
                        for item in error.errors or []],
            "repricing": error.extra["acts"] if repricing else None}


REPRICING = N_("The tariff of these acts changed since they were priced: re-price them "
               "at today's tariffs to issue the invoices, or correct them on the stay.")


@page(*BILLING)
async def issue(desk: Desk) -> Response:
    """Issue the final invoices of the stay, once per form (`idem`): a double submit goes
    to the invoices issued the first time."""
    stay_id = path_uuid(desk, "stay_id")
    tenant = await tenant_of(desk)

    async def make() -> str:
        await service.bill_stay(desk.session, tenant, stay_id, BillIn(kind="final"),
                                desk.user.actor)
        return f"/desk/invoices?stay={stay_id}"

    return await _confirmed(desk, stay_id, make)


@page(*BILLING)
async def reprice(desk: Desk) -> Response:
    """Confirm the preview's re-pricing report: its acts priced again at today's tariffs,
    once per form (`idem`), then back to the preview."""
    stay_id = path_uuid(desk, "stay_id")
    tenant = await tenant_of(desk)

    async def make() -> str:
        await service.reprice_changed(desk.session, tenant, stay_id, desk.user.actor)
        return f"/desk/billing/stays/{stay_id}"

    return await _confirmed(desk, stay_id, make)


async def _confirmed(desk: Desk, stay_id: uuid.UUID,
                     make: Callable[[], Awaitable[str]]) -> Response:
    """A preview's confirmation done once per form (`idem`); refused, the preview again
    with the reason."""
    try:
        async with attempt(desk):
            return await desk.once(make)
    except (Conflict, ValidationFailed) as error:
        return await _preview(desk, stay_id, error.status, refused=error)


# ----------------------------------------------------------------------------- invoices


FILTERS = ("status", "kind", "doc_type", "patient", "issued_from", "issued_to", "stay")


@page(*BILLING)
async def invoices(desk: Desk) -> Response:
    """Invoices and credit notes, newest first, filtered like the API's list."""
    params = desk.request.query_params
    typed = {name: params.get(name, "").strip() for name in FILTERS}
    data: dict[str, Any] = {name: typed[name] for name in
                            ("status", "kind", "doc_type", "issued_from", "issued_to")
                            if typed[name]}
    if params.get("cursor"):
        data["cursor"] = params["cursor"]
    patient_label = ""
    if typed["patient"]:
        patient_id, patient_label = await _patient_filter(desk, typed["patient"])
        if patient_id is not None:
            data["patient_id"] = patient_id
    if typed["stay"]:
        stay_id = parse_uuid(typed["stay"])
        if stay_id is None:
            desk.errors["stay"] = desk._("This stay link is not valid.")
        else:
            data["stay_id"] = stay_id
    query = None
    try:
        query = InvoiceQuery.model_validate(data)
        after = decode_time_cursor(query.cursor)
    except ValidationError as error:
        schema_errors(desk, error, FILTER_MESSAGES)
    except ValidationFailed:
        desk.errors["cursor"] = desk._(BAD_CURSOR)
    values = dict(typed=typed, statuses=STATUSES, kinds=KINDS, doc_types=DOC_TYPES,
                  patient_label=patient_label, options={
                      "status": _options(desk, {k: v for k, v in STATUSES.items()
                                                if k not in ("issued", "draft")}),
                      "kind": _options(desk, KINDS), "doc_type": _options(desk, DOC_TYPES)})
    if desk.errors or query is None:
        return render(desk, "invoices.html", 422, rows=[], next_link=None, **values)
    on = service.today()
    start = (datetime.combine(query.issued_from, time(), LUXEMBOURG)
             if query.issued_from else None)
    end = (datetime.combine(query.issued_to + timedelta(days=1), time(), LUXEMBOURG)
           if query.issued_to else None)
    rows = await BillingRepository(desk.session, desk.tenant_id).page(
        limit=PAGE_SIZE + 1, status=query.status, patient_id=query.patient_id,
        stay_id=query.stay_id, kind=query.kind, doc_type=query.doc_type, issued_from=start,
        issued_to=end, today=on, after=after)
    shown = rows[:PAGE_SIZE]
    names = await patient_names(desk, {inv.patient_id for inv in shown})
    next_link = None
    if len(rows) > PAGE_SIZE:
        next_link = "/desk/invoices" + query_string({
            **typed, "cursor": encode_cursor([shown[-1].issued_at.isoformat(),
                                              str(shown[-1].id)])})
    return render(desk, "invoices.html", rows=[
        {"invoice": service.invoice_out(inv, [], on), "patient": names.get(inv.patient_id, "")}
        for inv in shown], next_link=next_link, **values)


def _options(desk: Desk, choices: dict[str, str]) -> list[tuple[str, str]]:
    return [("", desk._("All")), *((value, desk._(text)) for value, text in choices.items())]


async def _patient_filter(desk: Desk, text: str) -> tuple[uuid.UUID | None, str]:
    """The patient typed in the filter: a national identification number (13 digits) or
    a patient's id (from a link). (id, name) or an error next to the field."""
    as_id = parse_uuid(text)
    if as_id is not None:
        names = await patient_names(desk, {as_id})
        return as_id, names.get(as_id, "")
    digits = "".join(text.split())
    if digits.isdigit() and len(digits) == 13:
        patient = await PatientRepository(desk.session, desk.tenant_id).by_matricule(digits)
        if patient is not None:
            return patient.id, f"{patient.family_name} {patient.given_name}".strip()
        desk.errors["patient"] = desk._("No patient of this hospital has this national "
                                        "identification number.")
        return None, ""
    desk.errors["patient"] = desk._("Enter the patient's national identification number "
                                    "(13 digits).")
    return None, ""


@page(*BILLING)
async def invoice_page(desk: Desk) -> Response:
    return await _invoice(desk, path_uuid(desk, "invoice_id"))


async def _invoice(desk: Desk, invoice_id: uuid.UUID, status: int = 200,
                   typed: dict[str, Any] | None = None) -> Response:
    """The invoice with its lines, payments, credit notes and forms (values kept when a
    form comes back with errors)."""
    invoice, lines = await service.get_invoice(desk.session, desk.tenant_id, invoice_id)
    on = service.today()
    out = service.invoice_out(invoice, lines, on)
    repo = BillingRepository(desk.session, desk.tenant_id)
    is_invoice = invoice.doc_type == "invoice"
    payments = await repo.payments(invoice.id) if is_invoice else []
    notes = (await desk.session.execute(
        select(I.c.id, I.c.number, I.c.issued_on, I.c.total_cents, I.c.reason)
        .where(I.c.tenant_id == desk.tenant_id, I.c.credited_invoice_id == invoice.id)
        .order_by(I.c.issued_at, I.c.id))).all() if is_invoice else []
    credited = await repo.credited_seqs(invoice.id) if is_invoice else set()
    credited_number = (await repo.numbers([invoice.credited_invoice_id])).get(
        invoice.credited_invoice_id) if invoice.credited_invoice_id else None  # type: ignore[arg-type]
    results = {}
    if is_invoice and invoice.kind == "insurer":
        results = {row.seq: row for row in await ClaimRepository(
            desk.session, desk.tenant_id).results_of(invoice.id)}
    names = await patient_names(desk, {invoice.patient_id})
    balance = invoice.total_cents - invoice.credited_cents - invoice.paid_cents
    defaults = {"scope": "all", "lines": [], "reason": "",
                "amount": cents_str(balance) if balance > 0 else "", "paid_on": on.isoformat(),
                "method": "transfer", "reference": ""}
    return render(
        desk, "invoice.html", status, invoice=out, payments=payments, notes=notes,
        credited=credited, credited_number=credited_number, results=results,
        patient=names.get(invoice.patient_id, ""), typed={**defaults, **(typed or {})},
        can_credit=is_invoice and any(line.seq not in credited for line in lines),
        can_pay=is_invoice, printable=invoice.kind == "patient", statuses=STATUSES,
        kinds=KINDS, doc_types=DOC_TYPES, methods=METHODS, claim_statuses=CLAIM_STATUSES,
        methods_options=[(value, desk._(text)) for value, text in METHODS.items()],
        credit_idem=uuid.uuid4(), payment_idem=uuid.uuid4())


def _filename(number: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", number) or "invoice"


@page(*BILLING)
async def invoice_pdf(desk: Desk) -> Response:
    """The archived PDF of a patient invoice or credit note (the insurers' parts go in
    claim files: a 409, as in the API). Shown in the browser, or downloaded."""
    content, digest, invoice = await documents.archived_pdf(
        desk.session, await tenant_of(desk), path_uuid(desk, "invoice_id"),
        desk.request.state.settings)
    if desk.request.headers.get("if-none-match") == f'"{digest}"':
        return Response(status_code=304, headers={"ETag": f'"{digest}"'})
    disposition = "attachment" if desk.request.query_params.get("download") else "inline"
    return Response(content, media_type=PDF, headers={
        "ETag": f'"{digest}"', "X-Content-SHA256": digest,
        "Content-Disposition": f'{disposition}; filename="{_filename(invoice.number)}.pdf"',
        "Cache-Control": "private, no-store"})


@page(*BILLING)
async def credit_note(desk: Desk) -> Response:
    """A credit note for the whole invoice or the lines chosen, with a reason."""
    invoice_id = path_uuid(desk, "invoice_id")
    form = desk.form
    scope = desk.value("scope", "all")
    chosen = [value for value in (form.getlist("lines") if form is not None else [])
              if isinstance(value, str)]
    typed = {"scope": scope, "lines": chosen, "reason": desk.value("reason")}
    numbers: list[int] | None = None
    if scope == "lines":
        if not chosen or not all(value.isdigit() and len(value) <= 6 for value in chosen):
            desk.errors["lines"] = desk._(CHOOSE_LINES)
        else:
            numbers = [int(value) for value in chosen]
    try:
        data = CreditNoteIn(reason=typed["reason"], lines=numbers)
    except ValidationError as error:
        schema_errors(desk, error, CREDIT_MESSAGES, form="credit")
        return await _invoice(desk, invoice_id, 422, typed)
    if desk.errors:
        return await _invoice(desk, invoice_id, 422, typed)
    tenant = await tenant_of(desk)

    async def make() -> str:
        note, _lines = await service.credit(desk.session, tenant, invoice_id, data,
                                            desk.user.actor)
        return f"/desk/invoices/{note.id}"

    try:
        async with attempt(desk):
            return await desk.once(make)
    except ValidationFailed as error:
        service_errors(desk, error, ("lines", "reason"), form="credit")
        return await _invoice(desk, invoice_id, 422, typed)
    except Conflict as error:
        desk.errors["credit"] = desk.translate_reason(error.detail)
        return await _invoice(desk, invoice_id, 409, typed)


@page(*BILLING)
async def payment(desk: Desk) -> Response:
    """Record a payment received: amount, day, how, reference."""
    invoice_id = path_uuid(desk, "invoice_id")
    typed = {name: desk.value(name) for name in ("amount", "paid_on", "method", "reference")}
    try:
        data = PaymentIn(amount=plain_amount(typed["amount"]), paid_on=typed["paid_on"],
                         method=typed["method"], reference=typed["reference"])  # type: ignore[arg-type]
    except ValidationError as error:
        schema_errors(desk, error, PAYMENT_MESSAGES, form="payment")
        return await _invoice(desk, invoice_id, 422, typed)
    tenant = await tenant_of(desk)

    async def make() -> str:
        await service.pay(desk.session, tenant, invoice_id, data, desk.user.actor)
        return f"/desk/invoices/{invoice_id}"

    try:
        async with attempt(desk):
            return await desk.once(make)
    except ValidationFailed as error:
        service_errors(desk, error, tuple(PAYMENT_MESSAGES), form="payment")
        return await _invoice(desk, invoice_id, 422, typed)
    except Conflict as error:
        desk.errors["payment"] = desk.translate_reason(error.detail)
        return await _invoice(desk, invoice_id, 409, typed)

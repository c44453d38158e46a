"""/api/v1 invoices: billing a stay, credit notes, payments, PDFs and reminders."""

import uuid
from datetime import datetime, time, timedelta

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.billing import documents, service
from luxfact.billing.repository import BillingRepository
from luxfact.billing.schemas import (
    BillIn,
    BillOut,
    CreditNoteIn,
    InvoiceOut,
    InvoiceQuery,
    PaymentIn,
    PaymentOut,
)
from luxfact.claims import fhir
from luxfact.claims.repository import ClaimRepository
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, decode_time_cursor, encode_cursor
from luxfact.kit.errors import Conflict, NotFound
from luxfact.kit.money import cents_str
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients.repository import PatientRepository
from luxfact.patients.service import read_patient
from luxfact.settings import Settings
from luxfact.stays.repository import StayRepository
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.service import tenant_by_id

BILLING = (Role.billing,)
READERS = (Role.billing, Role.admin, Role.integration)
PDF = "application/pdf"
FHIR_JSON = "application/fhir+json"


async def _tenant(ctx: Ctx) -> Tenant:
    tenant = await tenant_by_id(ctx.session, ctx.tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


def _settings(ctx: Ctx) -> Settings:
    return ctx.request.state.settings


async def _invoice_response(ctx: Ctx, invoice_id: uuid.UUID, status: int = 200) -> Response:
    invoice, lines = await service.get_invoice(ctx.session, ctx.tenant_id, invoice_id)
    out = service.invoice_out(invoice, lines, service.today())
    return json_response(out, status, headers={"Location": f"/api/v1/invoices/{invoice.id}"}
                         if status == 201 else None)


@endpoint(*BILLING, idempotent=True, body=BillIn, response=BillOut, status=201,
          also=((200, "Dry run: what would be issued; nothing is stored"),))
async def bill_stay(ctx: Ctx) -> Response:
    """Bill a stay: the insurer part (per payer) and the patient part, as separate invoices.

    With `dry_run` the answer shows exactly what would be issued, without numbers."""
    data = await ctx.body(BillIn)
    result = await service.bill_stay(ctx.session, await _tenant(ctx), ctx.path_uuid("stay_id"),
                                     data, ctx.principal.actor)
    if isinstance(result, service.Draft):
        return json_response(BillOut(dry_run=True, stay_state=result.stay.state,
                                     invoices=service.draft_out(result)))
    on = service.today()
    return json_response(BillOut(
        dry_run=False, stay_state=result.stay.state,
        invoices=[service.invoice_out(inv, lines, on) for inv, lines in result.invoices]), 201)


@endpoint(*READERS, query=InvoiceQuery, response=Page[InvoiceOut])
async def list_invoices(ctx: Ctx) -> Response:
    """Invoices and credit notes, newest first, filtered by status, patient, stay or dates."""
    query = ctx.query(InvoiceQuery)
    on = service.today()
    start = (datetime.combine(query.issued_from, time(), LUXEMBOURG)
             if query.issued_from else None)
    end = (datetime.combine(query.issued_to + timedelta(days=1), time(), LUXEMBOURG)
           if query.issued_to else None)
    repo = BillingRepository(ctx.session, ctx.tenant_id)
    rows = await repo.page(limit=query.limit + 1, status=query.status,
                           patient_id=query.patient_id, stay_id=query.stay_id,
                           kind=query.kind, doc_type=query.doc_type, issued_from=start,
                           issued_to=end, today=on, after=decode_time_cursor(query.cursor))
    shown = rows[:query.limit]
    lines = await repo.lines_of([inv.id for inv in shown])
    cursor = (encode_cursor([shown[-1].issued_at.isoformat(), str(shown[-1].id)])
              if len(rows) > query.limit else None)
    return json_response(Page[InvoiceOut](
        items=[service.invoice_out(inv, lines.get(inv.id, []), on) for inv in shown],
        next_cursor=cursor))


@endpoint(*READERS, response=InvoiceOut)
async def get_invoice(ctx: Ctx) -> Response:
    """An invoice or credit note with its lines, balance and status."""
    return await _invoice_response(ctx, ctx.path_uuid("invoice_id"))


@endpoint(*BILLING)
async def refuse_change(ctx: Ctx) -> Response:
    """Issued invoices are immutable: correct one with a credit note and a new invoice."""
    invoice, _ = await service.get_invoice(ctx.session, ctx.tenant_id,
                                           ctx.path_uuid("invoice_id"))
    raise Conflict(f"Invoice {invoice.number} is issued and cannot be changed or deleted: "
                   "issue a credit note, then bill again.")


@endpoint(*BILLING, idempotent=True, body=CreditNoteIn, response=InvoiceOut, status=201)
async def credit_invoice(ctx: Ctx) -> Response:
    """A credit note for the whole invoice or chosen lines; its acts can be billed again."""
    data = await ctx.body(CreditNoteIn)
    note, _lines = await service.credit(ctx.session, await _tenant(ctx),
                                        ctx.path_uuid("invoice_id"), data, ctx.principal.actor)
    return await _invoice_response(ctx, note.id, 201)


@endpoint(*BILLING, idempotent=True, body=PaymentIn, response=InvoiceOut, status=201)
async def record_payment(ctx: Ctx) -> Response:
    """Record a payment received (nothing is charged here): the balance and status follow."""
    data = await ctx.body(PaymentIn)
    invoice, _payment = await service.pay(ctx.session, await _tenant(ctx),
                                          ctx.path_uuid("invoice_id"), data,
                                          ctx.principal.actor)
    return await _invoice_response(ctx, invoice.id, 201)


@endpoint(*READERS, response=Page[PaymentOut])
async def list_payments(ctx: Ctx) -> Response:
    """The payments recorded on an invoice."""
    invoice, _ = await service.get_invoice(ctx.session, ctx.tenant_id,
                                           ctx.path_uuid("invoice_id"))
    payments = await BillingRepository(ctx.session, ctx.tenant_id).payments(invoice.id)
    return json_response(Page[PaymentOut](items=[PaymentOut(
        id=p.id, invoice_id=p.invoice_id, amount=cents_str(p.amount_cents), paid_on=p.paid_on,
        method=p.method, reference=p.reference, created_at=p.created_at) for p in payments]))


def _pdf(content: bytes, digest: str, filename: str, status: int = 200) -> Response:
    return Response(content, status_code=status, media_type=PDF, headers={
        "ETag": f'"{digest}"', "X-Content-SHA256": digest,
        "Content-Disposition": f'inline; filename="{filename}.pdf"',
        "Cache-Control": "private, no-store"})


@endpoint(*READERS)
async def invoice_pdf(ctx: Ctx) -> Response:
    """The invoice or credit note as PDF/A-3b, rendered once and archived byte for byte."""
    content, digest, invoice = await documents.archived_pdf(
        ctx.session, await _tenant(ctx), ctx.path_uuid("invoice_id"), _settings(ctx))
    if ctx.request.headers.get("if-none-match") == f'"{digest}"':
        return Response(status_code=304, headers={"ETag": f'"{digest}"'})
    return _pdf(content, digest, invoice.number)


@endpoint(*BILLING, status=201)
async def send_reminder(ctx: Ctx) -> Response:
    """A reminder letter (PDF) for an overdue patient invoice, archived with its number."""
    number, content, digest, invoice = await documents.send_reminder(
        ctx.session, await _tenant(ctx), ctx.path_uuid("invoice_id"), _settings(ctx),
        service.today())
    response = _pdf(content, digest, f"{invoice.number}-reminder-{number}", 201)
    response.headers["Location"] = f"/api/v1/invoices/{invoice.id}/reminders/{number}"
    return response


@endpoint(*READERS)
async def reminder_pdf(ctx: Ctx) -> Response:
    """A reminder letter as archived."""
    invoice, _ = await service.get_invoice(ctx.session, ctx.tenant_id,
                                           ctx.path_uuid("invoice_id"))
    number = ctx.request.path_params["number"]
    if not number.isdigit() or len(number) > 6:
        raise NotFound("No such reminder.")
    stored = await BillingRepository(ctx.session, ctx.tenant_id).document(
        invoice.id, f"reminder-{number}")
    if stored is None:
        raise NotFound("No such reminder.")
    return _pdf(stored.content, stored.sha256, f"{invoice.number}-reminder-{number}")


@endpoint(*READERS)
async def invoice_fhir(ctx: Ctx) -> Response:
    """An insurer invoice as a FHIR R4 Bundle: its Claim, and its ClaimResponse once answered.

    `application/fhir+json`. Only insurer invoices are claims: a patient invoice or a credit
    note is a 409. The Bundle names the patient, so the read is audited like any read of a
    patient's record."""
    invoice, lines = await service.get_invoice(ctx.session, ctx.tenant_id,
                                               ctx.path_uuid("invoice_id"))
    if invoice.doc_type != "invoice" or invoice.kind != "insurer":
        what = "a credit note" if invoice.doc_type != "invoice" else "the patient's part"
        raise Conflict(f"{invoice.number} is {what}: only insurer invoices are claims, "
                       "and only they have a FHIR view.")
    tenant = await _tenant(ctx)
    patient = await read_patient(ctx.session, ctx.tenant_id, invoice.patient_id)
    stay = await StayRepository(ctx.session, ctx.tenant_id).get(invoice.stay_id)
    coverage = None
    if invoice.coverage_id is not None:
        coverage = (await PatientRepository(ctx.session, ctx.tenant_id).coverages_by_id(
            [invoice.coverage_id])).get(invoice.coverage_id)
    results = await ClaimRepository(ctx.session, ctx.tenant_id).results_of(invoice.id)
    bundle = fhir.bundle(invoice, lines, patient, stay, coverage, tenant, results)
    return Response(fhir.dumps(bundle), media_type=FHIR_JSON,
                    headers={"Cache-Control": "private, no-store"})

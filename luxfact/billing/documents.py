"""The printed documents of an invoice: built from the database, rendered once, archived.

An issued document shows the invoice as issued (amount due = its total), never its later
payments, so the first rendering is the only one and can be served byte for byte forever.
A reminder is a document of its own, dated, showing the balance on its date.
"""

import asyncio
import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.billing import rendering
from luxfact.billing.document import (
    Address,
    DocumentLine,
    Hospital,
    InvoiceDocument,
    StayPeriod,
)
from luxfact.billing.models import Invoice, InvoiceLine
from luxfact.billing.repository import BillingRepository
from luxfact.db.engine import Database
from luxfact.kit.errors import Conflict, NotFound
from luxfact.kit.money import from_cents
from luxfact.kit.time import utcnow
from luxfact.patients.repository import PatientRepository
from luxfact.settings import Settings
from luxfact.stays.repository import StayRepository
from luxfact.stays.service import local_day
from luxfact.tenancy.models import Tenant

ZERO = Decimal("0.00")
PRINTED = ("patient",)  # the documents printed: the insurers' are claim files


def hospital_of(tenant: Tenant, tenants_dir: Path) -> Hospital:
    config = tenant.config
    address = config.get("address", {})
    logo = None
    if config.get("logo"):
        path = tenants_dir / config["logo"]
        logo = path.read_bytes() if path.is_file() else None
    return Hospital(
        legal_name=tenant.legal_name,
        address=Address(tenant.legal_name, address.get("street", ""),
                        address.get("postal_code", ""), address.get("city", ""),
                        address.get("country", "LU")),
        cns_provider_code=tenant.cns_provider_code, iban=tenant.iban, bic=tenant.bic,
        logo=logo, footer=config.get("invoices", {}).get("footer", ""))


async def build(session: AsyncSession, tenant: Tenant, invoice: Invoice,
                lines: list[InvoiceLine], settings: Settings, *,
                reminder_on: date | None = None) -> InvoiceDocument:
    patient = (await PatientRepository(session, tenant.id).many([invoice.patient_id]))
    stay = (await StayRepository(session, tenant.id).many([invoice.stay_id]))
    if invoice.patient_id not in patient or invoice.stay_id not in stay:
        raise NotFound("The invoice's patient or stay is missing.")
    credited = await BillingRepository(session, tenant.id).numbers(
        [invoice.credited_invoice_id] if invoice.credited_invoice_id else [])
    return assemble(invoice, lines, patient[invoice.patient_id], stay[invoice.stay_id],
                    hospital_of(tenant, settings.tenants_dir),
                    credited.get(invoice.credited_invoice_id), reminder_on)  # type: ignore[arg-type]


async def build_many(session: AsyncSession, tenant: Tenant, invoice_ids: list[uuid.UUID],
                     settings: Settings) -> list[tuple[Invoice, InvoiceDocument]]:
    """The documents of several invoices, with one query per table, not per invoice."""
    repo = BillingRepository(session, tenant.id)
    invoices = await repo.many(invoice_ids)
    lines = await repo.lines_of([inv.id for inv in invoices])
    patients = await PatientRepository(session, tenant.id).many(
        sorted({inv.patient_id for inv in invoices}))
    stays = await StayRepository(session, tenant.id).many(sorted({inv.stay_id for inv in invoices}))
    credited = await repo.numbers(sorted({inv.credited_invoice_id for inv in invoices
                                          if inv.credited_invoice_id}))
    hospital = hospital_of(tenant, settings.tenants_dir)
    return [(inv, assemble(inv, lines.get(inv.id, []), patients[inv.patient_id],
                           stays[inv.stay_id], hospital,
                           credited.get(inv.credited_invoice_id)))  # type: ignore[arg-type]
            for inv in invoices]


def assemble(invoice: Invoice, lines: list[InvoiceLine], patient: Any, stay: Any,
             hospital: Hospital, credited: str | None,
             reminder_on: date | None = None) -> InvoiceDocument:
    """The document of an invoice from its rows: no I/O."""
    language = invoice.language if invoice.language in ("fr", "de", "en") else "fr"
    total = from_cents(invoice.total_cents)
    if reminder_on is not None:
        due = from_cents(invoice.total_cents - invoice.credited_cents - invoice.paid_cents)
        paid = from_cents(invoice.paid_cents + invoice.credited_cents)
    elif invoice.doc_type == "invoice":
        due, paid = total, ZERO
    else:
        due, paid = ZERO, ZERO
    doc_lines = tuple(DocumentLine(
        code=line.code, label=line.label_de if language == "de" and line.label_de
        else line.label_fr, day=line.day, quantity=line.quantity,
        unit_price=from_cents(line.unit_price_cents), amount=from_cents(line.gross_cents),
        insurer=from_cents(line.insurer_cents), patient=from_cents(line.patient_cents))
        for line in lines)
    name = f"{patient.given_name} {patient.family_name}".strip()
    return InvoiceDocument(
        kind="reminder" if reminder_on else invoice.doc_type,  # type: ignore[arg-type]
        language=language,  # type: ignore[arg-type]
        number=invoice.number, issued_on=invoice.issued_on, due_on=invoice.due_on,
        hospital=hospital,
        patient=Address(name, patient.street, patient.postal_code, patient.city,
                        patient.country),
        patient_birth_date=patient.birth_date,
        stay=StayPeriod(stay.kind, local_day(stay.admitted_at),
                        local_day(stay.discharged_at) if stay.discharged_at else None,
                        invoice.period_from, invoice.period_to),
        lines=doc_lines, total=sum((line.amount for line in doc_lines), ZERO),
        insurer_total=sum((line.insurer for line in doc_lines), ZERO),
        patient_total=sum((line.patient for line in doc_lines), ZERO),
        paid=paid, amount_due=due, reference=invoice.reference, credited_number=credited,
        reason=invoice.reason or None, reminder_on=reminder_on)


async def archived_pdf(session: AsyncSession, tenant: Tenant, invoice_id: uuid.UUID,
                       settings: Settings) -> tuple[bytes, str, Invoice]:
    """The invoice's PDF: the archived bytes, or rendered now and archived (first one wins)."""
    repo = BillingRepository(session, tenant.id)
    invoice = await repo.get(invoice_id)
    if invoice is None:
        raise NotFound("No such invoice.")
    if invoice.kind != "patient":
        raise Conflict(f"{invoice.number} is the insurer's part: it goes to {invoice.payer} "
                       "in a claim file, not on paper. Documents are printed for patients.")
    stored = await repo.document(invoice.id, "invoice")
    if stored is None:
        doc = await build(session, tenant, invoice, await repo.lines(invoice.id), settings)
        content, digest = await rendering.render(doc, settings.invoices_dir,
                                                 settings.render_workers)
        await repo.store_document(invoice.id, "invoice", digest, content, utcnow())
        stored = await repo.document(invoice.id, "invoice")
        assert stored is not None
        await record(session, "invoice.render", "invoice", invoice.id,
                     {"sha256": stored.sha256}, tenant_id=tenant.id)
    return stored.content, stored.sha256, invoice


async def send_reminder(session: AsyncSession, tenant: Tenant, invoice_id: uuid.UUID,
                        settings: Settings, on: date) -> tuple[int, bytes, str, Invoice]:
    """A reminder letter for an overdue patient invoice, numbered and archived."""
    from luxfact.billing.service import invoice_status

    repo = BillingRepository(session, tenant.id)
    invoice = await repo.get(invoice_id, lock=True)
    if invoice is None:
        raise NotFound("No such invoice.")
    if invoice.doc_type != "invoice" or invoice.kind != "patient":
        raise Conflict("Reminders are sent for patient invoices only.")
    status = invoice_status(invoice, on)
    if status != "overdue":
        raise Conflict(f"The invoice is {status.replace('_', ' ')}, not overdue: no reminder.")
    count = sum(1 for kind in await repo.document_kinds(invoice.id)
                if kind.startswith("reminder-"))
    number = count + 1
    doc = await build(session, tenant, invoice, await repo.lines(invoice.id), settings,
                      reminder_on=on)
    content, digest = await rendering.render(doc, settings.invoices_dir, settings.render_workers)
    await repo.store_document(invoice.id, f"reminder-{number}", digest, content, utcnow())
    await record(session, "invoice.reminder", "invoice", invoice.id,
                 {"reminder": number, "sha256": digest}, tenant_id=tenant.id)
    return number, content, digest, invoice


async def render_pending(db: Database, tenant: Tenant, start: datetime, end: datetime,
                         settings: Settings, advance: Callable[[int], None] = lambda n: None,
                         batch: int = 64) -> int:
    """Render and archive every patient document (invoices and credit notes) issued in
    [start, end) that has no PDF yet; the insurers' go out as claim files.

    A pipeline: while the pool renders one batch, the next one is read; each batch is
    stored in a transaction of its own, so an interruption loses at most the batches in
    hand, and a rerun carries on where this one stopped.
    """
    done = 0
    after: uuid.UUID | None = None
    in_hand: list[tuple[uuid.UUID, asyncio.Future[tuple[bytes, str]]]] = []
    while True:
        async with db.transaction() as session:
            ids = await BillingRepository(session, tenant.id).issued_in(
                start, end, without_document=True, limit=batch, after=after, kinds=PRINTED)
            built = await build_many(session, tenant, ids, settings) if ids else []
        rendering_now = [(invoice.id, asyncio.ensure_future(rendering.render(
            doc, settings.invoices_dir, settings.render_workers))) for invoice, doc in built]
        if in_hand:
            done += await _store(db, tenant, in_hand)
            advance(len(in_hand))
        if not ids:
            return done
        in_hand, after = rendering_now, ids[-1]


async def _store(db: Database, tenant: Tenant,
                 rendered: list[tuple[uuid.UUID, "asyncio.Future[tuple[bytes, str]]"]]) -> int:
    results = [(invoice_id, *(await future)) for invoice_id, future in rendered]
    async with db.transaction() as session:
        await BillingRepository(session, tenant.id).store_documents(
            [(invoice_id, "invoice", digest, content) for invoice_id, content, digest in results],
            utcnow())
        await record(session, "invoice.render_batch", "tenant", tenant.id,
                     {"count": len(results)}, tenant_id=tenant.id)
    return len(results)

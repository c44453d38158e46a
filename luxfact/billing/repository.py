"""Every query of invoices, their lines, counters, payments and documents, within one tenant."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, and_, exists, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.billing.models import Invoice, InvoiceDocument, InvoiceLine, NumberCounter, Payment
from luxfact.db.queries import fresh

I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
L = InvoiceLine.__table__  # type: ignore[attr-defined]
N = NumberCounter.__table__  # type: ignore[attr-defined]
P = Payment.__table__  # type: ignore[attr-defined]
D = InvoiceDocument.__table__  # type: ignore[attr-defined]
INSERT_INVOICE, INSERT_LINE, INSERT_PAYMENT = insert(I), insert(L), insert(P)

STATUSES = ("open", "partly_paid", "overdue", "paid", "credited", "overpaid")


def _credited_line() -> Any:
    """Whether a line of an invoice was credited by a credit note (correlated)."""
    note, note_line = aliased(I), aliased(L)
    return exists().where(
        note.c.tenant_id == I.c.tenant_id, note.c.credited_invoice_id == I.c.id,
        note_line.c.tenant_id == note.c.tenant_id, note_line.c.invoice_id == note.c.id,
        note_line.c.credited_seq == L.c.seq)


def status_condition(status: str, today: date) -> Any:
    """The SQL form of `service.invoice_status`: keep the two in step."""
    balance = I.c.total_cents - I.c.credited_cents - I.c.paid_cents
    not_due = or_(I.c.due_on.is_(None), I.c.due_on >= today)
    credited = and_(I.c.credited_cents >= I.c.total_cents, I.c.paid_cents == 0)
    return {
        "credited": credited,
        "overpaid": balance < 0,
        "paid": and_(balance == 0, ~credited),
        "overdue": and_(balance > 0, I.c.due_on < today),
        "partly_paid": and_(balance > 0, I.c.paid_cents > 0, not_due),
        "open": and_(balance > 0, I.c.paid_cents == 0, not_due),
    }[status]


class BillingRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    # ----------------------------------------------------------------------- numbering

    async def draw_number(self, series: str, year: int) -> int:
        """The next number of a series: one upsert that locks the counter row until commit
        (PostgreSQL) or under the write lock (SQLite), so numbers follow without gaps."""
        dialect = self.session.bind.dialect.name  # type: ignore[union-attr]
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = builder(N).values(tenant_id=self.tenant_id, series=series, year=year, last=1)
        statement = statement.on_conflict_do_update(
            index_elements=[N.c.tenant_id, N.c.series, N.c.year],
            set_={"last": N.c.last + 1}).returning(N.c.last)
        return int((await self.session.execute(statement)).scalar_one())

    # -------------------------------------------------------------------------- invoices

    async def get(self, invoice_id: uuid.UUID, *, lock: bool = False) -> Invoice | None:
        query = fresh(Invoice).where(I.c.tenant_id == self.tenant_id, I.c.id == invoice_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def insert_invoice(self, values: dict[str, Any]) -> None:
        await self.session.execute(INSERT_INVOICE, {"tenant_id": self.tenant_id, **values})

    async def insert_lines(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(INSERT_LINE, [{"tenant_id": self.tenant_id, **row}
                                                     for row in rows])

    async def lines(self, invoice_id: uuid.UUID) -> list[InvoiceLine]:
        query = fresh(InvoiceLine).where(L.c.tenant_id == self.tenant_id,
                                         L.c.invoice_id == invoice_id).order_by(L.c.seq)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def lines_of(self, invoice_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[InvoiceLine]]:
        """The lines of several invoices in one query (a page of the list)."""
        found: dict[uuid.UUID, list[InvoiceLine]] = {}
        if invoice_ids:
            query = fresh(InvoiceLine).where(L.c.tenant_id == self.tenant_id,
                                             L.c.invoice_id.in_(invoice_ids)
                                             ).order_by(L.c.invoice_id, L.c.seq)
            for line in (await self.session.exec(query)).scalars().all():  # type: ignore[call-overload]
                found.setdefault(line.invoice_id, []).append(line)
        return found

    async def of_stay(self, stay_id: uuid.UUID) -> list[Invoice]:
        query = fresh(Invoice).where(I.c.tenant_id == self.tenant_id,
                                     I.c.stay_id == stay_id).order_by(I.c.issued_at, I.c.seq)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def credited_seqs(self, invoice_id: uuid.UUID) -> set[int]:
        """Lines of an invoice already credited."""
        note = aliased(I)
        query = (select(L.c.credited_seq)
                 .select_from(L.join(note, and_(note.c.tenant_id == L.c.tenant_id,
                                                note.c.id == L.c.invoice_id)))
                 .where(note.c.tenant_id == self.tenant_id,
                        note.c.credited_invoice_id == invoice_id))
        return {row[0] for row in (await self.session.execute(query)).all()}

    async def live_parts(self, stay_id: uuid.UUID) -> list[Row]:
        """Every line of the stay's invoices not credited: (act_id, part, day, last_day)."""
        query = (select(L.c.act_id, L.c.part, L.c.day, L.c.last_day)
                 .select_from(L.join(I, and_(I.c.tenant_id == L.c.tenant_id,
                                             I.c.id == L.c.invoice_id)))
                 .where(I.c.tenant_id == self.tenant_id, I.c.stay_id == stay_id,
                        I.c.doc_type == "invoice", ~_credited_line()))
        return list((await self.session.execute(query)).all())

    async def participation_days_by_year(self, patient_id: uuid.UUID,
                                         other_than: uuid.UUID) -> dict[int, int]:
        """Participation days billed (and not credited) in the patient's other stays."""
        query = (select(L.c.day, L.c.quantity)
                 .select_from(L.join(I, and_(I.c.tenant_id == L.c.tenant_id,
                                             I.c.id == L.c.invoice_id)))
                 .where(I.c.tenant_id == self.tenant_id, I.c.patient_id == patient_id,
                        I.c.stay_id != other_than, I.c.doc_type == "invoice",
                        L.c.act_id.is_(None), ~_credited_line()))
        days: dict[int, int] = {}
        for day, quantity in (await self.session.execute(query)).all():
            days[day.year] = days.get(day.year, 0) + quantity
        return days

    async def acts_with_live_lines(self, act_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        if not act_ids:
            return set()
        query = (select(L.c.act_id).distinct()
                 .select_from(L.join(I, and_(I.c.tenant_id == L.c.tenant_id,
                                             I.c.id == L.c.invoice_id)))
                 .where(I.c.tenant_id == self.tenant_id, I.c.doc_type == "invoice",
                        L.c.act_id.in_(act_ids), ~_credited_line()))
        return {row[0] for row in (await self.session.execute(query)).all()}

    async def add_to_owed(self, invoice_id: uuid.UUID, *, paid: int = 0, credited: int = 0) -> None:
        await self.session.execute(
            update(I).where(I.c.tenant_id == self.tenant_id, I.c.id == invoice_id)
            .values(paid_cents=I.c.paid_cents + paid, credited_cents=I.c.credited_cents + credited,
                    version=I.c.version + 1))

    async def page(self, *, limit: int, status: str | None, patient_id: uuid.UUID | None,
                   stay_id: uuid.UUID | None, kind: str | None, doc_type: str | None,
                   issued_from: datetime | None, issued_to: datetime | None,
                   today: date, after: tuple[datetime, uuid.UUID] | None) -> list[Invoice]:
        """Newest first; the cursor is (issued_at, id) of the last row seen."""
        query = fresh(Invoice).where(I.c.tenant_id == self.tenant_id)
        if status:
            query = query.where(I.c.doc_type == "invoice", status_condition(status, today))
        for column, value in ((I.c.patient_id, patient_id), (I.c.stay_id, stay_id),
                              (I.c.kind, kind), (I.c.doc_type, doc_type)):
            if value is not None:
                query = query.where(column == value)
        if issued_from:
            query = query.where(I.c.issued_at >= issued_from)
        if issued_to:
            query = query.where(I.c.issued_at < issued_to)
        if after:
            query = query.where(or_(I.c.issued_at < after[0],
                                    and_(I.c.issued_at == after[0], I.c.id < after[1])))
        query = query.order_by(I.c.issued_at.desc(), I.c.id.desc()).limit(limit)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def issued_in(self, start: datetime, end: datetime, *, without_document: bool,
                        limit: int, after: uuid.UUID | None) -> list[uuid.UUID]:
        """Ids of the documents issued in [start, end), by id, for batch rendering."""
        query = select(I.c.id).where(I.c.tenant_id == self.tenant_id, I.c.issued_at >= start,
                                     I.c.issued_at < end)
        if without_document:
            query = query.where(~exists().where(D.c.tenant_id == I.c.tenant_id,
                                                D.c.invoice_id == I.c.id,
                                                D.c.kind == "invoice"))
        if after is not None:
            query = query.where(I.c.id > after)
        query = query.order_by(I.c.id).limit(limit)
        return [row[0] for row in (await self.session.execute(query)).all()]

    # -------------------------------------------------------------------------- payments

    async def insert_payment(self, values: dict[str, Any]) -> None:
        await self.session.execute(INSERT_PAYMENT, {"tenant_id": self.tenant_id, **values})

    async def payments(self, invoice_id: uuid.UUID) -> list[Payment]:
        query = fresh(Payment).where(P.c.tenant_id == self.tenant_id,
                                     P.c.invoice_id == invoice_id).order_by(P.c.created_at)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    # ------------------------------------------------------------------------- documents

    async def document(self, invoice_id: uuid.UUID, kind: str) -> Row | None:
        query = select(D.c.sha256, D.c.content).where(
            D.c.tenant_id == self.tenant_id, D.c.invoice_id == invoice_id, D.c.kind == kind)
        return (await self.session.execute(query)).first()

    async def document_kinds(self, invoice_id: uuid.UUID) -> list[str]:
        query = select(D.c.kind).where(D.c.tenant_id == self.tenant_id,
                                       D.c.invoice_id == invoice_id)
        return [row[0] for row in (await self.session.execute(query)).all()]

    async def store_document(self, invoice_id: uuid.UUID, kind: str, sha256: str,
                             content: bytes, created_at: datetime) -> None:
        """Store a rendered document unless one is there already (the first one stays)."""
        dialect = self.session.bind.dialect.name  # type: ignore[union-attr]
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = builder(D).values(
            tenant_id=self.tenant_id, invoice_id=invoice_id, kind=kind, sha256=sha256,
            size=len(content), content=content, created_at=created_at,
        ).on_conflict_do_nothing(index_elements=[D.c.tenant_id, D.c.invoice_id, D.c.kind])
        await self.session.execute(statement)

    async def count_documents(self) -> int:
        query = select(func.count()).select_from(D).where(D.c.tenant_id == self.tenant_id)
        return int((await self.session.execute(query)).scalar_one())

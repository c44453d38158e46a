"""Every query of invoices, their lines, counters, payments and documents, within one tenant."""

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, exists, insert, or_, select, update
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
    """Whether a line of an invoice was credited by a credit note (correlated to L)."""
    note_line = aliased(L)
    return exists().where(note_line.c.tenant_id == L.c.tenant_id,
                          note_line.c.credited_invoice_id == L.c.invoice_id,
                          note_line.c.credited_seq == L.c.seq)


# Built once with their values as parameters: compiled once, not on every billing.
_LINES_OF_INVOICES = L.join(I, and_(I.c.tenant_id == L.c.tenant_id, I.c.id == L.c.invoice_id))
_LIVE = (I.c.tenant_id == bindparam("tenant_id"), I.c.doc_type == "invoice", ~_credited_line())
# The invoices first, then their lines by primary key: two steps, so that the plan never
# depends on statistics (a bulk billing run fills the tables faster than autovacuum
# analyses them, and a plan made for empty tables scans every line of the hospital).
INVOICES_OF_STAY = select(I.c.id).where(I.c.tenant_id == bindparam("tenant_id"),
                                        I.c.stay_id == bindparam("stay_id"),
                                        I.c.doc_type == "invoice")
INVOICES_OF_PATIENT = select(I.c.id).where(I.c.tenant_id == bindparam("tenant_id"),
                                           I.c.patient_id == bindparam("patient_id"),
                                           I.c.stay_id != bindparam("stay_id"),
                                           I.c.doc_type == "invoice")
_OF_INVOICES = (L.c.tenant_id == bindparam("tenant_id"),
                L.c.invoice_id.in_(bindparam("invoice_ids", expanding=True)),
                ~_credited_line())
LIVE_PARTS = select(L.c.act_id, L.c.part, L.c.day, L.c.last_day, L.c.amount_cents,
                    L.c.invoice_id).where(*_OF_INVOICES)
PARTICIPATION_DAYS = select(L.c.day, L.c.quantity).where(*_OF_INVOICES, L.c.act_id.is_(None))
LIVE_LINES_OF_ACTS = (select(L.c.act_id, L.c.invoice_id, L.c.seq).select_from(_LINES_OF_INVOICES)
                        .where(*_LIVE, L.c.act_id.in_(bindparam("act_ids", expanding=True))))


def status_condition(status: str, today: date) -> Any:
    """The SQL form of `service.invoice_status`: keep the two in step."""
    balance = I.c.total_cents - I.c.credited_cents - I.c.paid_cents
    not_due = or_(I.c.due_on.is_(None), I.c.due_on >= today)
    credited = and_(I.c.total_cents > 0, I.c.credited_cents >= I.c.total_cents,
                    I.c.paid_cents == 0)
    return {
        "credited": credited,
        "overpaid": balance < 0,
        "paid": and_(balance == 0, ~credited),
        "overdue": and_(balance > 0, I.c.due_on < today),
        "partly_paid": and_(balance > 0, I.c.paid_cents > 0, not_due),
        "open": and_(balance > 0, I.c.paid_cents == 0, not_due),
    }[status]


_DRAW: dict[str, Any] = {}


def _draw_statement(dialect: str) -> Any:
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # In an INSERT, a parameter may not be named after a column: hence the b_ prefix.
    statement = builder(N).values(tenant_id=bindparam("b_tenant_id"),
                                  series=bindparam("b_series"), year=bindparam("b_year"),
                                  last=bindparam("count"))
    return statement.on_conflict_do_update(
        index_elements=[N.c.tenant_id, N.c.series, N.c.year],
        set_={"last": N.c.last + bindparam("count")}).returning(N.c.last)


class BillingRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    # ----------------------------------------------------------------------- numbering

    async def draw_numbers(self, series: str, year: int, count: int = 1) -> list[int]:
        """The next `count` numbers of a series: one upsert that locks the counter row until
        commit (PostgreSQL) or runs under the write lock (SQLite), so numbers follow without
        gaps. Callers draw last, just before commit: the lock is held for as short a time."""
        statement = _DRAW.get(self.session.bind.dialect.name)  # type: ignore[union-attr]
        if statement is None:
            statement = _DRAW[self.session.bind.dialect.name] = _draw_statement(  # type: ignore[union-attr]
                self.session.bind.dialect.name)  # type: ignore[union-attr]
        last = int((await self.session.execute(statement, {
            "b_tenant_id": self.tenant_id, "b_series": series, "b_year": year, "count": count,
        })).scalar_one())
        return list(range(last - count + 1, last + 1))

    # -------------------------------------------------------------------------- invoices

    async def get(self, invoice_id: uuid.UUID, *, lock: bool = False) -> Invoice | None:
        query = fresh(Invoice).where(I.c.tenant_id == self.tenant_id, I.c.id == invoice_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def insert_invoices(self, rows: list[dict[str, Any]]) -> None:
        await self.session.execute(INSERT_INVOICE, [{"tenant_id": self.tenant_id, **row}
                                                    for row in rows])

    async def insert_lines(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.session.execute(INSERT_LINE, [{"tenant_id": self.tenant_id, **row}
                                                     for row in rows])

    async def many(self, invoice_ids: list[uuid.UUID]) -> list[Invoice]:
        query = fresh(Invoice).where(I.c.tenant_id == self.tenant_id,
                                     I.c.id.in_(invoice_ids)).order_by(I.c.id)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def numbers(self, invoice_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not invoice_ids:
            return {}
        rows = await self.session.execute(select(I.c.id, I.c.number).where(
            I.c.tenant_id == self.tenant_id, I.c.id.in_(invoice_ids)))
        return {row.id: row.number for row in rows.all()}

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

    async def credited_seqs(self, invoice_id: uuid.UUID) -> set[int]:
        """Lines of an invoice already credited."""
        query = select(L.c.credited_seq).where(L.c.tenant_id == self.tenant_id,
                                               L.c.credited_invoice_id == invoice_id)
        return {row[0] for row in (await self.session.execute(query)).all()}

    async def live_parts(self, stay_id: uuid.UUID) -> list[Row]:
        """Every line of the stay's invoices not credited: (act_id, part, day, last_day,
        amount_cents, invoice_id)."""
        params = {"tenant_id": self.tenant_id, "stay_id": stay_id}
        ids = list((await self.session.execute(INVOICES_OF_STAY, params)).scalars())
        if not ids:
            return []
        return list((await self.session.execute(
            LIVE_PARTS, {"tenant_id": self.tenant_id, "invoice_ids": ids})).all())

    async def participation_days_by_year(self, patient_id: uuid.UUID,
                                         other_than: uuid.UUID) -> dict[int, int]:
        """Participation days billed (and not credited) in the patient's other stays."""
        days: dict[int, int] = {}
        ids = list((await self.session.execute(INVOICES_OF_PATIENT, {
            "tenant_id": self.tenant_id, "patient_id": patient_id,
            "stay_id": other_than})).scalars())
        if not ids:
            return days
        for day, quantity in (await self.session.execute(PARTICIPATION_DAYS, {
                "tenant_id": self.tenant_id, "invoice_ids": ids})).all():
            days[day.year] = days.get(day.year, 0) + quantity
        return days

    async def live_lines_of_acts(self, act_ids: list[uuid.UUID]) -> list[Row]:
        """(act_id, invoice_id, seq) of every live invoice line of these acts."""
        if not act_ids:
            return []
        rows = await self.session.execute(LIVE_LINES_OF_ACTS, {"tenant_id": self.tenant_id,
                                                               "act_ids": act_ids})
        return list(rows.all())

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
                        limit: int, after: uuid.UUID | None,
                        kinds: tuple[str, ...] = ("patient", "insurer")) -> list[uuid.UUID]:
        """Ids of the documents issued in [start, end), by id, for batch rendering."""
        query = select(I.c.id).where(I.c.tenant_id == self.tenant_id, I.c.issued_at >= start,
                                     I.c.issued_at < end, I.c.kind.in_(kinds))
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
        await self.store_documents([(invoice_id, kind, sha256, content)], created_at)

    async def store_documents(self, documents: list[tuple[uuid.UUID, str, str, bytes]],
                              created_at: datetime) -> None:
        """(invoice id, kind, sha256, content) of each, in one statement."""
        dialect = self.session.bind.dialect.name  # type: ignore[union-attr]
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = builder(D).on_conflict_do_nothing(
            index_elements=[D.c.tenant_id, D.c.invoice_id, D.c.kind])
        await self.session.execute(statement, [
            {"tenant_id": self.tenant_id, "invoice_id": invoice_id, "kind": kind,
             "sha256": sha256, "size": len(content), "content": content,
             "created_at": created_at}
            for invoice_id, kind, sha256, content in documents])


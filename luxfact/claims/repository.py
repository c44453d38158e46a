"""Every query of claim batches, within one tenant."""

import asyncio
import uuid
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Text, and_, cast, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.billing.models import Invoice, InvoiceLine
from luxfact.claims.models import (
    NOT_FROZEN,
    ClaimBatch,
    ClaimBatchInvoice,
    ClaimFileChunk,
    ClaimLineResult,
)
from luxfact.db.queries import fresh
from luxfact.patients.models import Coverage, Patient
from luxfact.stays.models import Act, Stay

B = ClaimBatch.__table__  # type: ignore[attr-defined]
BI = ClaimBatchInvoice.__table__  # type: ignore[attr-defined]
I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
FC = ClaimFileChunk.__table__  # type: ignore[attr-defined]
R = ClaimLineResult.__table__  # type: ignore[attr-defined]
L = InvoiceLine.__table__  # type: ignore[attr-defined]
A = Act.__table__  # type: ignore[attr-defined]
P = Patient.__table__  # type: ignore[attr-defined]
S = Stay.__table__  # type: ignore[attr-defined]
C = Coverage.__table__  # type: ignore[attr-defined]
CREDITING = aliased(L, name="crediting")
INSERT_MEMBERS, INSERT_CHUNK = insert(BI), insert(FC)


CHUNK_BYTES = 1024 * 1024


def _live() -> Any:
    """An invoice line that no credit note has taken back."""
    return ~exists().where(CREDITING.c.tenant_id == L.c.tenant_id,
                           CREDITING.c.credited_invoice_id == L.c.invoice_id,
                           CREDITING.c.credited_seq == L.c.seq)


class ClaimRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def get(self, batch_id: uuid.UUID, *, lock: bool = False) -> ClaimBatch | None:
        query = fresh(ClaimBatch).where(B.c.tenant_id == self.tenant_id, B.c.id == batch_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def open_batch(self, payer: str, period: str) -> ClaimBatch | None:
        query = fresh(ClaimBatch).where(B.c.tenant_id == self.tenant_id, B.c.payer == payer,
                                        B.c.period == period,
                                        B.c.state.in_(("open", "validated")))
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def insert_open(self, values: dict[str, Any]) -> bool:
        """Insert an open batch unless one is open for its payer and month (the partial
        unique index decides, so two concurrent builds make one batch): whether it was."""
        dialect = self.session.bind.dialect.name  # type: ignore[union-attr]
        builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = builder(B).values(tenant_id=self.tenant_id, **values).on_conflict_do_nothing(
            index_elements=[B.c.tenant_id, B.c.payer, B.c.period],
            # The index's own predicate, as text: PostgreSQL matches it literally (a
            # parameterised IN would not prove the partial index applies).
            index_where=text(NOT_FROZEN)).returning(B.c.id)
        return (await self.session.execute(statement)).first() is not None

    async def claimable(self, payer: str, start: datetime, end: datetime) -> list[uuid.UUID]:
        """Issued insurer invoices of the payer in [start, end), not claimed yet and not
        wholly credited, oldest number first."""
        claimed = exists().where(BI.c.tenant_id == I.c.tenant_id, BI.c.invoice_id == I.c.id)
        query = (select(I.c.id)
                 .where(I.c.tenant_id == self.tenant_id, I.c.doc_type == "invoice",
                        I.c.kind == "insurer", I.c.payer == payer, I.c.issued_at >= start,
                        I.c.issued_at < end, I.c.credited_cents < I.c.total_cents,
                        ~claimed)
                 .order_by(I.c.year, I.c.seq))
        return [row[0] for row in (await self.session.execute(query)).all()]

    async def add_invoices(self, batch_id: uuid.UUID, invoice_ids: list[uuid.UUID]) -> None:
        if invoice_ids:
            await self.session.execute(INSERT_MEMBERS, [
                {"tenant_id": self.tenant_id, "batch_id": batch_id, "invoice_id": invoice_id}
                for invoice_id in invoice_ids])

    async def invoice_ids(self, batch_id: uuid.UUID) -> list[uuid.UUID]:
        """The batch's invoices in the order of their numbers (the file's order)."""
        query = (select(I.c.id)
                 .select_from(BI.join(I, and_(I.c.tenant_id == BI.c.tenant_id,
                                              I.c.id == BI.c.invoice_id)))
                 .where(BI.c.tenant_id == self.tenant_id, BI.c.batch_id == batch_id)
                 .order_by(I.c.year, I.c.seq))
        return [row[0] for row in (await self.session.execute(query)).all()]

    async def claimed_totals(self, batch_id: uuid.UUID) -> Any:
        """Invoices, live lines, gross and net of the batch, for the file's header: summed
        by the database, so the file is read from the tables once, not twice."""
        members = select(BI.c.invoice_id).where(BI.c.tenant_id == self.tenant_id,
                                                BI.c.batch_id == batch_id)
        query = select(func.count(func.distinct(L.c.invoice_id)), func.count(),
                       func.coalesce(func.sum(L.c.gross_cents), 0),
                       func.coalesce(func.sum(L.c.amount_cents), 0)).where(
            L.c.tenant_id == self.tenant_id, L.c.invoice_id.in_(members), _live())
        return (await self.session.execute(query)).one()

    async def contents(self, invoice_ids: list[uuid.UUID]) -> dict[str, Any]:
        """What a claim file says of these invoices, as plain rows (no ORM objects, no
        pricing JSON): a month's batch reads a million lines, and this is most of its time.

        Returns invoices, patients, stays and coverages by id, and the live lines of each
        invoice with their act's performer and modifiers (as JSON text)."""
        execute = self.session.execute
        invoices = {row.id: row for row in (await execute(
            select(I.c.id, I.c.number, I.c.stay_id, I.c.patient_id, I.c.coverage_id,
                   I.c.issued_on, I.c.payer)
            .where(I.c.tenant_id == self.tenant_id, I.c.id.in_(invoice_ids)))).all()}
        lines: dict[uuid.UUID, list[Any]] = {invoice_id: [] for invoice_id in invoice_ids}
        for row in (await execute(
                # Whether there is an act, not its id: one UUID less to decode per line.
                select(L.c.invoice_id, L.c.seq, L.c.act_id.is_not(None).label("is_act"),
                       L.c.code, L.c.day, L.c.quantity,
                       L.c.gross_cents, L.c.amount_cents, A.c.performer,
                       cast(A.c.modifiers, Text).label("modifiers"))
                .select_from(L.outerjoin(A, and_(A.c.tenant_id == L.c.tenant_id,
                                                 A.c.id == L.c.act_id)))
                .where(L.c.tenant_id == self.tenant_id, L.c.invoice_id.in_(invoice_ids),
                       _live())
                .order_by(L.c.invoice_id, L.c.seq))).all():
            lines[row.invoice_id].append(row)
        patient_ids = {row.patient_id for row in invoices.values()}
        stay_ids = {row.stay_id for row in invoices.values()}
        coverage_ids = {row.coverage_id for row in invoices.values() if row.coverage_id}
        patients = {row.id: row for row in (await execute(
            select(P.c.id, P.c.matricule, P.c.no_matricule_reason)
            .where(P.c.tenant_id == self.tenant_id, P.c.id.in_(patient_ids)))).all()}
        stays = {row.id: row for row in (await execute(
            select(S.c.id, S.c.external_id, S.c.kind, S.c.admitted_at, S.c.discharged_at,
                   S.c.unit, S.c.room_class)
            .where(S.c.tenant_id == self.tenant_id, S.c.id.in_(stay_ids)))).all()}
        coverages = {row.id: row for row in (await execute(
            select(C.c.id, C.c.member_number, C.c.accident_number)
            .where(C.c.tenant_id == self.tenant_id, C.c.id.in_(coverage_ids)))).all()} \
            if coverage_ids else {}
        return {"invoices": invoices, "lines": lines, "patients": patients, "stays": stays,
                "coverages": coverages, "others": await self.batch_of(invoice_ids)}

    async def results_of(self, invoice_id: uuid.UUID) -> list[Any]:
        """The insurer's answer for each line of an invoice (none before a return)."""
        query = (select(R).where(R.c.tenant_id == self.tenant_id, R.c.invoice_id == invoice_id)
                 .order_by(R.c.seq))
        return list((await self.session.execute(query)).all())

    async def batch_of(self, invoice_ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        if not invoice_ids:
            return {}
        rows = await self.session.execute(
            select(BI.c.invoice_id, BI.c.batch_id).where(
                BI.c.tenant_id == self.tenant_id, BI.c.invoice_id.in_(invoice_ids)))
        return {row.invoice_id: row.batch_id for row in rows.all()}

    async def open_states_of_patient_invoices(self, patient_ids: list[uuid.UUID]) -> int:
        """How many of these patients' invoices sit in a batch not yet sent."""
        query = (select(func.count())
                 .select_from(BI.join(B, and_(B.c.tenant_id == BI.c.tenant_id,
                                              B.c.id == BI.c.batch_id))
                              .join(I, and_(I.c.tenant_id == BI.c.tenant_id,
                                            I.c.id == BI.c.invoice_id)))
                 .where(BI.c.tenant_id == self.tenant_id, I.c.patient_id.in_(patient_ids),
                        B.c.state.in_(("open", "validated", "frozen"))))
        return int((await self.session.execute(query)).scalar_one())

    async def store_file(self, batch_id: uuid.UUID, source: BinaryIO) -> None:
        """Store the file read from `source` as numbered pieces."""
        n = 0
        while piece := await asyncio.to_thread(source.read, CHUNK_BYTES):
            await self.session.execute(INSERT_CHUNK, {
                "tenant_id": self.tenant_id, "batch_id": batch_id, "n": n, "data": piece})
            n += 1

    async def file_chunk(self, batch_id: uuid.UUID, n: int) -> bytes | None:
        row = (await self.session.execute(select(FC.c.data).where(
            FC.c.tenant_id == self.tenant_id, FC.c.batch_id == batch_id, FC.c.n == n))).first()
        return row[0] if row else None

    async def update(self, batch_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(
            update(B).where(B.c.tenant_id == self.tenant_id, B.c.id == batch_id)
            .values(version=B.c.version + 1, **values))

    async def page(self, *, limit: int, after: tuple[datetime, uuid.UUID] | None,
                   state: str | None) -> list[ClaimBatch]:
        query = fresh(ClaimBatch).where(B.c.tenant_id == self.tenant_id)
        if state:
            query = query.where(B.c.state == state)
        if after:
            query = query.where((B.c.created_at < after[0])
                                | ((B.c.created_at == after[0]) & (B.c.id < after[1])))
        query = query.order_by(B.c.created_at.desc(), B.c.id.desc()).limit(limit)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

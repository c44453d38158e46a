"""Every query of claim batches, within one tenant."""

import asyncio
import uuid
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import and_, exists, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.billing.models import Invoice
from luxfact.claims.models import NOT_FROZEN, ClaimBatch, ClaimBatchInvoice, ClaimFileChunk
from luxfact.db.queries import fresh

B = ClaimBatch.__table__  # type: ignore[attr-defined]
BI = ClaimBatchInvoice.__table__  # type: ignore[attr-defined]
I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
FC = ClaimFileChunk.__table__  # type: ignore[attr-defined]
INSERT_MEMBERS, INSERT_CHUNK = insert(BI), insert(FC)


CHUNK_BYTES = 1024 * 1024


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

"""The insurer's answer to a claim file: imported whole or not at all, once.

A return is matched to the batch by the file reference it echoes and to invoices and lines
by their references. Anything it names that the batch (or, for a storno, an earlier batch of
this hospital) does not hold refuses the whole file, listing every unknown reference.
"""

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.billing.models import Invoice, InvoiceLine
from luxfact.claims import xml
from luxfact.claims.models import ClaimBatch, ClaimBatchInvoice, ClaimLineResult
from luxfact.claims.service import get_batch
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.money import cents_str
from luxfact.kit.time import utcnow
from luxfact.tenancy.models import Tenant
from luxfact.webhooks.service import emit

B = ClaimBatch.__table__  # type: ignore[attr-defined]
BI = ClaimBatchInvoice.__table__  # type: ignore[attr-defined]
R = ClaimLineResult.__table__  # type: ignore[attr-defined]
I = Invoice.__table__  # type: ignore[attr-defined]  # noqa: E741
L = InvoiceLine.__table__  # type: ignore[attr-defined]


def _cents(amount: Decimal) -> int:
    return int(amount * 100)


def _status(claimed: int, paid: int, anomalies: list[dict]) -> str:
    if claimed <= 0:  # a free act: paid, unless the insurer says REJET
        return "rejected" if any(a["type"] == "REJET" for a in anomalies) else "paid"
    if paid <= 0:
        return "rejected"
    return "paid" if paid >= claimed else "partly_paid"


def totals_problems(answer: xml.ReturnFile) -> list[str]:
    """Where the return's totals do not add up (docs/claims-format.md, "Return totals"):
    such a file is refused whole. Pure: the file alone is compared with itself."""
    problems = []

    def differ(where: str, stated: tuple[Decimal, Decimal],
               summed: tuple[Decimal, Decimal]) -> None:
        if stated != summed:
            problems.append(f"{where}: states {stated[0]} gross and {stated[1]} net, its "
                            f"parts add up to {summed[0]} and {summed[1]}")

    for invoice in answer.invoices:
        differ(f"invoice {invoice.reference}", (invoice.gross, invoice.net),
               (sum((line.gross for line in invoice.lines), Decimal("0.00")),
                sum((line.net for line in invoice.lines), Decimal("0.00"))))
    differ("fichierFacturation", (answer.paid_gross, answer.paid_net),
           (sum((i.gross for i in answer.invoices), Decimal("0.00")),
            sum((i.net for i in answer.invoices), Decimal("0.00"))))
    differ("paiementStornos", (answer.storno_gross, answer.storno_net),
           (sum((st.gross for st in answer.stornos), Decimal("0.00")),
            sum((st.net for st in answer.stornos), Decimal("0.00"))))
    if answer.storno_count != len(answer.stornos):
        problems.append(f"paiementStornos: states {answer.storno_count} lines taken back, "
                        f"lists {len(answer.stornos)}")
    differ("paiementGroupeTraitement", (answer.balance_gross, answer.balance_net),
           (answer.paid_gross - answer.storno_gross, answer.paid_net - answer.storno_net))
    if answer.balance_count != len(answer.invoices):
        problems.append(f"paiementGroupeTraitement: states {answer.balance_count} invoices, "
                        f"answers {len(answer.invoices)}")
    return problems


# Lines resolved for good; the others wait for a decision of the billing officer.
RESOLVED = ("paid", "written_off", "credited")
UNRESOLVED = ("rejected", "partly_paid", "reversed")
CREDIT_LINE = aliased(L, name="credit_line")
CREDIT_NOTE = aliased(I, name="credit_note")


def _file_lines(tenant_id: uuid.UUID, batch_ids: list[uuid.UUID], *columns: Any) -> Any:
    """SELECT `columns` FROM the lines each frozen file holds (the lines of its invoices,
    but those credited before the freeze, which were left out of the file)."""
    credited_before = exists().where(
        CREDIT_LINE.c.tenant_id == L.c.tenant_id,
        CREDIT_LINE.c.credited_invoice_id == L.c.invoice_id,
        CREDIT_LINE.c.credited_seq == L.c.seq,
        CREDIT_NOTE.c.tenant_id == CREDIT_LINE.c.tenant_id,
        CREDIT_NOTE.c.id == CREDIT_LINE.c.invoice_id,
        CREDIT_NOTE.c.issued_at <= B.c.frozen_at)
    return (select(*columns)
            .select_from(BI.join(B, and_(B.c.tenant_id == BI.c.tenant_id,
                                         B.c.id == BI.c.batch_id))
                         .join(I, and_(I.c.tenant_id == BI.c.tenant_id,
                                       I.c.id == BI.c.invoice_id))
                         .join(L, and_(L.c.tenant_id == I.c.tenant_id,
                                       L.c.invoice_id == I.c.id))
                         .outerjoin(R, and_(R.c.tenant_id == L.c.tenant_id,
                                            R.c.invoice_id == L.c.invoice_id,
                                            R.c.seq == L.c.seq)))
            .where(BI.c.tenant_id == tenant_id, BI.c.batch_id.in_(batch_ids),
                   ~credited_before))


async def _claimed_lines(session: AsyncSession, tenant_id: uuid.UUID,
                         batch_ids: list[uuid.UUID]) -> dict[tuple[str, str, str], Any]:
    """(file reference, invoice number, line seq) -> (invoice id, seq, amount, batch id,
    and the answer so far: status and paid cents, None before any)."""
    query = _file_lines(tenant_id, batch_ids, B.c.file_reference, I.c.number, L.c.seq,
                        L.c.invoice_id, L.c.amount_cents, B.c.id.label("batch_id"),
                        R.c.status, R.c.paid_cents)
    return {(row.file_reference, row.number, str(row.seq)): row
            for row in (await session.execute(query)).all()}


@dataclass
class Imported:
    batch: ClaimBatch
    changed: bool


async def import_return(session: AsyncSession, tenant: Tenant, batch_id: uuid.UUID,
                        data: bytes, *, max_bytes: int = xml.MAX_DOCUMENT_BYTES) -> Imported:
    batch = await get_batch(session, tenant.id, batch_id, lock=True)
    if batch.state not in ("sent", "answered", "reconciled"):
        raise Conflict(f"The batch is {batch.state}: a return answers a batch that was sent.")
    try:
        answer = xml.parse_return(data, max_bytes=max_bytes)
    except xml.ClaimsXmlError as exc:
        raise ValidationFailed("The return file is refused; nothing was applied.",
                               errors=[{"field": "file", "reason": message}
                                       for message in exc.messages]) from None
    problems = []
    if answer.file_reference != batch.file_reference:
        problems.append(f"it answers file {answer.file_reference}, not this batch's "
                        f"{batch.file_reference}")
    if answer.provider_code != tenant.cns_provider_code:
        problems.append(f"it is addressed to provider {answer.provider_code}")
    if problems:
        raise ValidationFailed("The return file is not this batch's; nothing was applied.",
                               errors=[{"field": "file", "reason": p} for p in problems])
    # Before any state rule: a retried upload of the answer already applied is a no-op,
    # whether the batch is still answered or reconciled since.
    if batch.return_id == answer.return_id:
        return Imported(batch, False)
    if batch.return_id is not None:
        raise Conflict(f"The batch was answered already by return {batch.return_id}.")
    problems = totals_problems(answer)
    if problems:
        raise ValidationFailed("The return's totals do not add up; nothing was applied.",
                               errors=[{"field": "file", "reason": p} for p in problems])

    earlier_refs = {storno.file_reference for storno in answer.stornos}
    earlier = {row.file_reference: row.id for row in (await session.execute(
        select(B.c.id, B.c.file_reference).where(
            B.c.tenant_id == tenant.id, B.c.file_reference.in_(earlier_refs)))).all()}
    claimed = await _claimed_lines(session, tenant.id, [batch.id, *earlier.values()])
    rows, unknown = [], []
    now = utcnow()
    for invoice in answer.invoices:
        for line in invoice.lines:
            key = (batch.file_reference, invoice.reference, line.reference)
            found = claimed.get(key)
            if found is None:
                unknown.append(f"invoice {invoice.reference} line {line.reference}")
                continue
            paid = _cents(line.net)
            anomalies = [{"type": a.type, "code": a.code, "motif": a.motif}
                         for a in (*invoice.anomalies, *line.anomalies)]
            rows.append({
                "invoice_id": found.invoice_id, "seq": found.seq, "batch_id": batch.id,
                "status": _status(found.amount_cents, paid, anomalies),
                "claimed_cents": found.amount_cents, "paid_cents": paid,
                "paid_code": line.paid_code, "insurer_invoice_id": invoice.insurer_id,
                "insurer_line_id": line.insurer_id, "return_id": answer.return_id,
                "anomalies": anomalies, "updated_at": now})
    for storno in answer.stornos:
        key = (storno.file_reference, storno.invoice_reference, storno.line_reference)
        found = claimed.get(key)
        what = (f"storno of {storno.file_reference} invoice {storno.invoice_reference} "
                f"line {storno.line_reference}")
        if found is None:
            unknown.append(what)
            continue
        # Only a payment can be taken back, and only what was paid: a second storno of
        # the same line, or of a line never paid, would reopen a batch for nothing.
        if found.status not in ("paid", "partly_paid"):
            problems.append(f"{what}: the line is {found.status or 'not answered yet'}, "
                            "not paid")
            continue
        if _cents(storno.net) != found.paid_cents:
            problems.append(f"{what}: takes back {storno.net}, "
                            f"{cents_str(found.paid_cents)} was paid")
            continue
        rows.append({
            "invoice_id": found.invoice_id, "seq": found.seq, "batch_id": found.batch_id,
            "status": "reversed", "claimed_cents": found.amount_cents, "paid_cents": 0,
            "paid_code": storno.paid_code, "insurer_invoice_id": storno.insurer_invoice_id,
            "insurer_line_id": storno.insurer_line_id, "return_id": answer.return_id,
            "anomalies": [{"type": a.type, "code": a.code, "motif": a.motif}
                          for a in (*storno.invoice_anomalies, *storno.anomalies)],
            "updated_at": now})
    if unknown:
        raise ValidationFailed(
            f"The return names {len(unknown)} reference(s) this hospital never claimed; "
            "nothing was applied.",
            errors=[{"field": "file", "reason": f"unknown {what}"} for what in unknown])
    if problems:
        raise ValidationFailed(
            "The return's stornos do not match what was paid; nothing was applied.",
            errors=[{"field": "file", "reason": p} for p in problems])
    await _upsert(session, tenant.id, rows)
    await session.execute(B.update().where(B.c.tenant_id == tenant.id, B.c.id == batch.id)
                          .values(state="answered", return_id=answer.return_id,
                                  version=B.c.version + 1))
    await record(session, "claim_batch.return", "claim_batch", batch.id,
                 {"return": answer.return_id, "lines": len(rows)}, tenant_id=tenant.id)
    # Stornos reopen the earlier batches they touch.
    await settle(session, tenant.id, {batch.id, *(row["batch_id"] for row in rows)})
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    await emit(session, tenant.id, "claim_batch.answered", {
        "batch_id": str(batch.id), "return_id": answer.return_id, "lines": len(rows),
        "by_status": counts})
    rejected = [row for row in rows if row["status"] == "rejected"]
    if rejected:
        # One event for the return's rejected lines (a return can reject thousands).
        await emit(session, tenant.id, "claim_line.rejected", {
            "batch_id": str(batch.id), "return_id": answer.return_id, "lines": [
                {"invoice_id": str(row["invoice_id"]), "line": row["seq"],
                 "claim_batch_id": str(row["batch_id"]),
                 "claimed": cents_str(row["claimed_cents"]),
                 "anomalies": [{"type": a["type"], "code": a["code"]}
                               for a in row["anomalies"]]}
                for row in rejected]})
    return Imported(await get_batch(session, tenant.id, batch.id), True)


async def settle(session: AsyncSession, tenant_id: uuid.UUID,
                 batch_ids: set[uuid.UUID]) -> None:
    """An answered batch whose every line is answered and resolved (paid, written off, or
    credited to be claimed again corrected) is reconciled; one that a storno or a new
    rejection reopens is answered again."""
    for batch_id in sorted(batch_ids):
        batch = await get_batch(session, tenant_id, batch_id, lock=True)
        if batch.state not in ("answered", "reconciled"):
            continue
        answered, waiting = (await session.execute(
            select(func.count(), func.count().filter(R.c.status.in_(UNRESOLVED)))
            .where(R.c.tenant_id == tenant_id, R.c.batch_id == batch_id))).one()
        state = "reconciled" if answered >= batch.line_count and not waiting else "answered"
        if state != batch.state:
            await session.execute(B.update().where(B.c.tenant_id == tenant_id,
                                                   B.c.id == batch_id)
                                  .values(state=state, version=B.c.version + 1))
            await record(session, f"claim_batch.{state}", "claim_batch", batch_id,
                         {"lines": answered}, tenant_id=tenant_id)


async def resolve_credited(session: AsyncSession, tenant_id: uuid.UUID,
                           invoice_id: uuid.UUID, seqs: list[int]) -> None:
    """Lines the insurer refused (or took back) and a credit note has now cancelled: they
    will be claimed again, corrected, on a new invoice in a later batch."""
    if not seqs:
        return
    touched = (await session.execute(
        R.update().where(R.c.tenant_id == tenant_id, R.c.invoice_id == invoice_id,
                         R.c.seq.in_(seqs), R.c.status.in_(UNRESOLVED))
        .values(status="credited", updated_at=utcnow()).returning(R.c.batch_id))).all()
    await settle(session, tenant_id, {row.batch_id for row in touched})


async def _upsert(session: AsyncSession, tenant_id: uuid.UUID, rows: list[dict]) -> None:
    if not rows:
        return
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = builder(R)
    statement = statement.on_conflict_do_update(
        index_elements=[R.c.tenant_id, R.c.invoice_id, R.c.seq],
        set_={name: statement.excluded[name] for name in (
            "batch_id", "status", "claimed_cents", "paid_cents", "paid_code",
            "insurer_invoice_id", "insurer_line_id", "return_id", "anomalies", "updated_at")})
    await session.execute(statement, [{"tenant_id": tenant_id, **row} for row in rows])


FIGURES = ("claimed", "paid", "partly_paid", "rejected", "reversed", "written_off",
           "credited", "outstanding")


async def reconciliation(session: AsyncSession, tenant_id: uuid.UUID, batch: ClaimBatch,
                         ) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Counts and amounts per status (claimed, paid, partly paid, rejected, reversed,
    written off, credited, outstanding), and per anomaly code of the lines not paid whole."""
    # Summed by the database: a month's batch has a million lines.
    status = func.coalesce(R.c.status, "outstanding")
    figures = {name: {"count": 0, "claimed_cents": 0, "paid_cents": 0} for name in FIGURES}
    for row in (await session.execute(_file_lines(
            tenant_id, [batch.id], status.label("status"), func.count().label("count"),
            func.coalesce(func.sum(L.c.amount_cents), 0).label("claimed"),
            func.coalesce(func.sum(R.c.paid_cents), 0).label("paid")).group_by(status))).all():
        for name in ("claimed", row.status):
            figures[name]["count"] += row.count
            figures[name]["claimed_cents"] += int(row.claimed)
            figures[name]["paid_cents"] += int(row.paid)
    # Why lines were refused or cut, whatever was done about them since: only those lines
    # are read (their anomalies are JSON).
    by_code: dict[str, dict[str, int]] = {}
    for row in (await session.execute(_file_lines(
            tenant_id, [batch.id], R.c.anomalies, L.c.amount_cents, R.c.paid_cents)
            .where(R.c.claimed_cents > R.c.paid_cents))).all():
        for code in sorted({a["code"] for a in row.anomalies}):
            figure = by_code.setdefault(code, {"count": 0, "claimed_cents": 0,
                                               "paid_cents": 0})
            figure["count"] += 1
            figure["claimed_cents"] += row.amount_cents
            figure["paid_cents"] += row.paid_cents
    return figures, by_code


async def worklist(session: AsyncSession, tenant_id: uuid.UUID, status: str, limit: int,
                   after: tuple[uuid.UUID, int] | None) -> list[Any]:
    query = (select(R, I.c.number, I.c.stay_id, L.c.code, L.c.day)
             .select_from(R.join(I, and_(I.c.tenant_id == R.c.tenant_id,
                                         I.c.id == R.c.invoice_id))
                          .join(L, and_(L.c.tenant_id == R.c.tenant_id,
                                        L.c.invoice_id == R.c.invoice_id, L.c.seq == R.c.seq)))
             .where(R.c.tenant_id == tenant_id, R.c.status == status))
    if after is not None:
        query = query.where((R.c.invoice_id > after[0])
                            | ((R.c.invoice_id == after[0]) & (R.c.seq > after[1])))
    query = query.order_by(R.c.invoice_id, R.c.seq).limit(limit)
    return list((await session.execute(query)).all())


async def write_off(session: AsyncSession, tenant_id: uuid.UUID, invoice_id: uuid.UUID,
                    seq: int, reason: str) -> None:
    """Close a rejected or partly paid line without claiming it again: what was not paid
    is lost, on purpose, and the reason is kept in the audit trail."""
    row = (await session.execute(select(R).where(
        R.c.tenant_id == tenant_id, R.c.invoice_id == invoice_id, R.c.seq == seq)
        .with_for_update())).first()
    if row is None:
        raise NotFound("No answered claim line there.")
    if row.status not in UNRESOLVED:
        raise Conflict(f"The line is {row.status.replace('_', ' ')}: only rejected, partly "
                       "paid or reversed lines are written off.")
    await session.execute(R.update().where(
        R.c.tenant_id == tenant_id, R.c.invoice_id == invoice_id, R.c.seq == seq)
        .values(status="written_off", updated_at=utcnow()))
    await record(session, "claim_line.write_off", "invoice", invoice_id,
                 {"line": seq, "lost": cents_str(row.claimed_cents - row.paid_cents),
                  "reason": reason}, tenant_id=tenant_id)
    await settle(session, tenant_id, {row.batch_id})

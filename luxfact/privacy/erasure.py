"""The right to erasure: a patient's data, or a whole hospital's, deleted in one transaction,
and refused while the law still requires it to be kept.

Refused while any invoice or credit note, or any claim file that carries them, is within its
accounting retention, while any stay is within the medical file's, while a stay is not yet
discharged, an act not yet invoiced, or a claim batch not yet reconciled (`retention.py` has
the periods). Otherwise everything found by `scope.py` goes, in one transaction.

Issued invoices, their lines, payments and documents are protected by PostgreSQL triggers that
refuse DELETE. Migration 0010 lets one path through: the tables' owner (the role of the CLI, never
the application's) in a transaction that has set `luxfact.erasure` to `on`. The service cannot
take it; an erasure takes it only after the retention checks, in the same transaction.

The audit trail stays append-only: it holds no names or matricules, only ids, and one
`patient.erased` (or `tenant.erased`) event with the counts records the erasure itself.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, delete, false, func, or_, select, text, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.auth.service import announce_key_change
from luxfact.db.models import metadata, tenant_owned_tables
from luxfact.kit.errors import Conflict
from luxfact.kit.time import LUXEMBOURG
from luxfact.privacy import retention, scope
from luxfact.privacy.scope import PatientScope, chunks

T = metadata.tables
INVOICE_TABLES = ("claim_line_results", "claim_batch_invoices", "payments",
                  "invoice_documents", "invoice_lines", "invoices")
# What a patient's erasure deletes, children before parents (foreign keys), then the logs.
PATIENT_TABLES = (*INVOICE_TABLES, "acts", "movements", "stays", "coverages",
                  "patient_name_keys", "patients", "hl7_messages", "idempotency_keys",
                  "webhook_deliveries", "jobs")
# A whole hospital's erasure: all of the above, its claim batches and their files, and its
# staff accounts, API keys and webhook endpoints (names, e-mails, free-text descriptions).
TENANT_TABLES = ("claim_line_results", "claim_batch_invoices", "claim_file_chunks",
                 "claim_batches", "payments", "invoice_documents", "invoice_lines", "invoices",
                 "acts", "movements", "stays", "coverages", "patient_name_keys", "patients",
                 "hl7_messages", "idempotency_keys", "webhook_deliveries", "jobs",
                 "webhook_endpoints", "api_keys", "users")
# Kept by a whole hospital's erasure, and why: the audit trail is append-only and names no
# one; the tenant's prices and its invoice counters are configuration, about no person (the
# counters also keep numbers, named in the audit trail, from being drawn twice).
TENANT_KEPT = ("audit_events", "tenant_prices", "number_counters")
LISTED = 20  # records named in a refusal; the rest are counted
NOT_ENDED = ("planned", "admitted")  # stay states of a patient still (or soon) in care


class Refused(Conflict):
    code = "retention"
    title = "Erasure refused"


@dataclass
class Erased:
    counts: dict[str, int]
    claim_files: list[str] = field(default_factory=list)  # file references whose file went


# ---------------------------------------------------------------------------- helpers


def _lux_day(moment: datetime) -> date:
    return moment.astimezone(LUXEMBOURG).date()


def _lux_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LUXEMBOURG)


def _listed(items: Sequence[object], total: int | None = None) -> str:
    total = len(items) if total is None else total
    named = ", ".join(str(item) for item in items[:LISTED])
    return named + (f" and {total - min(len(items), LISTED)} more" if total > LISTED else "")


async def _rows(session: AsyncSession, table: Table, columns: Sequence[str], key: str,
                ids: Sequence[uuid.UUID], tenant_id: uuid.UUID) -> list[Any]:
    out: list[Any] = []
    for part in chunks(ids):
        out += (await session.execute(select(*(table.c[c] for c in columns)).where(
            table.c.tenant_id == tenant_id, table.c[key].in_(part)))).all()
    return out


def _refuse(subject: str, reasons: list[str]) -> None:
    if reasons:
        raise Refused(f"Erasure of {subject} refused: " + "; ".join(reasons) + ".")


async def allow_invoice_deletion(session: AsyncSession) -> None:
    """Open, for this transaction only, the trigger's path for deleting issued invoices (it
    honours it for the tables' owner alone; see migration 0010). Nothing to do on SQLite."""
    if session.bind.dialect.name == "postgresql":
        await session.execute(text("SELECT set_config('luxfact.erasure', 'on', true)"))


# --------------------------------------------------------------------- one patient


async def patient_refusals(session: AsyncSession, found: PatientScope, today: date
                           ) -> list[str]:
    """Why the patient's data may not be erased today (empty: it may)."""
    tenant = found.tenant_id
    reasons: list[str] = []
    invoices = await _rows(session, T["invoices"], ("number", "doc_type", "issued_on"), "id",
                           found.invoice_ids, tenant)
    kept = retention.held(retention.ACCOUNTING, [
        ("credit note" if row.doc_type == "credit_note" else "invoice", row.number,
         row.issued_on) for row in invoices], today)
    if kept:
        reasons.append(f"{len(kept)} invoice(s) within legal retention: {_listed(kept)}")
    # A payment is an accounting record of its own day: one received years after the
    # invoice keeps it (and the invoice it settles) until its own retention ends.
    payments = await _rows(session, T["payments"], ("invoice_id", "paid_on"), "invoice_id",
                           found.invoice_ids, tenant)
    numbers = {row.id: row.number for row in await _rows(
        session, T["invoices"], ("id", "number"), "id", found.invoice_ids, tenant)}
    paid = retention.held(retention.ACCOUNTING, [
        ("payment on", numbers.get(row.invoice_id, str(row.invoice_id)), row.paid_on)
        for row in payments], today)
    if paid:
        reasons.append(f"{len(paid)} payment(s) within legal retention: {_listed(paid)}")
    batches = await _rows(session, T["claim_batches"],
                          ("file_reference", "state", "frozen_at", "created_at"), "id",
                          found.batch_ids, tenant)
    open_batches = sorted(f"{b.file_reference} ({b.state})" for b in batches
                          if b.state != "reconciled")
    if open_batches:
        reasons.append("invoice(s) in claim batch(es) not yet reconciled: "
                       + _listed(open_batches))
    files = retention.held(retention.ACCOUNTING, [
        ("claim file", b.file_reference, _lux_day(b.frozen_at or b.created_at))
        for b in batches if b.state == "reconciled"], today)
    if files:
        reasons.append(f"claim file(s) within legal retention: {_listed(files)}")
    stays = await _rows(session, T["stays"], ("id", "state", "admitted_at", "discharged_at"),
                        "id", found.stay_ids, tenant)
    current = sorted(f"{s.id} ({s.state})" for s in stays if s.state in NOT_ENDED)
    if current:
        reasons.append(f"stay(s) not yet discharged: {_listed(current)}")
    # A cancelled stay is an admission undone (planned, or admitted in error): no care to
    # keep a file of, so it holds no medical file's retention.
    medical = retention.held(retention.MEDICAL_FILE, [
        ("stay", str(s.id), _lux_day(s.discharged_at or s.admitted_at)) for s in stays
        if s.state not in (*NOT_ENDED, "cancelled")], today)
    if medical:
        reasons.append(f"stay(s) within the medical file's retention: {_listed(medical)}")
    recorded = 0
    for part in chunks(found.stay_ids):
        recorded += (await session.execute(select(func.count()).where(
            T["acts"].c.tenant_id == tenant, T["acts"].c.stay_id.in_(part),
            T["acts"].c.state == "recorded"))).scalar_one()
    if recorded:
        reasons.append(f"{recorded} act(s) not yet invoiced")
    return reasons


def _patient_conditions(found: PatientScope, dialect: str
                        ) -> dict[str, list[ColumnElement[bool]]]:
    """Per table, the conditions (OR'ed, a chunk of ids each) of the patient's rows."""
    def ids_in(table: str, column: str, ids: Sequence[uuid.UUID]) -> list[ColumnElement[bool]]:
        return [T[table].c[column].in_(part) for part in chunks(ids)]

    out = {table: ids_in(table, "invoice_id", found.invoice_ids)
           for table in INVOICE_TABLES if table != "invoices"}
    out.update({
        "invoices": ids_in("invoices", "id", found.invoice_ids),
        "acts": ids_in("acts", "stay_id", found.stay_ids),
        "movements": ids_in("movements", "stay_id", found.stay_ids),
        "stays": ids_in("stays", "id", found.stay_ids),
        "coverages": ids_in("coverages", "patient_id", found.patient_ids),
        "patient_name_keys": ids_in("patient_name_keys", "patient_id", found.patient_ids),
        "patients": ids_in("patients", "id", found.patient_ids),
        "hl7_messages": scope.hl7_conditions(found, dialect),
        "idempotency_keys": scope.idempotency_conditions(found),
        "webhook_deliveries": scope.webhook_conditions(found),
    })
    return out


async def _count(session: AsyncSession, table: Table, tenant_id: uuid.UUID,
                 conditions: list[ColumnElement[bool]]) -> int:
    if not conditions:
        return 0
    return (await session.execute(select(func.count()).select_from(table).where(
        table.c.tenant_id == tenant_id, or_(*conditions)))).scalar_one()


async def plan_patient(session: AsyncSession, tenant_id: uuid.UUID, patient_id: uuid.UUID,
                       today: date) -> dict[str, int]:
    """What erasing the patient would delete, per table; refused as `erase_patient` would."""
    found = await scope.find(session, tenant_id, patient_id)
    _refuse(f"patient {patient_id}", await patient_refusals(session, found, today))
    conditions = _patient_conditions(found, session.bind.dialect.name)
    counts = {name: await _count(session, T[name], tenant_id, conditions[name])
              for name in PATIENT_TABLES if name != "jobs"}
    counts["jobs"] = len(await _delivery_jobs(session, tenant_id,
                                              conditions["webhook_deliveries"]))
    return counts


async def _delivery_jobs(session: AsyncSession, tenant_id: uuid.UUID,
                         conditions: list[ColumnElement[bool]]) -> list[uuid.UUID]:
    if not conditions:
        return []
    wd = T["webhook_deliveries"]
    return list((await session.execute(select(wd.c.job_id).where(
        wd.c.tenant_id == tenant_id, or_(*conditions)))).scalars().all())


async def _delete(session: AsyncSession, table: Table, tenant_id: uuid.UUID,
                  conditions: list[ColumnElement[bool]]) -> int:
    removed = 0
    if table.name == "invoices":
        # Credit notes first: they refer to the invoices they credit.
        for condition in conditions:
            removed += (await session.execute(delete(table).where(
                table.c.tenant_id == tenant_id, condition,
                table.c.credited_invoice_id.is_not(None)))).rowcount or 0
    for condition in conditions:
        removed += (await session.execute(delete(table).where(
            table.c.tenant_id == tenant_id, condition))).rowcount or 0
    return removed


async def _drop_claim_files(session: AsyncSession, tenant_id: uuid.UUID,
                            batch_ids: Sequence[uuid.UUID]) -> tuple[int, list[str]]:
    """Delete the stored files of these (reconciled, past retention) claim batches: a file
    names every patient it claims and cannot be edited without breaking its SHA-256. The
    batch row stays (payer, period, totals: no one's data), without a file."""
    chunk_table, batches = T["claim_file_chunks"], T["claim_batches"]
    removed, references = 0, []
    for part in chunks(batch_ids):
        references += (await session.execute(select(batches.c.file_reference).where(
            batches.c.tenant_id == tenant_id, batches.c.id.in_(part),
            batches.c.sha256.is_not(None)))).scalars().all()
        removed += (await session.execute(delete(chunk_table).where(
            chunk_table.c.tenant_id == tenant_id, chunk_table.c.batch_id.in_(part)))
        ).rowcount or 0
        await session.execute(update(batches).where(
            batches.c.tenant_id == tenant_id, batches.c.id.in_(part)
        ).values(sha256=None, size=None))
    return removed, sorted(references)


async def erase_patient(session: AsyncSession, tenant_id: uuid.UUID, patient_id: uuid.UUID,
                        today: date) -> Erased:
    """Check, then delete every row of the patient's scope, in the caller's transaction."""
    found = await scope.find(session, tenant_id, patient_id, lock=True)
    _refuse(f"patient {patient_id}", await patient_refusals(session, found, today))
    conditions = _patient_conditions(found, session.bind.dialect.name)
    jobs = await _delivery_jobs(session, tenant_id, conditions["webhook_deliveries"])
    conditions["jobs"] = [T["jobs"].c.id.in_(part) for part in chunks(jobs)]
    await allow_invoice_deletion(session)
    chunks_removed, files = await _drop_claim_files(session, tenant_id, found.batch_ids)
    counts = {}
    for name in PATIENT_TABLES:
        counts[name] = await _delete(session, T[name], tenant_id, conditions[name])
    counts["claim_file_chunks"] = chunks_removed
    # Only the id and the counts: the event outlives everything it counts.
    await record(session, "patient.erased", "patient", patient_id,
                 {"counts": {name: n for name, n in sorted(counts.items()) if n}},
                 tenant_id=tenant_id)
    return Erased(counts, files)


# ------------------------------------------------------------------- whole hospital


def _retained(column: Any, ranges: list[tuple[date, date | None]],
              as_moment: bool = False) -> ColumnElement[bool]:
    """`column` (a date, or with `as_moment` a UTC timestamp) falls in a retained range."""
    def bound(day: date) -> Any:
        return _lux_midnight(day) if as_moment else day

    terms = [and_(column >= bound(lo), *([column < bound(hi)] if hi else []))
             for lo, hi in ranges]
    return or_(*terms) if terms else false()


async def tenant_refusals(session: AsyncSession, tenant_id: uuid.UUID, today: date
                          ) -> list[str]:
    """Why the hospital's data may not be erased today, counted by SQL (a hospital has
    millions of rows): the most recent records named, the rest counted."""
    reasons: list[str] = []
    invoices, batches, stays = T["invoices"], T["claim_batches"], T["stays"]
    kept = _retained(invoices.c.issued_on, retention.retained_ranges(retention.ACCOUNTING,
                                                                     today))
    where = and_(invoices.c.tenant_id == tenant_id, kept)
    total = (await session.execute(select(func.count()).where(where))).scalar_one()
    if total:
        newest = (await session.execute(
            select(invoices.c.doc_type, invoices.c.number, invoices.c.issued_on).where(where)
            .order_by(invoices.c.issued_on.desc(), invoices.c.number.desc()).limit(LISTED)
        )).all()
        named = retention.held(retention.ACCOUNTING, [
            ("credit note" if r.doc_type == "credit_note" else "invoice", r.number,
             r.issued_on) for r in newest], today)
        reasons.append(f"{total} invoice(s) within legal retention: {_listed(named, total)}")
    payments = T["payments"]
    total = (await session.execute(select(func.count()).where(
        payments.c.tenant_id == tenant_id,
        _retained(payments.c.paid_on, retention.retained_ranges(retention.ACCOUNTING, today)))
    )).scalar_one()
    if total:
        reasons.append(f"{total} payment(s) within legal retention")
    unsettled = and_(batches.c.tenant_id == tenant_id, batches.c.state != "reconciled")
    total = (await session.execute(select(func.count()).where(unsettled))).scalar_one()
    if total:
        named = (await session.execute(select(batches.c.file_reference, batches.c.state)
                                       .where(unsettled).order_by(batches.c.file_reference)
                                       .limit(LISTED))).all()
        reasons.append(f"{total} claim batch(es) not yet reconciled: " + _listed(
            [f"{b.file_reference} ({b.state})" for b in named], total))
    files = (await session.execute(select(func.count()).where(
        batches.c.tenant_id == tenant_id, batches.c.state == "reconciled",
        _retained(func.coalesce(batches.c.frozen_at, batches.c.created_at),
                  retention.retained_ranges(retention.ACCOUNTING, today), as_moment=True)))
    ).scalar_one()
    if files:
        reasons.append(f"{files} claim file(s) within legal retention")
    current = (await session.execute(select(func.count()).where(
        stays.c.tenant_id == tenant_id, stays.c.state.in_(NOT_ENDED)))
    ).scalar_one()
    if current:
        reasons.append(f"{current} stay(s) not yet discharged")
    medical = (await session.execute(select(func.count()).where(
        stays.c.tenant_id == tenant_id,
        stays.c.state.not_in((*NOT_ENDED, "cancelled")),
        _retained(func.coalesce(stays.c.discharged_at, stays.c.admitted_at),
                  retention.retained_ranges(retention.MEDICAL_FILE, today), as_moment=True)))
    ).scalar_one()
    if medical:
        reasons.append(f"{medical} stay(s) within the medical file's retention")
    acts = T["acts"]
    recorded = (await session.execute(select(func.count()).where(
        acts.c.tenant_id == tenant_id, acts.c.state == "recorded"))).scalar_one()
    if recorded:
        reasons.append(f"{recorded} act(s) not yet invoiced")
    return reasons


async def plan_tenant(session: AsyncSession, tenant_id: uuid.UUID, slug: str,
                      today: date) -> dict[str, int]:
    _refuse(f"hospital {slug}", await tenant_refusals(session, tenant_id, today))
    return {name: (await session.execute(select(func.count()).select_from(T[name]).where(
        T[name].c.tenant_id == tenant_id))).scalar_one() for name in TENANT_TABLES}


async def erase_tenant(session: AsyncSession, tenant_id: uuid.UUID, slug: str,
                       today: date) -> Erased:
    """Check, then delete every table of TENANT_TABLES for the hospital, in the caller's
    transaction; the audit trail, prices and counters stay (TENANT_KEPT)."""
    # Every write of the hospital's rows checks its foreign key to this row (KEY SHARE):
    # FOR UPDATE holds them until the erasure commits, so none slips in between the checks
    # and the deletes.
    tenants = T["tenants"]
    await session.execute(select(tenants.c.id).where(tenants.c.id == tenant_id)
                          .with_for_update())
    _refuse(f"hospital {slug}", await tenant_refusals(session, tenant_id, today))
    batches = T["claim_batches"]
    files = sorted((await session.execute(select(batches.c.file_reference).where(
        batches.c.tenant_id == tenant_id, batches.c.sha256.is_not(None)))).scalars().all())
    await allow_invoice_deletion(session)
    counts = {}
    for name in TENANT_TABLES:
        counts[name] = await _delete(session, T[name], tenant_id, [T[name].c.tenant_id ==
                                                                   tenant_id])
    await announce_key_change(session)  # its keys went: no worker may accept them
    await record(session, "tenant.erased", "tenant", tenant_id,
                 {"counts": {name: n for name, n in sorted(counts.items()) if n}},
                 tenant_id=tenant_id)
    return Erased(counts, files)


def unaccounted_tables() -> set[str]:
    """Tenant-owned tables the hospital's erasure neither deletes nor keeps on purpose: a new
    table must be placed in one list or the other (a test holds this at empty)."""
    return set(tenant_owned_tables()) - set(TENANT_TABLES) - set(TENANT_KEPT)

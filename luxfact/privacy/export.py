"""The right of access: everything a hospital holds about one patient, as one JSON document;
and a whole hospital's data, streamed table by table as JSON Lines (a hospital leaving).

Both are machine-readable UTF-8 with sorted keys and rows in a fixed order, so the same data
gives the same bytes. Both are audited (`patient.export`, `tenant.export`).
"""

import hashlib
import os
import tempfile
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Table, event, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.db.engine import Database
from luxfact.db.models import metadata, tenant_owned_tables
from luxfact.privacy import scope, serialise
from luxfact.privacy.scope import PatientScope, chunks
from luxfact.tenancy.models import Tenant

PATIENT_FORMAT = "luxfact-patient-export/1"
TENANT_FORMAT = "luxfact-tenant-export/1"
T = metadata.tables
ABOUT = {
    "binary": "base64 (invoice PDFs); HL7 messages as text, in `raw_encoding`",
    "money": "integer cents, in the invoice's currency",
    "times": "ISO 8601; timestamps in UTC, days as the hospital's (Europe/Luxembourg)",
    "not_included": "derived search keys of the name (patient_name_keys); stored responses "
                    "of idempotent requests (copies of the data above); claim files, which "
                    "cover many patients (each invoice says its claim batch and the insurer's "
                    "answer per line)",
}


# ---------------------------------------------------------------- one patient


async def _fetch(session: AsyncSession, table: Table, tenant_id: uuid.UUID,
                 conditions: Sequence[ColumnElement[bool]], order: Sequence[str]
                 ) -> list[dict[str, Any]]:
    if not conditions:
        return []
    query = (select(table).where(table.c.tenant_id == tenant_id, or_(*conditions))
             .order_by(*(table.c[name] for name in order)))
    return [dict(row) for row in (await session.execute(query)).mappings().all()]


def _ids_in(table: Table, column: str, ids: Sequence[uuid.UUID]) -> list[ColumnElement[bool]]:
    return [table.c[column].in_(part) for part in chunks(ids)]


def _grouped(rows: list[dict[str, Any]], key: str, table: str
             ) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        out[row[key]].append(serialise.row(table, row))
    return out


async def patient_document(session: AsyncSession, tenant: Tenant, patient_id: uuid.UUID,
                           now: datetime) -> dict[str, Any]:
    """Everything held about the patient (and the records merged into it), audited."""
    found = await scope.find(session, tenant.id, patient_id)
    dialect = session.bind.dialect.name
    tid = tenant.id

    patients = await _fetch(session, T["patients"], tid,
                            _ids_in(T["patients"], "id", found.patient_ids), ("created_at", "id"))
    own = next(p for p in patients if p["id"] == patient_id)
    coverages = await _fetch(session, T["coverages"], tid,
                             _ids_in(T["coverages"], "patient_id", found.patient_ids),
                             ("valid_from", "id"))
    stays = await _fetch(session, T["stays"], tid, _ids_in(T["stays"], "id", found.stay_ids),
                         ("admitted_at", "id"))
    movements = _grouped(await _fetch(
        session, T["movements"], tid, _ids_in(T["movements"], "stay_id", found.stay_ids),
        ("stay_id", "seq")), "stay_id", "movements")
    acts = _grouped(await _fetch(
        session, T["acts"], tid, _ids_in(T["acts"], "stay_id", found.stay_ids),
        ("performed_at", "id")), "stay_id", "acts")
    return {
        "format": PATIENT_FORMAT,
        "exported_at": now.isoformat(),
        "tenant": {"slug": tenant.slug, "legal_name": tenant.legal_name,
                   "cns_provider_code": tenant.cns_provider_code},
        "patient": serialise.row("patients", own),
        "merged_records": [serialise.row("patients", p) for p in patients if p is not own],
        "coverages": serialise.rows("coverages", coverages),
        "stays": [{**serialise.row("stays", s), "movements": movements.get(s["id"], []),
                   "acts": acts.get(s["id"], [])} for s in stays],
        "invoices": await _invoices(session, found),
        "hl7_messages": await _hl7(session, found, dialect),
        "webhook_deliveries": serialise.rows("webhook_deliveries", await _fetch(
            session, T["webhook_deliveries"], tid, scope.webhook_conditions(found),
            ("created_at", "id"))),
        "audit_events": [_own(event, found) for event in serialise.rows(
            "audit_events", await _fetch(session, T["audit_events"], tid,
                                         _audit_conditions(found), ("at", "id")))],
        "about": ABOUT,
    }


async def _invoices(session: AsyncSession, found: PatientScope) -> list[dict[str, Any]]:
    tid, ids = found.tenant_id, found.invoice_ids
    invoices = await _fetch(session, T["invoices"], tid, _ids_in(T["invoices"], "id", ids),
                            ("issued_at", "number"))
    children = {
        "lines": _grouped(await _fetch(session, T["invoice_lines"], tid,
                                       _ids_in(T["invoice_lines"], "invoice_id", ids),
                                       ("invoice_id", "seq")), "invoice_id", "invoice_lines"),
        "payments": _grouped(await _fetch(session, T["payments"], tid,
                                          _ids_in(T["payments"], "invoice_id", ids),
                                          ("paid_on", "id")), "invoice_id", "payments"),
        "documents": _grouped(await _fetch(session, T["invoice_documents"], tid,
                                           _ids_in(T["invoice_documents"], "invoice_id", ids),
                                           ("invoice_id", "kind")),
                              "invoice_id", "invoice_documents"),
        "claim_lines": _grouped(await _fetch(session, T["claim_line_results"], tid,
                                             _ids_in(T["claim_line_results"], "invoice_id", ids),
                                             ("invoice_id", "seq")),
                                "invoice_id", "claim_line_results"),
    }
    batch_of: dict[uuid.UUID, str] = {}
    for part in chunks(ids):
        bi, b = T["claim_batch_invoices"], T["claim_batches"]
        batch_of.update({row.invoice_id: row.file_reference for row in (await session.execute(
            select(bi.c.invoice_id, b.c.file_reference).join(
                b, (b.c.tenant_id == bi.c.tenant_id) & (b.c.id == bi.c.batch_id))
            .where(bi.c.tenant_id == tid, bi.c.invoice_id.in_(part)))).all()})
    return [{**serialise.row("invoices", invoice),
             **{name: rows.get(invoice["id"], []) for name, rows in children.items()},
             "claim_batch": batch_of.get(invoice["id"])} for invoice in invoices]


async def _hl7(session: AsyncSession, found: PatientScope, dialect: str
               ) -> list[dict[str, Any]]:
    messages = await _fetch(session, T["hl7_messages"], found.tenant_id,
                            scope.hl7_conditions(found, dialect), ("received_at", "id"))
    out = []
    for message in messages:
        raw_text, encoding = serialise.hl7_text(message.pop("raw"))
        out.append({**serialise.row("hl7_messages", message), "raw": raw_text,
                    "raw_encoding": encoding})
    return out


def _own(event: dict, found: PatientScope) -> dict:
    """A search or list event as it concerns this patient: the other patients it showed
    are no part of this person's data (their ids are left out, their number kept)."""
    details = event.get("details")
    if isinstance(details, dict) and isinstance(details.get("results"), list):
        mine = {str(i) for i in found.patient_ids}
        shown = details["results"]
        event = {**event, "details": {**details, "results": [r for r in shown if r in mine],
                                      "others_shown": sum(r not in mine for r in shown)}}
    return event


def _audit_conditions(found: PatientScope) -> list[ColumnElement[bool]]:
    """Events about the patient's records, and events whose details name the patient (a
    search or a list that showed it, a merge)."""
    audit = T["audit_events"]
    return ([audit.c.object_id.in_(part) for part in chunks(found.object_ids())]
            + scope.mentions(audit.c.details, [str(i) for i in found.patient_ids]))


async def export_patient(session: AsyncSession, tenant: Tenant, patient_id: uuid.UUID,
                         now: datetime) -> str:
    """The patient's document as JSON text, and the export recorded in the audit trail."""
    document = await patient_document(session, tenant, patient_id, now)
    await record(session, "patient.export", "patient", patient_id, {}, tenant_id=tenant.id)
    return serialise.dumps(document)


def write_atomically(path: Path, content: str) -> None:
    """The file whole or not at all, readable by its owner only (it is personal data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------- whole hospital


def _sqlite_reader(url: str) -> AsyncEngine:
    """A SQLite engine whose transactions begin DEFERRED: a snapshot from the first read on
    (WAL), without the write lock the service's BEGIN IMMEDIATE would hold for the whole
    export, blocking every clerk meanwhile."""
    engine = create_async_engine(url)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, explicitly

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncSession]:
    """A read-only view of the whole database at one instant, for a long read: REPEATABLE
    READ on PostgreSQL (the tenant is set by the engine's hook, from the context), a
    deferred transaction on SQLite. Rolled back at the end: it never writes."""
    if db.dialect == "postgresql":
        async with db.sessionmaker() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            try:
                yield session
            finally:
                await session.rollback()
        return
    engine = _sqlite_reader(db.url)
    try:
        async with async_sessionmaker(engine, class_=AsyncSession)() as session:
            await session.connection()
            try:
                yield session
            finally:
                await session.rollback()
    finally:
        await engine.dispose()


def _batch_size(table: Table) -> int:
    """Rows fetched at a time: few where a row holds a document (claim file pieces are 1 MiB),
    so memory stays bounded whatever the hospital's size."""
    binary = any(isinstance(column.type, LargeBinary) for column in table.columns)
    return 8 if binary else 1000


async def export_tenant(session: AsyncSession, tenant: Tenant, directory: Path, now: datetime,
                        revision: str | None,
                        progress: Callable[[str, int], None] = lambda table, n: None
                        ) -> dict[str, Any]:
    """Write one `<table>.jsonl` per tenant-owned table into `directory` (which exists and
    is empty), streamed in primary-key order, then `tenant.json` and `manifest.json`."""
    tables: dict[str, Any] = {}
    for name in tenant_owned_tables():
        table = T[name]
        digest, count = hashlib.sha256(), 0
        path = directory / f"{name}.jsonl"
        query = (select(table).where(table.c.tenant_id == tenant.id)
                 .order_by(*table.primary_key.columns)
                 .execution_options(yield_per=_batch_size(table)))
        with path.open("w", encoding="utf-8", newline="\n") as out:
            result = await session.stream(query)
            async for part in result.mappings().partitions():
                for row in part:
                    line = serialise.json_line(serialise.row(name, row))
                    out.write(line)
                    digest.update(line.encode("utf-8"))
                count += len(part)
                progress(name, len(part))
            out.flush()
            os.fsync(out.fileno())
        tables[name] = {"file": path.name, "rows": count, "sha256": digest.hexdigest()}
    registry = T["tenants"]
    own = (await session.execute(select(registry).where(registry.c.id == tenant.id))
           ).mappings().one()
    (directory / "tenant.json").write_text(serialise.dumps(serialise.value(dict(own))),
                                           encoding="utf-8")
    manifest = {
        "format": TENANT_FORMAT,
        "exported_at": now.isoformat(),
        "schema_revision": revision,
        "tenant": {"id": str(tenant.id), "slug": tenant.slug, "legal_name": tenant.legal_name},
        "tables": tables,
        "omitted_columns": {table: sorted(columns)
                            for table, columns in sorted(serialise.OMITTED.items())},
        "about": {"rows": "one JSON object a line, keys sorted, in primary-key order",
                  "binary": "base64 (invoice PDFs, claim file pieces, HL7 messages)",
                  "money": ABOUT["money"], "times": ABOUT["times"]},
    }
    (directory / "manifest.json").write_text(serialise.dumps(manifest), encoding="utf-8")
    return manifest

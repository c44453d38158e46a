"""Which rows hold one patient's data: found the same way by the export and by the erasure.

A person may have several patient records: a duplicate merged into another keeps its row
(`merged_into`), and its invoices keep its id while its stays move to the survivor. The scope
is therefore the survivor and every record merged into it, their stays, the acts and movements
of those stays, and every invoice of either. Logs that name the patient without a foreign key
(HL7 messages, stored idempotent responses, webhook deliveries, audit details) are found by
the ids or the matricule they contain.
"""

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Table, Text, cast, func, literal, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.db.models import metadata
from luxfact.kit.errors import Conflict, NotFound

TABLES = metadata.tables
P, C, S = TABLES["patients"], TABLES["coverages"], TABLES["stays"]
A, I = TABLES["acts"], TABLES["invoices"]  # noqa: E741
BI, B = TABLES["claim_batch_invoices"], TABLES["claim_batches"]
H7, IDEM, WD = TABLES["hl7_messages"], TABLES["idempotency_keys"], TABLES["webhook_deliveries"]
AUDIT = TABLES["audit_events"]

# Ids per IN list: well under the bound-parameter limits of both databases.
CHUNK = 500


def chunks(ids: Sequence[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for start in range(0, len(ids), size):
        yield list(ids[start:start + size])


@dataclass
class PatientScope:
    tenant_id: uuid.UUID
    patient_id: uuid.UUID
    patient_ids: list[uuid.UUID]  # the patient first, then the records merged into it
    matricules: list[str]  # 13-digit ones: what an HL7 message names the patient by
    coverage_ids: list[uuid.UUID] = field(default_factory=list)
    stay_ids: list[uuid.UUID] = field(default_factory=list)
    act_ids: list[uuid.UUID] = field(default_factory=list)
    invoice_ids: list[uuid.UUID] = field(default_factory=list)
    batch_ids: list[uuid.UUID] = field(default_factory=list)  # claim batches of its invoices

    def object_ids(self) -> list[str]:
        """Every id an audit event or a stored response may name the patient's data by."""
        return [str(i) for i in (*self.patient_ids, *self.coverage_ids, *self.stay_ids,
                                 *self.act_ids, *self.invoice_ids)]


async def _column(session: AsyncSession, query: Any) -> list[Any]:
    return list((await session.execute(query)).scalars().all())


async def _in(session: AsyncSession, column_of: Table, wanted: str, key: str,
              ids: Sequence[uuid.UUID], tenant_id: uuid.UUID, *, lock: bool = False
              ) -> list[Any]:
    out: list[Any] = []
    for part in chunks(ids):
        query = select(column_of.c[wanted]).where(column_of.c.tenant_id == tenant_id,
                                                  column_of.c[key].in_(part))
        out += await _column(session, query.with_for_update() if lock else query)
    return out


async def find(session: AsyncSession, tenant_id: uuid.UUID, patient_id: uuid.UUID, *,
               lock: bool = False) -> PatientScope:
    """The patient's scope. With `lock`, its patient rows then its stays are locked
    (PostgreSQL), in the order billing and merging take them: a row written meanwhile that
    refers to them (a stay, a coverage, an act, an invoice) waits for the erasure's commit,
    then fails on its foreign key, instead of slipping in between the checks and the
    deletes. SQLite's transactions are serialised whole anyway."""
    query = select(P).where(P.c.tenant_id == tenant_id, P.c.id == patient_id)
    patient = (await session.execute(query.with_for_update() if lock else query)).first()
    if patient is None:
        raise NotFound(f"No patient {patient_id} in this hospital.")
    if patient.merged_into is not None:
        survivor = patient.merged_into
        # A survivor may itself have been merged since: follow the chain to its end.
        for _ in range(100):
            onward = (await session.execute(select(P.c.merged_into).where(
                P.c.tenant_id == tenant_id, P.c.id == survivor))).scalar_one_or_none()
            if onward is None:
                break
            survivor = onward
        raise Conflict(f"Patient {patient_id} was merged into patient {survivor}: its data "
                       f"is that patient's now; use --patient {survivor}.")
    rows = [patient]
    frontier = [patient_id]
    while frontier:
        merged = select(P).where(P.c.tenant_id == tenant_id, P.c.merged_into.in_(frontier))
        found = list((await session.execute(
            merged.with_for_update() if lock else merged)).all())
        rows += found
        frontier = [row.id for row in found]
    ids = [row.id for row in rows]
    matricules = sorted({row.matricule for row in rows if row.matricule})
    scope = PatientScope(tenant_id, patient_id, ids, matricules)
    scope.coverage_ids = await _in(session, C, "id", "patient_id", ids, tenant_id)
    scope.stay_ids = await _in(session, S, "id", "patient_id", ids, tenant_id, lock=lock)
    scope.act_ids = await _in(session, A, "id", "stay_id", scope.stay_ids, tenant_id)
    invoices = set(await _in(session, I, "id", "patient_id", ids, tenant_id))
    invoices |= set(await _in(session, I, "id", "stay_id", scope.stay_ids, tenant_id))
    scope.invoice_ids = sorted(invoices)
    scope.batch_ids = sorted(set(await _in(session, BI, "batch_id", "invoice_id",
                                           scope.invoice_ids, tenant_id)))
    return scope


def mentions(column: Any, needles: Sequence[str]) -> list[ColumnElement[bool]]:
    """Conditions (one per chunk of needles) matching a JSON or text column that contains
    any of the needles (ids: they hold no LIKE wildcard)."""
    as_text = cast(column, Text)
    return [or_(*(as_text.contains(needle) for needle in part))
            for part in chunks(list(needles), 100)]


def raw_contains(dialect: str, needle: str) -> ColumnElement[bool]:
    """The HL7 message's bytes contain `needle` (a matricule): a byte search, as the message
    may be in any character set."""
    pattern = needle.encode()
    if dialect == "postgresql":
        # bytea LIKE bytea: PostgreSQL has it, SQLAlchemy's binary type does not declare it.
        return H7.c.raw.op("LIKE", is_comparison=True)(
            literal(b"%" + pattern + b"%", LargeBinary))
    # SQLite's LIKE would read the blob as text; instr() compares bytes.
    return func.instr(H7.c.raw, literal(pattern, LargeBinary)) > 0


def hl7_conditions(scope: PatientScope, dialect: str) -> list[ColumnElement[bool]]:
    """The HL7 messages that name the patient: by the patients and stays they touched, or by
    the matricule in their bytes (a rejected message touched nothing but still names it)."""
    out = mentions(H7.c.patient_ids, [str(i) for i in scope.patient_ids])
    out += mentions(H7.c.stay_ids, [str(i) for i in scope.stay_ids])
    out += [raw_contains(dialect, m) for m in scope.matricules if len(m) == 13]
    return out


def idempotency_conditions(scope: PatientScope) -> list[ColumnElement[bool]]:
    """Stored responses of idempotent requests that carry any of the patient's ids."""
    return mentions(IDEM.c.body, scope.object_ids())


def webhook_conditions(scope: PatientScope) -> list[ColumnElement[bool]]:
    """Deliveries of events about the patient (stays and invoices carry its id)."""
    return mentions(WD.c.payload, [str(i) for i in scope.patient_ids])

"""Every query of the HL7 message log, always within one tenant."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.db.queries import fresh
from luxfact.hl7.models import HL7Message
from luxfact.patients.models import Patient
from luxfact.stays.models import Stay

T = HL7Message.__table__  # type: ignore[attr-defined]
P = Patient.__table__  # type: ignore[attr-defined]
S = Stay.__table__  # type: ignore[attr-defined]
INSERT = insert(T)
KEY = ["tenant_id", "sending_facility", "control_id"]
# INSERT ... ON CONFLICT DO NOTHING RETURNING id: a second delivery of a control id inserts
# nothing. On PostgreSQL it waits for a concurrent first delivery to commit (or roll back),
# so exactly one delivery goes on to apply the message.
CLAIM = {
    "postgresql": postgresql.insert(T).on_conflict_do_nothing(index_elements=KEY)
    .returning(T.c.id),
    "sqlite": sqlite.insert(T).on_conflict_do_nothing(index_elements=KEY).returning(T.c.id),
}
# The hot path's statements, built once (values as parameters: compiled once).
_ID = (T.c.tenant_id == bindparam("b_tenant_id"), T.c.id == bindparam("b_id"))
FINISH = update(T).where(*_ID).values(
    status=bindparam("status"), ack_code=bindparam("ack_code"), reason=bindparam("reason"),
    ack=bindparam("ack"), processed_at=bindparam("processed_at"),
    patient_ids=bindparam("patient_ids"), stay_ids=bindparam("stay_ids"),
    act_ids=bindparam("act_ids"))
# Not locked: the services lock the stay by its id when they change it. Locked here, an A08
# would take the stay before the patient (billing and merges take the patient first), and a
# merge re-pointing the stay meanwhile would make the join find no row.
STAY_BY_VISIT = (
    select(Stay, P.c.matricule, P.c.legacy_matricule)
    .join(P, and_(P.c.tenant_id == S.c.tenant_id, P.c.id == S.c.patient_id))
    .where(S.c.tenant_id == bindparam("tenant_id"), S.c.external_id == bindparam("visit"))
    .execution_options(populate_existing=True))
# Locked, for the messages that change the stay (movements, charges), which would lock it by
# its id next: one round trip fewer. They never lock the patient after the stay, so no cycle
# with billing or merges. The patient's numbers by subquery, not by a join: a merge
# re-pointing the stay while this waits for its lock would make the joined row (the old
# patient) fail the join on the stay's new version, and the stay look missing.
_OF_STAY = and_(P.c.tenant_id == S.c.tenant_id, P.c.id == S.c.patient_id)
STAY_BY_VISIT_LOCKED = (
    select(Stay, select(P.c.matricule).where(_OF_STAY).scalar_subquery(),
           select(P.c.legacy_matricule).where(_OF_STAY).scalar_subquery())
    .where(S.c.tenant_id == bindparam("tenant_id"), S.c.external_id == bindparam("visit"))
    .with_for_update(of=S).execution_options(populate_existing=True))
# What a list shows: everything but the raw bytes, which only an administrator sees.
LISTED = [c for c in T.c if c.name != "raw"]


class HL7Repository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def claim(self, values: dict[str, Any]) -> bool:
        """Insert the message's row unless its (facility, control id) is there already."""
        dialect = self.session.bind.dialect.name  # type: ignore[union-attr]
        result = await self.session.execute(CLAIM[dialect], {"tenant_id": self.tenant_id,
                                                             **values})
        return result.first() is not None

    async def insert(self, values: dict[str, Any]) -> None:
        await self.session.execute(INSERT, {"tenant_id": self.tenant_id, **values})

    async def by_key(self, facility: str, control_id: str) -> HL7Message | None:
        query = fresh(HL7Message).where(T.c.tenant_id == self.tenant_id,
                                        T.c.sending_facility == facility,
                                        T.c.control_id == control_id)
        return (await self.session.execute(query)).scalars().first()

    async def get(self, message_id: uuid.UUID, *, lock: bool = False) -> HL7Message | None:
        query = fresh(HL7Message).where(T.c.tenant_id == self.tenant_id, T.c.id == message_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalars().first()

    async def finish(self, message_id: uuid.UUID, values: dict[str, Any]) -> None:
        """The outcome of a message: status, ACK, what it touched."""
        await self.session.execute(FINISH, {"b_tenant_id": self.tenant_id, "b_id": message_id,
                                            **values})

    async def update(self, message_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(update(T).where(T.c.tenant_id == self.tenant_id,
                                                   T.c.id == message_id).values(**values))

    async def delete(self, message_id: uuid.UUID) -> None:
        await self.session.execute(delete(T).where(T.c.tenant_id == self.tenant_id,
                                                   T.c.id == message_id))

    async def accepted_since(self, received_at: datetime) -> list[Any]:
        """(id, control_id, message_type, stay_ids, patient_ids) of the messages accepted
        after `received_at`, oldest first (a replay's check: rare, an administrator's)."""
        return list((await self.session.execute(
            select(T.c.id, T.c.control_id, T.c.message_type, T.c.stay_ids, T.c.patient_ids)
            .where(T.c.tenant_id == self.tenant_id, T.c.status == "accepted",
                   T.c.received_at > received_at)
            .order_by(T.c.received_at, T.c.id))).all())

    async def page(self, *, limit: int, status: str | None, with_raw: bool,
                   after: tuple[datetime, uuid.UUID] | None) -> list[Any]:
        """Newest first; rows (not ORM objects), the raw bytes only when asked for."""
        conditions: list[Any] = [T.c.tenant_id == self.tenant_id]
        if status:
            conditions.append(T.c.status == status)
        if after:
            at, last = after
            conditions.append(or_(T.c.received_at < at,
                                  and_(T.c.received_at == at, T.c.id < last)))
        columns = list(T.c) if with_raw else LISTED
        query = (select(*columns).where(*conditions)
                 .order_by(T.c.received_at.desc(), T.c.id.desc()).limit(limit))
        return list((await self.session.execute(query)).all())

    async def purge(self, before: datetime) -> int:
        result = await self.session.execute(delete(T).where(T.c.tenant_id == self.tenant_id,
                                                            T.c.received_at < before))
        return result.rowcount or 0

    async def count(self) -> int:
        return (await self.session.execute(
            select(func.count()).select_from(T).where(T.c.tenant_id == self.tenant_id)
        )).scalar_one()

    async def stay_by_visit(self, visit_number: str, *, lock: bool = False
                            ) -> tuple[Stay, str | None, str | None] | None:
        """The stay of a visit number (its external id) with its patient's matricule and
        old number, in one round trip; `lock`: its row locked until the transaction ends."""
        query = STAY_BY_VISIT_LOCKED if lock else STAY_BY_VISIT
        row = (await self.session.execute(query, {"tenant_id": self.tenant_id,
                                                  "visit": visit_number})).first()
        return (row[0], row[1], row[2]) if row else None

    async def patient_by_legacy(self, legacy: str) -> Patient | None:
        """The patient with this pre-2014 number (one not merged away first)."""
        query = (fresh(Patient).where(P.c.tenant_id == self.tenant_id,
                                      P.c.legacy_matricule == legacy)
                 .order_by(P.c.merged_into.is_not(None), P.c.created_at).limit(1))
        return (await self.session.execute(query)).scalars().first()

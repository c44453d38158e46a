"""Every query of stays, movements and acts, always within one tenant."""

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Row, Update, and_, bindparam, insert, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import insert_recorded
from luxfact.db.queries import fresh
from luxfact.kit.time import utcnow
from luxfact.patients.models import Coverage, Patient
from luxfact.stays.models import Act, Movement, Stay

S = Stay.__table__  # type: ignore[attr-defined]
M = Movement.__table__  # type: ignore[attr-defined]
A = Act.__table__  # type: ignore[attr-defined]
# Values as parameters of one prebuilt statement: its compiled form is cached, where
# `.values(...)` builds and hashes a new statement on every call.
INSERT_MOVEMENT = insert(M)
_P = Patient.__table__  # type: ignore[attr-defined]
_C = Coverage.__table__  # type: ignore[attr-defined]


def _lock_for_act(*where: Any) -> Any:
    """The stay (locked) with what pricing needs of its patient (birth, death, one row per
    social tiers-payant attestation) and its identifiers (an HL7 message names both)."""
    return (
        select(S, _P.c.birth_date, _P.c.death_date, _P.c.matricule, _P.c.legacy_matricule,
               _C.c.valid_from.label("attestation_from"),
               _C.c.valid_to.label("attestation_to"))
        .select_from(S.join(_P, and_(_P.c.tenant_id == S.c.tenant_id,
                                     _P.c.id == S.c.patient_id))
                     .outerjoin(_C, and_(_C.c.tenant_id == S.c.tenant_id,
                                         _C.c.patient_id == S.c.patient_id,
                                         _C.c.kind == "social_tiers_payant")))
        .where(S.c.tenant_id == bindparam("tenant_id"), *where)
        .with_for_update(of=S))


LOCK_FOR_ACT = _lock_for_act(S.c.id == bindparam("stay_id"))
LOCK_FOR_ACT_BY_VISIT = _lock_for_act(S.c.external_id == bindparam("visit"))

_STAY = (S.c.tenant_id == bindparam("tenant_id"), S.c.id == bindparam("stay_id"))
GET_STAY = fresh(Stay).where(*_STAY)
LOCK_STAY = fresh(Stay).where(*_STAY).with_for_update()
MOVEMENTS = (fresh(Movement).where(M.c.tenant_id == bindparam("tenant_id"),
                                   M.c.stay_id == bindparam("stay_id")).order_by(M.c.seq))
_ACTS = (A.c.tenant_id == bindparam("tenant_id"), A.c.stay_id == bindparam("stay_id"))
ACTS = fresh(Act).where(*_ACTS).order_by(A.c.performed_at, A.c.id)
LIVE_ACTS = fresh(Act).where(*_ACTS, A.c.state != "cancelled").order_by(A.c.performed_at, A.c.id)
# What billing reads of a stay's acts: what prices them again, and what of the price they
# were recorded with billing checks still holds (their tariff, unit price, the percentages
# of their modifiers and surcharge, as reasons).
BILLABLE_ACTS = (select(A.c.id, A.c.code, A.c.performed_at, A.c.quantity, A.c.modifiers,
                        A.c.performer, A.c.specialty, A.c.state, A.c.tariff_version,
                        A.c.pricing["unit_price"].as_string().label("unit_price"),
                        A.c.pricing["reasons"].label("reasons"))
                 .where(*_ACTS, A.c.state != "cancelled").order_by(A.c.performed_at, A.c.id))
SET_ACTS_STATE = (
    update(A).where(A.c.tenant_id == bindparam("b_tenant_id"),
                    A.c.id.in_(bindparam("act_ids", expanding=True)))
    .values(state=bindparam("new_state"), invoice_id=bindparam("new_invoice_id"),
            version=A.c.version + 1, updated_at=bindparam("now")))

# In an UPDATE, a parameter may not be named after a column: hence the b_ prefix.
SET_STAY_STATE = (update(S).where(S.c.tenant_id == bindparam("b_tenant_id"),
                                  S.c.id == bindparam("stay_id"))
                  .values(state=bindparam("new_state"), updated_at=bindparam("now"),
                          version=S.c.version + 1))


BY_EXTERNAL_ID = fresh(Stay).where(S.c.tenant_id == bindparam("tenant_id"),
                                   S.c.external_id == bindparam("external_id"))


@lru_cache(maxsize=32)
def _update_stay(columns: tuple[str, ...]) -> Update:
    """One prebuilt UPDATE per set of columns, values as parameters: compiled once, where
    `.values(...)` would build and hash a new statement on every call."""
    return (update(S).where(S.c.tenant_id == bindparam("b_tenant_id"),
                            S.c.id == bindparam("b_stay_id"))
            .values(version=S.c.version + 1,
                    **{name: bindparam(f"v_{name}", type_=S.c[name].type) for name in columns}))


class StayRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def get(self, stay_id: uuid.UUID, *, lock: bool = False) -> Stay | None:
        """The stay; `lock` serialises movements and acts of one stay (PostgreSQL)."""
        return (await self.session.execute(LOCK_STAY if lock else GET_STAY, {
            "tenant_id": self.tenant_id, "stay_id": stay_id})).scalars().first()

    async def many(self, stay_ids: list[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """Several stays' rows in one query (documents of a batch)."""
        if not stay_ids:
            return {}
        rows = await self.session.execute(select(S).where(S.c.tenant_id == self.tenant_id,
                                                         S.c.id.in_(stay_ids)))
        return {row.id: row for row in rows.all()}

    async def lock_for_act(self, stay_id: uuid.UUID) -> list[Row]:
        """The stay (locked) with what pricing needs of its patient, in one round trip: one
        row per social tiers-payant attestation of the patient (at least one row)."""
        return await self._locked_for_act(LOCK_FOR_ACT, {"stay_id": stay_id})

    async def lock_for_act_by_visit(self, visit_number: str) -> list[Row]:
        """`lock_for_act` of the stay with this external id (an HL7 charge message's)."""
        return await self._locked_for_act(LOCK_FOR_ACT_BY_VISIT, {"visit": visit_number})

    async def _locked_for_act(self, query: Any, params: dict[str, Any]) -> list[Row]:
        params["tenant_id"] = self.tenant_id
        rows = list((await self.session.execute(query, params)).all())
        if not rows:
            # Waiting for the lock on a merge that re-pointed the stay to the surviving
            # patient, PostgreSQL checks the stay's new row against the patient's row read
            # before, the old patient's, and drops it: read again, the lock held, it is
            # found. Only a stay really missing costs the second round trip.
            rows = list((await self.session.execute(query, params)).all())
        return rows

    async def by_external_id(self, external_id: str) -> Stay | None:
        return (await self.session.execute(BY_EXTERNAL_ID, {
            "tenant_id": self.tenant_id, "external_id": external_id})).scalars().first()

    async def insert_stay(self, values: dict[str, Any], event: dict[str, Any]) -> None:
        """The stay and its audit event (`event_values`), in one round trip."""
        await insert_recorded(self.session, S, {"tenant_id": self.tenant_id, **values}, event)

    async def update_stay(self, stay_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.session.execute(*self._stay_update(stay_id, values))

    def _stay_update(self, stay_id: uuid.UUID, values: dict[str, Any]
                     ) -> tuple[Update, dict[str, Any]]:
        """The prebuilt UPDATE of these columns and its parameters."""
        return _update_stay(tuple(values)), {
            "b_tenant_id": self.tenant_id, "b_stay_id": stay_id,
            **{f"v_{name}": value for name, value in values.items()}}

    async def set_state(self, stay_id: uuid.UUID, state: str, at: datetime) -> None:
        await self.session.execute(SET_STAY_STATE, {"b_tenant_id": self.tenant_id,
                                                    "stay_id": stay_id, "new_state": state,
                                                    "now": at})

    async def page(self, *, limit: int, patient_id: uuid.UUID | None, state: str | None,
                   after: tuple[datetime, uuid.UUID] | None) -> list[Stay]:
        conditions: list[Any] = [S.c.tenant_id == self.tenant_id]
        if patient_id:
            conditions.append(S.c.patient_id == patient_id)
        if state:
            conditions.append(S.c.state == state)
        if after:
            at, last = after
            conditions.append(or_(S.c.admitted_at < at,
                                  and_(S.c.admitted_at == at, S.c.id < last)))
        query = (select(Stay).where(*conditions)
                 .order_by(S.c.admitted_at.desc(), S.c.id.desc()).limit(limit))
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def movements(self, stay_id: uuid.UUID) -> list[Movement]:
        return list((await self.session.execute(MOVEMENTS, {
            "tenant_id": self.tenant_id, "stay_id": stay_id})).scalars().all())

    async def insert_movement(self, values: dict[str, Any],
                              event: dict[str, Any] | None = None, *,
                              stay_changes: dict[str, Any] | None = None) -> None:
        """The movement, and with it its audit event (`event_values`) when given, and with
        both the stay's new state (`update_stay`): one statement on PostgreSQL, the movement
        and the stay in data-modifying CTEs (`insert_recorded`)."""
        row = {"tenant_id": self.tenant_id, **values}
        if event is None:
            await self.session.execute(INSERT_MOVEMENT, row)
            return
        also = None if stay_changes is None else self._stay_update(values["stay_id"],
                                                                   stay_changes)
        await insert_recorded(self.session, M, row, event, also=also)

    async def mark_cancelled(self, movement_id: uuid.UUID, by: uuid.UUID) -> None:
        await self.session.execute(update(M).where(M.c.tenant_id == self.tenant_id,
                                                   M.c.id == movement_id)
                                   .values(cancelled_by=by))

    async def acts(self, stay_id: uuid.UUID, *, include_cancelled: bool = True) -> list[Act]:
        query = ACTS if include_cancelled else LIVE_ACTS
        return list((await self.session.execute(query, {
            "tenant_id": self.tenant_id, "stay_id": stay_id})).scalars().all())

    async def billable_acts(self, stay_id: uuid.UUID) -> list[Row]:
        return list((await self.session.execute(BILLABLE_ACTS, {
            "tenant_id": self.tenant_id, "stay_id": stay_id})).all())

    async def acts_by_id(self, act_ids: list[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """Modifiers and performer of acts named by their ids (a claim's lines)."""
        if not act_ids:
            return {}
        rows = await self.session.execute(
            select(A.c.id, A.c.modifiers, A.c.performer).where(
                A.c.tenant_id == self.tenant_id, A.c.id.in_(act_ids)))
        return {row.id: row for row in rows.all()}

    async def act(self, stay_id: uuid.UUID, act_id: uuid.UUID) -> Act | None:
        query = fresh(Act).where(A.c.tenant_id == self.tenant_id, A.c.stay_id == stay_id,
                                  A.c.id == act_id)
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def insert_act(self, values: dict[str, Any], event: dict[str, Any]) -> None:
        """The act and its audit event (`event_values`), in one round trip."""
        await insert_recorded(self.session, A, {"tenant_id": self.tenant_id, **values}, event)

    async def update_act(self, act_id: uuid.UUID, version: int, values: dict[str, Any]) -> bool:
        result = await self.session.execute(
            update(A).where(A.c.tenant_id == self.tenant_id, A.c.id == act_id,
                            A.c.version == version).values(version=version + 1, **values))
        return bool(result.rowcount)

    async def set_acts_state(self, act_ids: list[uuid.UUID], state: str,
                             invoice_id: uuid.UUID | None) -> None:
        """Billing marks acts invoiced (locked) or releases them after a credit note."""
        if act_ids:
            await self.session.execute(SET_ACTS_STATE, {
                "b_tenant_id": self.tenant_id, "act_ids": act_ids, "new_state": state,
                "new_invoice_id": invoice_id, "now": utcnow()})

    async def cancel_recorded_acts(self, stay_id: uuid.UUID) -> list[uuid.UUID]:
        """Cancel the stay's acts not invoiced (the stay is locked); their ids, to audit."""
        recorded = (A.c.tenant_id == self.tenant_id, A.c.stay_id == stay_id,
                    A.c.state == "recorded")
        ids = list((await self.session.execute(select(A.c.id).where(*recorded))).scalars())
        if ids:
            await self.session.execute(update(A).where(*recorded).values(
                state="cancelled", version=A.c.version + 1))
        return ids

    async def move_stays(self, source: uuid.UUID, target: uuid.UUID) -> None:
        await self.session.execute(update(S).where(S.c.tenant_id == self.tenant_id,
                                                   S.c.patient_id == source)
                                   .values(patient_id=target))

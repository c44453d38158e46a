"""Every query of patients and coverages, always within one tenant."""

import uuid
from datetime import date
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.db.queries import fresh
from luxfact.patients.models import Coverage, Patient, PatientNameKey
from luxfact.patients.search import SearchTerms, deletion_keys, name_keys, prefix_end

P = Patient.__table__  # type: ignore[attr-defined]
K = PatientNameKey.__table__  # type: ignore[attr-defined]
C = Coverage.__table__  # type: ignore[attr-defined]


class PatientRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def get(self, patient_id: uuid.UUID) -> Patient | None:
        query = fresh(Patient).where(Patient.tenant_id == self.tenant_id,  # type: ignore[arg-type]
                                      Patient.id == patient_id)  # type: ignore[arg-type]
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def by_matricule(self, matricule: str) -> Patient | None:
        query = fresh(Patient).where(Patient.tenant_id == self.tenant_id,  # type: ignore[arg-type]
                                      Patient.matricule == matricule)  # type: ignore[arg-type]
        return (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]

    async def insert(self, values: dict[str, Any]) -> None:
        """One statement for the patient, one for its name keys: the desk's hot path."""
        await self.session.execute(insert(P).values(tenant_id=self.tenant_id, **values))
        await self.replace_name_keys(values["id"], values["family_name"])

    async def replace_name_keys(self, patient_id: uuid.UUID, family_name: str) -> None:
        await self.session.execute(delete(K).where(K.c.tenant_id == self.tenant_id,
                                                   K.c.patient_id == patient_id))
        keys = [{"tenant_id": self.tenant_id, "key": k, "patient_id": patient_id}
                for k in sorted(name_keys(family_name))]
        if keys:
            await self.session.execute(insert(K), keys)

    async def search(self, terms: SearchTerms, *, limit: int,
                     after: tuple[str, str, str] | None = None) -> list[Patient]:
        """Patients matching the terms, in (family, given, id) order, `limit` at most.

        A name matches by family-name prefix, by given-name prefix, or one typo away (name
        keys). Each of the three is its own index-friendly query returning its first `limit`
        rows in the common order; merging them gives exactly the first `limit` rows of their
        union (an OR of the three would defeat the indexes).
        """
        base: list[Any] = [P.c.tenant_id == self.tenant_id, P.c.merged_into.is_(None)]
        if terms.matricule:
            base.append(P.c.matricule == terms.matricule)
        if terms.legacy_matricule:
            base.append(P.c.legacy_matricule == terms.legacy_matricule)
        if terms.birth_date:
            base.append(P.c.birth_date == terms.birth_date)
        if after:
            family, given, last_id = after
            base.append(or_(
                P.c.family_folded > family,
                and_(P.c.family_folded == family, P.c.given_folded > given),
                and_(P.c.family_folded == family, P.c.given_folded == given,
                     P.c.id > uuid.UUID(last_id)),
            ))
        sources: list[list[Any]] = [[]]
        if terms.name_words:
            first, *rest = terms.name_words
            for word in rest:
                base.append(or_(P.c.given_folded.contains(word),
                                P.c.family_folded.contains(word)))
            end = prefix_end(first)
            sources = [
                [P.c.family_folded >= first, P.c.family_folded < end],
                [P.c.given_folded >= first, P.c.given_folded < end],
                [P.c.id.in_(select(K.c.patient_id).where(
                    K.c.tenant_id == self.tenant_id,
                    K.c.key.in_(sorted(deletion_keys(first)))))],
            ]
        found: dict[uuid.UUID, Patient] = {}
        for extra in sources:
            query = (fresh(Patient).where(*base, *extra)
                     .order_by(P.c.family_folded, P.c.given_folded, P.c.id).limit(limit))
            for patient in (await self.session.exec(query)).scalars():  # type: ignore[call-overload]
                found[patient.id] = patient
        ordered = sorted(found.values(), key=lambda p: (p.family_folded, p.given_folded, p.id))
        return ordered[:limit]

    async def duplicates_of(self, patient: Patient) -> list[Patient]:
        """Same matricule, or same birth date and a similar family name."""
        similar = select(K.c.patient_id).where(
            K.c.tenant_id == self.tenant_id,
            K.c.key.in_(sorted(name_keys(patient.family_name))))
        conditions = [P.c.birth_date == patient.birth_date, P.c.id.in_(similar)]
        same = and_(*conditions)
        if patient.matricule:
            same = or_(same, P.c.matricule == patient.matricule)
        query = fresh(Patient).where(P.c.tenant_id == self.tenant_id, P.c.id != patient.id,
                                      P.c.merged_into.is_(None), same).limit(50)
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def update(self, patient_id: uuid.UUID, version: int, values: dict[str, Any]) -> bool:
        """Optimistic update: only when the row is still at `version`."""
        result = await self.session.execute(
            update(P).where(P.c.tenant_id == self.tenant_id, P.c.id == patient_id,
                            P.c.version == version)
            .values(version=version + 1, **values))
        return bool(result.rowcount)

    async def coverages(self, patient_id: uuid.UUID) -> list[Coverage]:
        query = (fresh(Coverage).where(C.c.tenant_id == self.tenant_id,
                                        C.c.patient_id == patient_id)
                 .order_by(C.c.valid_from, C.c.id))
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

    async def add_coverage(self, values: dict[str, Any]) -> None:
        await self.session.execute(insert(C).values(tenant_id=self.tenant_id, **values))

    async def move_coverages(self, source: uuid.UUID, target: uuid.UUID) -> None:
        await self.session.execute(update(C).where(C.c.tenant_id == self.tenant_id,
                                                   C.c.patient_id == source)
                                   .values(patient_id=target))

    async def coverage_on(self, patient_id: uuid.UUID, day: date) -> list[Coverage]:
        return [c for c in await self.coverages(patient_id)
                if c.valid_from <= day and (c.valid_to is None or day <= c.valid_to)]


"""Every query of patients and coverages, always within one tenant."""

import uuid
from datetime import date
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, insert, or_, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import insert_recorded
from luxfact.db.queries import fresh
from luxfact.kit.text import fold
from luxfact.patients.models import Coverage, Patient, PatientNameKey
from luxfact.patients.search import SearchTerms, deletion_keys, name_keys, prefix_end, rank

P = Patient.__table__  # type: ignore[attr-defined]
K = PatientNameKey.__table__  # type: ignore[attr-defined]
C = Coverage.__table__  # type: ignore[attr-defined]
# Built once, values as parameters: compiled once, not on every request.
PRICING_FACTS = (
    select(P.c.birth_date, P.c.death_date, P.c.language, C.c.valid_from, C.c.valid_to)
    .select_from(P.outerjoin(C, and_(C.c.tenant_id == P.c.tenant_id, C.c.patient_id == P.c.id,
                                     C.c.kind == "social_tiers_payant")))
    .where(P.c.tenant_id == bindparam("tenant_id"), P.c.id == bindparam("patient_id")))
COVERAGES = (fresh(Coverage).where(C.c.tenant_id == bindparam("tenant_id"),
                                   C.c.patient_id == bindparam("patient_id"))
             .order_by(C.c.valid_from, C.c.id))
GET_PATIENT = fresh(Patient).where(P.c.tenant_id == bindparam("tenant_id"),
                                   P.c.id == bindparam("patient_id"))
BY_MATRICULE = fresh(Patient).where(P.c.tenant_id == bindparam("tenant_id"),
                                    P.c.matricule == bindparam("matricule"))
# Patients sharing one birth date in one hospital: a few dozen; this bounds the worst case.
NARROW_MAX = 2000


# Birth date, death date, social tiers-payant attestations (from, to).
Facts = tuple[date, date | None, list[tuple[date, date | None]]]


class PatientRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def get(self, patient_id: uuid.UUID) -> Patient | None:
        return (await self.session.execute(
            GET_PATIENT, {"tenant_id": self.tenant_id, "patient_id": patient_id})).scalars().first()

    async def many(self, patient_ids: list[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """Several patients' rows in one query (documents of a batch)."""
        if not patient_ids:
            return {}
        rows = await self.session.execute(select(P).where(P.c.tenant_id == self.tenant_id,
                                                         P.c.id.in_(patient_ids)))
        return {row.id: row for row in rows.all()}

    async def lock(self, *patient_ids: uuid.UUID) -> list[Patient]:
        """Lock patients' rows until the transaction ends (PostgreSQL), in id order so two
        transactions locking the same pair cannot deadlock."""
        found = []
        for patient_id in sorted(patient_ids):
            query = fresh(Patient).where(P.c.tenant_id == self.tenant_id,
                                         P.c.id == patient_id).with_for_update()
            patient = (await self.session.exec(query)).scalars().first()  # type: ignore[call-overload]
            if patient is not None:
                found.append(patient)
        return found

    async def by_matricule(self, matricule: str) -> Patient | None:
        return (await self.session.execute(BY_MATRICULE, {
            "tenant_id": self.tenant_id, "matricule": matricule})).scalars().first()

    async def insert(self, values: dict[str, Any], event: dict[str, Any]) -> None:
        """One statement for the patient and its audit event (`event_values`), one for its
        name keys: the desk's hot path."""
        await insert_recorded(self.session, P, {"tenant_id": self.tenant_id, **values}, event)
        await self._insert_name_keys(values["id"], values["family_name"], values["given_name"])

    async def replace_name_keys(self, patient_id: uuid.UUID, family_name: str,
                                given_name: str) -> None:
        await self.session.execute(delete(K).where(K.c.tenant_id == self.tenant_id,
                                                   K.c.patient_id == patient_id))
        await self._insert_name_keys(patient_id, family_name, given_name)

    async def _insert_name_keys(self, patient_id: uuid.UUID, family_name: str,
                                given_name: str) -> None:
        family, given = fold(family_name), fold(given_name)
        keys = [{"tenant_id": self.tenant_id, "key": k, "patient_id": patient_id,
                 "family_folded": family, "given_folded": given}
                for k in sorted(name_keys(family_name))]
        if keys:
            # An executemany, one round trip on asyncpg: a multi-row `values(keys)` has no
            # cache key, and compiling it again for every patient cost the client 0.5 ms
            # more (0.74-0.84 against 0.27-0.30 ms, 4 keys, measured 2026-11-27).
            await self.session.execute(insert(K), keys)

    async def search(self, terms: SearchTerms, *, limit: int,
                     after: tuple[int, str, str, str] | None = None
                     ) -> list[tuple[int, Patient]]:
        """Patients matching the terms as (rank, patient), `limit` at most.

        Rank 0: the first name word starts the family or the given name; rank 1: the family
        name is one typo away (name keys). Rank 0 comes first, each rank in (family, given,
        id) order; the cursor carries the rank. Each source is its own index-friendly query
        stopping at `limit` (an OR of them would defeat the indexes), and the typo queries run
        only once the exact ones are exhausted, which at the desk is rare.
        """
        base: list[Any] = [P.c.tenant_id == self.tenant_id, P.c.merged_into.is_(None)]
        if terms.matricule:
            base.append(P.c.matricule == terms.matricule)
        if terms.legacy_matricule:
            base.append(P.c.legacy_matricule == terms.legacy_matricule)
        if terms.birth_date:
            base.append(P.c.birth_date == terms.birth_date)
        first, rest = (terms.name_words[0], terms.name_words[1:]) if terms.name_words else \
            (None, [])
        if terms.birth_date or terms.matricule or terms.legacy_matricule:
            return await self._narrow(base, first, rest, limit, after)
        results: list[tuple[int, Patient]] = []
        if after is None or after[0] == 0:
            position = after[1:] if after else None
            results = [(0, p) for p in await self._exact(base, first, rest, limit, position)]
        if first and len(results) < limit:
            position = after[1:] if after and after[0] == 1 else None
            seen = {p.id for _, p in results}
            typos = await self._typos(base, first, rest, limit - len(results), position)
            results += [(1, p) for p in typos if p.id not in seen]
        return results[:limit]

    async def _narrow(self, base: list[Any], first: str | None, rest: list[str], limit: int,
                      after: tuple[int, str, str, str] | None) -> list[tuple[int, Patient]]:
        """A birth date or a matricule leaves a handful of patients: read them all (by that
        index) and rank them here with the same rules, rather than walk name indexes."""
        rows = (await self.session.exec(  # type: ignore[call-overload]
            fresh(Patient).where(*base).limit(NARROW_MAX))).scalars().all()
        ranked = sorted(
            ((r, p) for p in rows
             if (r := rank(first, rest, p.family_folded, p.given_folded)) is not None),
            key=lambda item: (item[0], item[1].family_folded, item[1].given_folded,
                              str(item[1].id)))
        if after:
            ranked = [(r, p) for r, p in ranked
                      if (r, p.family_folded, p.given_folded, str(p.id)) > after]
        return ranked[:limit]

    async def _exact(self, base: list[Any], first: str | None, rest: list[str], limit: int,
                     position: tuple[str, str, str] | None) -> list[Patient]:
        conditions = list(base)
        if position:
            conditions.append(_after(position, P.c.family_folded, P.c.given_folded, P.c.id))
        for word in rest:
            conditions.append(or_(P.c.given_folded.contains(word),
                                  P.c.family_folded.contains(word)))
        sources: list[list[Any]] = [[]]
        if first:
            end = prefix_end(first)
            sources = [[P.c.family_folded >= first, P.c.family_folded < end],
                       [P.c.given_folded >= first, P.c.given_folded < end]]
        found: dict[uuid.UUID, Patient] = {}
        for extra in sources:
            query = (fresh(Patient).where(*conditions, *extra)
                     .order_by(P.c.family_folded, P.c.given_folded, P.c.id).limit(limit))
            for patient in (await self.session.exec(query)).scalars():  # type: ignore[call-overload]
                found[patient.id] = patient
        return sorted(found.values(),
                      key=lambda p: (p.family_folded, p.given_folded, p.id))[:limit]

    async def _typos(self, base: list[Any], word: str, rest: list[str], limit: int,
                     position: tuple[str, str, str] | None) -> list[Patient]:
        """One query per key of the word's deletion neighbourhood, each walking that key's
        entries in name order (ix_patient_name_keys_ordered), filtered on the copied names
        before any patient row is read, and stopping at `limit`."""
        end = prefix_end(word)
        key_conditions: list[Any] = [
            K.c.tenant_id == self.tenant_id,
            # Exact (rank 0) matches are not repeated here.
            or_(K.c.family_folded < word, K.c.family_folded >= end),
            or_(K.c.given_folded < word, K.c.given_folded >= end),
            *(or_(K.c.given_folded.contains(w), K.c.family_folded.contains(w)) for w in rest),
        ]
        if position:
            key_conditions.append(_after(position, K.c.family_folded, K.c.given_folded,
                                         K.c.patient_id))
        found: dict[uuid.UUID, Patient] = {}
        for key in sorted(deletion_keys(word)):
            query = (fresh(Patient)
                     .join(K, and_(K.c.tenant_id == P.c.tenant_id, K.c.patient_id == P.c.id))
                     .where(*base, *key_conditions, K.c.key == key)
                     .order_by(K.c.family_folded, K.c.given_folded, K.c.patient_id)
                     .limit(limit))
            for patient in (await self.session.exec(query)).scalars():  # type: ignore[call-overload]
                found[patient.id] = patient
        return sorted(found.values(),
                      key=lambda p: (p.family_folded, p.given_folded, p.id))[:limit]

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

    async def pricing_facts(self, patient_id: uuid.UUID
                            ) -> tuple[date, date | None, list[tuple[date, date | None]]]:
        """Birth and death dates, and the validity of each social tiers-payant attestation:
        what pricing needs of a patient, in one round trip."""
        rows = (await self.session.execute(
            PRICING_FACTS, {"tenant_id": self.tenant_id, "patient_id": patient_id})).all()
        attestations = [(r.valid_from, r.valid_to) for r in rows if r.valid_from is not None]
        return rows[0].birth_date, rows[0].death_date, attestations

    async def billing_facts(self, patient_id: uuid.UUID) -> tuple[Facts, str]:
        """What pricing needs of a patient, and the language their documents are in."""
        rows = (await self.session.execute(
            PRICING_FACTS, {"tenant_id": self.tenant_id, "patient_id": patient_id})).all()
        attestations = [(r.valid_from, r.valid_to) for r in rows if r.valid_from is not None]
        return (rows[0].birth_date, rows[0].death_date, attestations), rows[0].language

    async def coverages(self, patient_id: uuid.UUID) -> list[Coverage]:
        return list((await self.session.execute(
            COVERAGES, {"tenant_id": self.tenant_id, "patient_id": patient_id})).scalars().all())

    async def coverages_by_id(self, coverage_ids: list[uuid.UUID]) -> dict[uuid.UUID, Row]:
        """Several coverages named by their ids, in one query (a claim batch's invoices)."""
        if not coverage_ids:
            return {}
        rows = await self.session.execute(select(C).where(C.c.tenant_id == self.tenant_id,
                                                         C.c.id.in_(coverage_ids)))
        return {row.id: row for row in rows.all()}

    async def add_coverage(self, values: dict[str, Any], event: dict[str, Any]) -> None:
        """The coverage and its audit event (`event_values`), in one round trip."""
        await insert_recorded(self.session, C, {"tenant_id": self.tenant_id, **values}, event)

    async def move_coverages(self, source: uuid.UUID, target: uuid.UUID) -> None:
        await self.session.execute(update(C).where(C.c.tenant_id == self.tenant_id,
                                                   C.c.patient_id == source)
                                   .values(patient_id=target))


def _after(position: tuple[str, str, str], family: Any, given: Any, id_: Any) -> Any:
    """Rows after the cursor position in (family, given, id) order."""
    last_family, last_given, last_id = position
    return or_(family > last_family,
               and_(family == last_family, given > last_given),
               and_(family == last_family, given == last_given, id_ > uuid.UUID(last_id)))

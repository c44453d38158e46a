"""Patient use cases. Never commits: the request's unit of work does."""

import uuid
from datetime import date
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import event_values, record
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.text import fold
from luxfact.kit.time import utcnow
from luxfact.patients.models import Coverage, Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.schemas import CoverageIn, PatientIn, PatientPatch, check_identity
from luxfact.patients.search import parse_query

# Payers whose coverages cannot both hold on one day for one patient.
STATUTORY_KINDS = {"statutory", "other_fund", "foreign"}


async def create_patient(session: AsyncSession, tenant_id: uuid.UUID, data: PatientIn, *,
                         matricule_free: bool = False) -> Patient:
    """`matricule_free`: the caller looked the matricule up in this transaction and found
    no patient (an HL7 admission does, to find the patient); the unique constraint still
    stands behind it."""
    repo = PatientRepository(session, tenant_id)
    if data.matricule and not matricule_free and (
            existing := await repo.by_matricule(data.matricule)):
        raise Conflict("A patient with this matricule exists already.",
                       errors=[{"field": "matricule", "reason": "already registered"}],
                       existing_id=str(existing.id))
    now = utcnow()
    values: dict[str, Any] = data.model_dump()
    values.update(id=uuid.uuid4(), family_folded=fold(data.family_name),
                  given_folded=fold(data.given_name), created_at=now, updated_at=now,
                  version=1)
    await repo.insert(values, event_values("patient.create", "patient", values["id"], {},
                                           tenant_id=tenant_id))
    # What was inserted is what would be read back: no second round trip.
    return Patient(tenant_id=tenant_id, death_date=None, merged_into=None, **values)


async def read_patient(session: AsyncSession, tenant_id: uuid.UUID,
                       patient_id: uuid.UUID) -> Patient:
    patient = await PatientRepository(session, tenant_id).get(patient_id)
    if patient is None:
        raise NotFound("No such patient.")
    await record(session, "patient.read", "patient", patient_id, {}, tenant_id=tenant_id)
    return patient


async def update_patient(session: AsyncSession, tenant_id: uuid.UUID, patient: Patient,
                         data: PatientPatch) -> Patient:
    repo = PatientRepository(session, tenant_id)
    refuse_if_merged(patient)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return patient
    for field, value in changes.items():
        if value is None and field not in NULLABLE:
            raise ValidationFailed(errors=[{"field": field, "reason": "cannot be null"}])
    if changes.get("matricule") and changes["matricule"] != patient.matricule:
        other = await repo.by_matricule(changes["matricule"])
        if other is not None:
            raise Conflict("Another patient has this matricule.",
                           errors=[{"field": "matricule", "reason": "already registered"}])
        changes["no_matricule_reason"] = None
    matricule = changes.get("matricule", patient.matricule)
    reason = changes.get("no_matricule_reason", patient.no_matricule_reason)
    if matricule is not None:
        reason = changes["no_matricule_reason"] = None
    try:
        check_identity(matricule, reason, changes.get("birth_date", patient.birth_date))
    except ValueError as exc:
        raise ValidationFailed(errors=[{"field": "body", "reason": str(exc)}]) from None
    if "family_name" in changes:
        changes["family_folded"] = fold(changes["family_name"])
    if "given_name" in changes:
        changes["given_folded"] = fold(changes["given_name"])
    birth = changes.get("birth_date", patient.birth_date)
    death = changes.get("death_date", patient.death_date)
    if death is not None and death < birth:
        raise ValidationFailed(errors=[{"field": "death_date", "reason": "before the birth date"}])
    changes["updated_at"] = utcnow()
    if not await repo.update(patient.id, patient.version, changes):
        raise Conflict("The patient changed meanwhile: reload and retry.")
    if "family_name" in changes or "given_name" in changes:
        await repo.replace_name_keys(patient.id, changes.get("family_name", patient.family_name),
                                     changes.get("given_name", patient.given_name))
    # Field names only: the audit trail must not copy the patient's data.
    await record(session, "patient.update", "patient", patient.id,
                 {"fields": sorted(k for k in changes if not k.endswith("_folded")
                                   and k != "updated_at")}, tenant_id=tenant_id)
    updated = await repo.get(patient.id)
    assert updated is not None
    return updated


# What a PATCH may set to null; every other field keeps a value.
NULLABLE = {"matricule", "no_matricule_reason", "legacy_matricule", "death_date"}


def refuse_if_merged(patient: Patient) -> None:
    if patient.merged_into:
        raise Conflict(f"This record was merged into patient {patient.merged_into}: "
                       "change that one.", survivor_id=str(patient.merged_into))


async def search_patients(session: AsyncSession, tenant_id: uuid.UUID, *, q: str | None,
                          birth_date: date | None, matricule: str | None, limit: int,
                          after: tuple[int, str, str, str] | None
                          ) -> list[tuple[int, Patient]]:
    terms = parse_query(q or "")
    if birth_date:
        terms.birth_date = birth_date
    if matricule:
        digits = matricule.replace(" ", "")
        if len(digits) == 11:
            terms.legacy_matricule = digits
        else:
            terms.matricule = digits
    found = await PatientRepository(session, tenant_id).search(terms, limit=limit, after=after)
    await record(session, "patient.search", "patient", "search",
                 {"results": [str(p.id) for _, p in found]}, tenant_id=tenant_id)
    return found


async def add_coverage(session: AsyncSession, tenant_id: uuid.UUID, patient: Patient,
                       data: CoverageIn, *, registered: list[Coverage] | None = None
                       ) -> Coverage:
    """`registered`: every coverage of a patient registered in this very transaction (which
    no other transaction can see, so none can add one): checked against, instead of the
    patient's row locked and its coverages read."""
    refuse_if_merged(patient)
    repo = PatientRepository(session, tenant_id)
    if registered is None:
        # Serialise coverage changes of one patient: the overlap check reads, then writes.
        await repo.lock(patient.id)
    if data.kind in STATUTORY_KINDS:
        others = registered if registered is not None else await repo.coverages(patient.id)
        for other in others:
            if other.kind in STATUTORY_KINDS and _overlap(other, data.valid_from, data.valid_to):
                raise Conflict(
                    f"The patient is already covered by {other.payer} from {other.valid_from}"
                    f" to {other.valid_to or '(open)'}: end that coverage first.",
                    errors=[{"field": "valid_from", "reason": "overlaps another coverage"}])
    values = data.model_dump()
    values.update(id=uuid.uuid4(), patient_id=patient.id, created_at=utcnow())
    await repo.add_coverage(values, event_values("coverage.create", "patient", patient.id,
                                                 {"kind": data.kind}, tenant_id=tenant_id))
    return Coverage(tenant_id=tenant_id, **values)


def _overlap(c: Coverage, start: date, end: date | None) -> bool:
    return (c.valid_to is None or start <= c.valid_to) and (end is None or c.valid_from <= end)


def coverages_conflict(a: list[Coverage], b: list[Coverage]) -> str | None:
    """Why two patients' coverages cannot be merged, or None."""
    for x in a:
        for y in b:
            if (x.kind in STATUTORY_KINDS and y.kind in STATUTORY_KINDS
                    and _overlap(x, y.valid_from, y.valid_to)
                    and (x.payer, x.member_number) != (y.payer, y.member_number)):
                return (f"{x.payer} {x.valid_from}..{x.valid_to or ''} and "
                        f"{y.payer} {y.valid_from}..{y.valid_to or ''} overlap")
    return None

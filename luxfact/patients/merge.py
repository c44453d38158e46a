"""Merging a duplicate patient into the one that survives."""

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.time import utcnow
from luxfact.patients.models import Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.service import coverages_conflict
from luxfact.stays.repository import StayRepository


async def merge_patients(session: AsyncSession, tenant_id: uuid.UUID, survivor_id: uuid.UUID,
                         duplicate_id: uuid.UUID) -> Patient:
    """Move the duplicate's stays and coverages to the survivor and retire the duplicate.

    Refused when the two are one, when either is already merged, when their coverages
    conflict, and while either has an invoice in a claim batch not yet sent (the file
    names the patient: it would then name one who no longer exists).
    """
    if survivor_id == duplicate_id:
        raise ValidationFailed(errors=[{"field": "duplicate_id",
                                        "reason": "a patient cannot be merged into itself"}])
    repo = PatientRepository(session, tenant_id)
    # Locked, so that no change to either lands between the checks and the writes below.
    locked = {p.id: p for p in await repo.lock(survivor_id, duplicate_id)}
    survivor = locked.get(survivor_id)
    if survivor is None:
        raise NotFound("No such patient.")
    duplicate = locked.get(duplicate_id)
    if duplicate is None:
        raise ValidationFailed(errors=[{"field": "duplicate_id", "reason": "no such patient"}])
    for patient in (survivor, duplicate):
        if patient.merged_into:
            raise Conflict(f"Patient {patient.id} was already merged into {patient.merged_into}.")
    if survivor.matricule and duplicate.matricule and survivor.matricule != duplicate.matricule:
        raise Conflict("The two patients have different matricules: they are two people.")
    reason = coverages_conflict(await repo.coverages(survivor_id),
                                await repo.coverages(duplicate_id))
    if reason:
        raise Conflict(f"Their coverages conflict ({reason}): correct them before merging.")
    # Imported here: claims build on patients, not the other way round.
    from luxfact.claims.repository import ClaimRepository

    pending = await ClaimRepository(session, tenant_id).open_states_of_patient_invoices(
        [survivor_id, duplicate_id])
    if pending:
        raise Conflict(f"{pending} invoice(s) of these patients are in a claim batch not yet "
                       "sent: send the batch (or wait for the next one) before merging.")
    await StayRepository(session, tenant_id).move_stays(duplicate_id, survivor_id)
    await repo.move_coverages(duplicate_id, survivor_id)
    changes: dict[str, object] = {"updated_at": utcnow()}
    retired: dict[str, object] = {"merged_into": survivor_id, "updated_at": utcnow()}
    if not survivor.matricule and duplicate.matricule:
        # The matricule moves with the person; it leaves the duplicate first (it is unique).
        retired.update(matricule=None, no_matricule_reason="other")
        changes.update(matricule=duplicate.matricule, no_matricule_reason=None)
    if not (await repo.update(duplicate_id, duplicate.version, retired)
            and await repo.update(survivor_id, survivor.version, changes)):
        raise Conflict("One of the patients changed during the merge: reload and retry.")
    await record(session, "patient.merge", "patient", survivor_id,
                 {"merged": str(duplicate_id)}, tenant_id=tenant_id)
    await record(session, "patient.merged_into", "patient", duplicate_id,
                 {"survivor": str(survivor_id)}, tenant_id=tenant_id)
    merged = await repo.get(survivor_id)
    assert merged is not None
    return merged

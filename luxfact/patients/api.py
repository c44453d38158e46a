"""/api/v1/patients: the admission desk's and the hospital systems' patient records."""

import uuid

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.etag import etag, require_if_match
from luxfact.http.pagination import Page, bad_cursor, decode_cursor, encode_cursor, whole
from luxfact.patients import service
from luxfact.patients.merge import merge_patients
from luxfact.patients.models import Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.schemas import (
    CoverageIn,
    CoverageOut,
    MergeIn,
    PatientIn,
    PatientOut,
    PatientPatch,
    PatientQuery,
)

DESK = (Role.clerk, Role.billing, Role.integration)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def patient_response(patient: Patient, status: int = 200) -> Response:
    out = PatientOut.model_validate(patient, from_attributes=True)
    return json_response(out, status, headers={"ETag": etag(patient.version)})


@endpoint(Role.clerk, Role.integration, idempotent=True, body=PatientIn, response=PatientOut,
          status=201, etag=True)
async def create_patient(ctx: Ctx) -> Response:
    """Register a patient."""
    patient = await service.create_patient(ctx.session, ctx.tenant_id, await ctx.body(PatientIn))
    response = patient_response(patient, 201)
    response.headers["Location"] = f"/api/v1/patients/{patient.id}"
    return response


@endpoint(*DESK, query=PatientQuery, response=Page[PatientOut])
async def list_patients(ctx: Ctx) -> Response:
    """Search patients by name (forgiving), matricule or birth date."""
    query = ctx.query(PatientQuery)
    position = decode_cursor(query.cursor, 4)
    if position and (position[0] not in (0, 1)
                     or not all(isinstance(p, str) for p in position[1:])
                     or not _is_uuid(position[3])):
        raise bad_cursor()
    found = await service.search_patients(
        ctx.session, ctx.tenant_id, q=query.q, birth_date=query.birth_date,
        matricule=query.matricule, limit=query.limit + 1,
        after=tuple(position) if position else None)  # type: ignore[arg-type]
    more = len(found) > query.limit
    found = found[: query.limit]
    next_cursor = None
    if more and found:
        rank, last = found[-1]
        next_cursor = encode_cursor([rank, last.family_folded, last.given_folded, str(last.id)])
    page = Page[PatientOut](
        items=[PatientOut.model_validate(p, from_attributes=True) for _, p in found],
        next_cursor=next_cursor)
    return json_response(page)


@endpoint(*DESK, response=PatientOut, etag=True)
async def get_patient(ctx: Ctx) -> Response:
    """A patient's record (the read is audited)."""
    return patient_response(
        await service.read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id")))


@endpoint(Role.clerk, Role.integration, body=PatientPatch, response=PatientOut, etag=True)
async def update_patient(ctx: Ctx) -> Response:
    """Change a patient's record (If-Match required)."""
    patient = await service.read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"))
    require_if_match(ctx.request, patient.version)
    data = await ctx.body(PatientPatch)
    return patient_response(await service.update_patient(ctx.session, ctx.tenant_id, patient,
                                                         data))


@endpoint(Role.clerk, Role.billing, response=Page[PatientOut])
async def list_duplicates(ctx: Ctx) -> Response:
    """Patients that may be the same person."""
    patient = await service.read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"))
    found = await PatientRepository(ctx.session, ctx.tenant_id).duplicates_of(patient)
    return json_response(whole(PatientOut, found))


@endpoint(Role.clerk, Role.billing, body=MergeIn, response=PatientOut, etag=True)
async def merge(ctx: Ctx) -> Response:
    """Merge a duplicate into this patient."""
    data = await ctx.body(MergeIn)
    survivor = await merge_patients(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"),
                                    data.duplicate_id)
    return patient_response(survivor)


@endpoint(*DESK, response=Page[CoverageOut])
async def list_coverages(ctx: Ctx) -> Response:
    """A patient's coverages."""
    patient = await service.read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"))
    coverages = await PatientRepository(ctx.session, ctx.tenant_id).coverages(patient.id)
    return json_response(whole(CoverageOut, coverages))


@endpoint(Role.clerk, Role.billing, Role.integration, idempotent=True, body=CoverageIn,
          response=CoverageOut, status=201)
async def add_coverage(ctx: Ctx) -> Response:
    """Add a coverage to a patient."""
    patient = await service.read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"))
    coverage = await service.add_coverage(ctx.session, ctx.tenant_id, patient,
                                          await ctx.body(CoverageIn))
    return json_response(CoverageOut.model_validate(coverage, from_attributes=True), 201)

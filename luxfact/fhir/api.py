"""/api/v1/fhir: FHIR R4 reads of patients, stays, claims, their answers and invoices.

Every answer is `application/fhir+json`. Each resource names a patient, so each read is
audited as a read of the patient's record (`patient.read`), like the invoice's Bundle.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.billing import service as billing
from luxfact.claims import fhir as claims_fhir
from luxfact.claims.repository import ClaimRepository
from luxfact.fhir import mapping
from luxfact.http.endpoint import Ctx, endpoint
from luxfact.kit.errors import NotFound
from luxfact.patients.repository import PatientRepository
from luxfact.patients.service import read_patient
from luxfact.stays.repository import StayRepository
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.service import tenant_by_id

FHIR_JSON = "application/fhir+json"
READERS = (Role.billing, Role.admin, Role.integration)
# A patient's record and stays: the roles the REST API lets read them. An administrator
# manages users, keys and settings, not patients (docs/security.md).
PATIENT_READERS = (Role.clerk, Role.billing, Role.integration)


class FhirQuery(BaseModel):
    """FHIR's own `_format`, which clients send out of habit: only JSON is served, so only
    its JSON spellings are accepted. Anything else is refused, as on every endpoint."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "application/json", "application/fhir+json"] | None = Field(
        default=None, alias="_format")

    @field_validator("format", mode="before")
    @classmethod
    def _plus(cls, value: object) -> object:
        # `application/fhir+json` written as such in a URL: its `+` is read as a space.
        return value.replace(" ", "+") if isinstance(value, str) else value


def _fhir(resource: dict[str, Any]) -> Response:
    return Response(claims_fhir.dumps(resource), media_type=FHIR_JSON,
                    headers={"Cache-Control": "private, no-store"})


async def _tenant(ctx: Ctx) -> Tenant:
    tenant = await tenant_by_id(ctx.session, ctx.tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


@endpoint(*PATIENT_READERS, query=FhirQuery)
async def read_fhir_patient(ctx: Ctx) -> Response:
    """A patient as a FHIR R4 Patient (the matricule as its official identifier)."""
    patient = await read_patient(ctx.session, ctx.tenant_id, ctx.path_uuid("patient_id"))
    return _fhir(mapping.patient(patient))


@endpoint(*PATIENT_READERS, query=FhirQuery)
async def read_fhir_encounter(ctx: Ctx) -> Response:
    """A stay as a FHIR R4 Encounter."""
    stay = await StayRepository(ctx.session, ctx.tenant_id).get(ctx.path_uuid("stay_id"))
    if stay is None:
        raise NotFound("No such stay.")
    await read_patient(ctx.session, ctx.tenant_id, stay.patient_id)  # audited
    return _fhir(mapping.encounter(stay))


async def _insurer_invoice(ctx: Ctx) -> tuple[Any, list[Any], Any | None]:
    """An insurer invoice (a claim), its lines and its coverage; 404 for anything else."""
    invoice, lines = await billing.get_invoice(ctx.session, ctx.tenant_id,
                                               ctx.path_uuid("invoice_id"))
    if invoice.doc_type != "invoice" or invoice.kind != "insurer":
        raise NotFound("No such claim: only insurer invoices are claims.")
    coverage = None
    if invoice.coverage_id is not None:
        coverage = (await PatientRepository(ctx.session, ctx.tenant_id).coverages_by_id(
            [invoice.coverage_id])).get(invoice.coverage_id)
    await read_patient(ctx.session, ctx.tenant_id, invoice.patient_id)  # audited
    return invoice, lines, coverage


@endpoint(*READERS, query=FhirQuery)
async def read_fhir_claim(ctx: Ctx) -> Response:
    """An insurer invoice as a FHIR R4 Claim; a patient invoice or a credit note is 404."""
    invoice, lines, coverage = await _insurer_invoice(ctx)
    stay = await StayRepository(ctx.session, ctx.tenant_id).get(invoice.stay_id)
    return _fhir(mapping.claim(invoice, lines, stay, coverage, await _tenant(ctx)))


@endpoint(*READERS, query=FhirQuery)
async def read_fhir_claim_response(ctx: Ctx) -> Response:
    """The insurer's answer to a claim, read by the claim's id: 404 until it answered."""
    invoice, lines, coverage = await _insurer_invoice(ctx)
    results = await ClaimRepository(ctx.session, ctx.tenant_id).results_of(invoice.id)
    if not results:
        raise NotFound("The insurer has not answered this claim yet.")
    return _fhir(mapping.claim_response(invoice, lines, results, coverage,
                                        await _tenant(ctx)))


@endpoint(*READERS, query=FhirQuery)
async def read_fhir_invoice(ctx: Ctx) -> Response:
    """An invoice or a credit note as a FHIR R4 Invoice, with its price components."""
    invoice, lines = await billing.get_invoice(ctx.session, ctx.tenant_id,
                                               ctx.path_uuid("invoice_id"))
    await read_patient(ctx.session, ctx.tenant_id, invoice.patient_id)  # audited
    return _fhir(mapping.invoice(invoice, lines, await _tenant(ctx)))

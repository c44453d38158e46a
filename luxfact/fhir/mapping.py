"""Standalone FHIR R4 resources, pure: rows in, FHIR JSON (dicts) out, no I/O.

Claim, ClaimResponse and Patient are those of the invoice's Bundle (luxfact.claims.fhir),
given an `id` and relative references to the other resources this API serves
(`Patient/<id>`, `Encounter/<id>`, `Claim/<id>`); organisations and coverages, which it does
not serve, keep their stable `urn:uuid:` references.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from luxfact.claims import fhir as claims_fhir
from luxfact.claims.fhir import STAY, STAY_KIND, Urls, money

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INVOICE_TYPE = "urn:luxfact:invoice-type"
INVOICE_PART = "urn:luxfact:invoice-line-part"

# A stay's kind as an encounter class (v3 ActCode).
ENCOUNTER_CLASS = {"inpatient": ("IMP", "inpatient encounter"),
                   "day_hospital": ("SS", "short stay"),
                   "outpatient": ("AMB", "ambulatory"),
                   "emergency": ("EMER", "emergency")}
ENCOUNTER_STATUS = {"planned": "planned", "admitted": "in-progress",
                    "discharged": "finished", "closed": "finished", "cancelled": "cancelled"}


def _urls(invoice: Any, tenant: Any, coverage: Any | None) -> Urls:
    urls = Urls(invoice, tenant, coverage)
    urls.patient = f"Patient/{invoice.patient_id}"
    urls.claim = f"Claim/{invoice.id}"
    return urls


def _with_id(resource_id: uuid.UUID, resource: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": resource["resourceType"], "id": str(resource_id),
            **{key: value for key, value in resource.items() if key != "resourceType"}}


def patient(row: Any) -> dict[str, Any]:
    resource = _with_id(row.id, claims_fhir.patient_resource(row))
    if getattr(row, "death_date", None):
        resource["deceasedDateTime"] = row.death_date.isoformat()
    if getattr(row, "merged_into", None):
        # A duplicate merged into another record: no longer in use, and which one replaced
        # it (what the REST API's `merged_into` says).
        resource["active"] = False
        resource["link"] = [{"other": {"reference": f"Patient/{row.merged_into}"},
                             "type": "replaced-by"}]
    return resource


def encounter(stay: Any) -> dict[str, Any]:
    code, display = ENCOUNTER_CLASS.get(stay.kind, ("IMP", "inpatient encounter"))
    resource: dict[str, Any] = {"resourceType": "Encounter", "id": str(stay.id)}
    if stay.external_id:
        resource["identifier"] = [{"system": STAY, "value": stay.external_id}]
    resource["status"] = ENCOUNTER_STATUS.get(stay.state, "unknown")
    resource["class"] = {"system": ACT_CODE, "code": code, "display": display}
    resource["type"] = [claims_fhir._concept(STAY_KIND, stay.kind)]
    resource["subject"] = {"reference": f"Patient/{stay.patient_id}"}
    period = {"start": claims_fhir._moment(stay.admitted_at)}
    if stay.discharged_at is not None:
        period["end"] = claims_fhir._moment(stay.discharged_at)
    resource["period"] = period
    place = " ".join(part for part in (stay.unit, stay.room, stay.bed) if part)
    if place and stay.state == "admitted":  # where the patient is now: only while in
        resource["location"] = [{"location": {"display": place}}]
    return resource


def claim(invoice: Any, lines: Sequence[Any], stay: Any, coverage: Any | None,
          tenant: Any) -> dict[str, Any]:
    urls = _urls(invoice, tenant, coverage)
    resource = _with_id(invoice.id,
                        claims_fhir.claim_resource(invoice, lines, stay, coverage, urls))
    # The stay is an Encounter of this API: FHIR R4 Claim.item.encounter names it.
    for item in resource["item"]:
        item["encounter"] = [{"reference": f"Encounter/{invoice.stay_id}"}]
    return resource


def claim_response(invoice: Any, lines: Sequence[Any], results: Sequence[Any],
                   coverage: Any | None, tenant: Any) -> dict[str, Any]:
    urls = _urls(invoice, tenant, coverage)
    # Read as ClaimResponse/<the claim's id>: one answer per claim, found by its claim.
    return _with_id(invoice.id,
                    claims_fhir.claim_response_resource(invoice, lines, results, urls))


def _price_components(line: Any, currency: str) -> list[dict[str, Any]]:
    """base: quantity × the tariff's price; surcharge (or discount): what the pricing added
    (or took) to reach the line's gross; deduction: the share others pay (the insurer's on
    a patient invoice, the patient's on an insurer invoice), down to what this line bills."""
    base = line.quantity * line.unit_price_cents
    components = [{"type": "base", "amount": money(base, currency)}]
    if line.gross_cents != base:
        kind = "surcharge" if abs(line.gross_cents) > abs(base) else "discount"
        components.append({"type": kind,
                           "amount": money(abs(line.gross_cents - base) * _sign(base),
                                           currency)})
    if line.amount_cents != line.gross_cents:
        components.append({"type": "deduction",
                           "amount": money(abs(line.gross_cents - line.amount_cents)
                                           * _sign(line.gross_cents), currency)})
    return components


def _sign(cents: int) -> int:
    return -1 if cents < 0 else 1


def invoice(row: Any, lines: Sequence[Any], tenant: Any) -> dict[str, Any]:
    """An invoice or a credit note as a FHIR R4 Invoice."""
    currency = row.currency
    owed = row.total_cents - row.paid_cents - row.credited_cents
    # As the REST API's statuses: credited in full with nothing paid is cancelled; nothing
    # owed either way is balanced; owed, or paid too much (a refund due), is still issued.
    if row.doc_type == "invoice" and row.total_cents > 0 and \
            row.credited_cents >= row.total_cents and row.paid_cents == 0:
        status = "cancelled"
    elif row.doc_type == "invoice" and owed == 0:
        status = "balanced"
    else:
        status = "issued"
    provider = f"urn:uuid:{tenant.id}"
    payer = (f"Patient/{row.patient_id}" if row.kind == "patient"
             else f"urn:uuid:{uuid.uuid5(tenant.id, f'payer:{row.payer}')}")
    resource: dict[str, Any] = {
        "resourceType": "Invoice", "id": str(row.id),
        "identifier": [{"system": claims_fhir.INVOICE_NUMBER, "value": row.number,
                        "assigner": {"reference": provider}}],
        "status": status,
        "type": claims_fhir._concept(INVOICE_TYPE, row.doc_type,
                                     "Invoice" if row.doc_type == "invoice"
                                     else "Credit note"),
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "recipient": {"reference": payer, "display": row.payer},
        "date": claims_fhir._moment(row.issued_at),
        "issuer": {"reference": provider, "display": tenant.legal_name},
        "lineItem": [{
            "sequence": line.seq,
            "chargeItemCodeableConcept": claims_fhir._concept(
                claims_fhir.NOMENCLATURE, line.code,
                line.label_fr if row.language != "de" else line.label_de),
            "priceComponent": _price_components(line, currency)} for line in lines],
        "totalGross": money(row.gross_cents, currency),
        "totalNet": money(row.total_cents, currency),
    }
    notes = []
    if row.credited_invoice_id is not None:
        notes.append({"text": f"Credits Invoice/{row.credited_invoice_id}"
                              + (f": {row.reason}" if row.reason else "")})
    if row.due_on is not None:
        resource["paymentTerms"] = f"Due on {row.due_on.isoformat()}, reference {row.reference}"
    if notes:
        resource["note"] = notes
    return resource

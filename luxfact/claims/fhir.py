"""The FHIR view of an insurer invoice: a Bundle of its Claim and, once the insurer has
answered, its ClaimResponse. Pure mapping: rows in, FHIR JSON (dicts) out, no I/O.

The resources follow FHIR R4 (4.0.1); the tests validate them with the R4B models of
`fhir.resources`, the closest it offers (R4B left Claim, ClaimResponse, Coverage, Patient,
Organization and Bundle as they were in R4).

Amounts are Decimals built from integer cents, and `dumps` writes them as JSON numbers with
their two decimals (`19.30`): FHIR decimals keep their precision, and a float would not.
"""

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from luxfact.kit.money import from_cents
from luxfact.kit.time import LUXEMBOURG

# No national FHIR naming system for these is published (Luxembourg has no public FHIR
# core guide to point at): URNs of our own, stable, and documented in docs/claims.md.
MATRICULE = "urn:luxfact:matricule"
PROVIDER_CODE = "urn:luxfact:cns-provider-code"
PAYER = "urn:luxfact:payer"
MEMBER_NUMBER = "urn:luxfact:member-number"
ACCIDENT_NUMBER = "urn:luxfact:accident-number"
COVERAGE_KIND = "urn:luxfact:coverage-kind"
INVOICE_NUMBER = "urn:luxfact:invoice-number"
NOMENCLATURE = "urn:luxfact:cns-nomenclature"
STAY = "urn:luxfact:stay"
STAY_KIND = "urn:luxfact:stay-kind"
ANOMALY = "urn:luxfact:claims:anomaly"
INSURER_INVOICE = "urn:luxfact:claims:insurer-invoice"

CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
INFORMATION = "http://terminology.hl7.org/CodeSystem/claiminformationcategory"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
ORGANIZATION_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"

GENDER = {"F": "female", "M": "male", "X": "other"}
# Stays that put the patient in a bed: "hospitalized" in FHIR's words; the others are "info".
BEDDED = {"inpatient", "day_hospital"}


def _url(value: uuid.UUID) -> str:
    return f"urn:uuid:{value}"


def _ref(url: str) -> dict[str, Any]:
    return {"reference": url}


def _coding(system: str, code: str, display: str = "") -> dict[str, Any]:
    # FHIR forbids empty strings and strings of only spaces: a display is left out rather
    # than sent blank (the insurer's motif may be a lone non-breaking space).
    display = " ".join(display.split())
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _moment(value: datetime) -> str:
    # Stored in UTC; a reader in the hospital expects its own clock, with the offset.
    return value.astimezone(LUXEMBOURG).isoformat(timespec="seconds")


def money(cents: int, currency: str = "EUR") -> dict[str, Any]:
    return {"value": from_cents(cents), "currency": currency}


class Urls:
    """The fullUrl of every resource of one invoice's Bundle.

    Rows with an id keep it (the same patient is the same urn in every Bundle); the rest
    are derived from the invoice or the hospital, so a Bundle read twice is the same."""

    def __init__(self, invoice: Any, tenant: Any, coverage: Any | None) -> None:
        self.claim = _url(invoice.id)
        self.response = _url(uuid.uuid5(invoice.id, "ClaimResponse"))
        self.patient = _url(invoice.patient_id)
        self.provider = _url(tenant.id)
        self.insurer = _url(uuid.uuid5(tenant.id, f"payer:{invoice.payer}"))
        self.coverage = _url(coverage.id if coverage is not None
                             else uuid.uuid5(invoice.id, "Coverage"))


# ---------------------------------------------------------------------------- parties


def patient_resource(patient: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient"}
    if patient.matricule:
        resource["identifier"] = [{"use": "official", "system": MATRICULE,
                                   "value": patient.matricule}]
    name: dict[str, Any] = {"family": patient.family_name}
    if patient.given_name:
        name["given"] = [patient.given_name]
    resource["name"] = [name]
    if patient.sex in GENDER:
        resource["gender"] = GENDER[patient.sex]
    resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def provider_resource(tenant: Any) -> dict[str, Any]:
    return {"resourceType": "Organization",
            "identifier": [{"system": PROVIDER_CODE, "value": tenant.cns_provider_code}],
            "type": [_concept(ORGANIZATION_TYPE, "prov", "Healthcare Provider")],
            "name": tenant.legal_name}


def insurer_resource(payer: str) -> dict[str, Any]:
    return {"resourceType": "Organization",
            "identifier": [{"system": PAYER, "value": payer}],
            "type": [_concept(ORGANIZATION_TYPE, "ins", "Insurance Company")],
            "name": payer}


def _member(coverage: Any | None) -> dict[str, Any] | None:
    if coverage is None or not coverage.member_number:
        return None
    return {"system": MEMBER_NUMBER, "value": coverage.member_number}


def coverage_resource(coverage: Any | None, urls: Urls) -> dict[str, Any]:
    """The coverage the invoice was billed under; without one (an invoice from before
    coverages were recorded), only who is covered and who pays, which FHIR requires."""
    resource: dict[str, Any] = {"resourceType": "Coverage"}
    identifiers = []
    if (member := _member(coverage)) is not None:
        identifiers.append(member)
    if coverage is not None and coverage.accident_number:
        identifiers.append({"system": ACCIDENT_NUMBER, "value": coverage.accident_number})
    if identifiers:
        resource["identifier"] = identifiers
    resource["status"] = "active"
    if coverage is not None:
        resource["type"] = _concept(COVERAGE_KIND, coverage.kind)
    if member is not None:
        resource["subscriberId"] = member["value"]
    resource["beneficiary"] = _ref(urls.patient)
    if coverage is not None:
        period = {"start": coverage.valid_from.isoformat()}
        if coverage.valid_to is not None:
            period["end"] = coverage.valid_to.isoformat()
        resource["period"] = period
    resource["payor"] = [_ref(urls.insurer)]
    return resource


# ------------------------------------------------------------------------------ claim


def _served(line: Any) -> dict[str, Any]:
    # Acts are on one day; a line spanning days (none is claimed today) keeps its span.
    if line.last_day == line.day:
        return {"servicedDate": line.day.isoformat()}
    return {"servicedPeriod": {"start": line.day.isoformat(), "end": line.last_day.isoformat()}}


def claim_item(line: Any, currency: str) -> dict[str, Any]:
    # unitPrice is the tariff's price; net is what this invoice asks of the insurer for the
    # line, which is less than quantity × unitPrice where the patient pays a share.
    return {"sequence": line.seq,
            "productOrService": _concept(NOMENCLATURE, line.code, line.label_fr),
            **_served(line),
            "quantity": {"value": line.quantity},
            "unitPrice": money(line.unit_price_cents, currency),
            "net": money(line.amount_cents, currency)}


def _stay_information(stay: Any) -> dict[str, Any]:
    period = {"start": _moment(stay.admitted_at)}
    if stay.discharged_at is not None:
        period["end"] = _moment(stay.discharged_at)
    category = (_concept(INFORMATION, "hospitalized", "Hospitalized") if stay.kind in BEDDED
                else _concept(INFORMATION, "info", "Information"))
    return {"sequence": 1,
            "category": category,
            "code": _concept(STAY_KIND, stay.kind),
            "timingPeriod": period,
            # The claim file's stay reference: the hospital system's visit number, if any.
            "valueReference": {"identifier": {"system": STAY,
                                              "value": stay.external_id or str(stay.id)}}}


def claim_resource(invoice: Any, lines: Sequence[Any], stay: Any, coverage: Any | None,
                   urls: Urls) -> dict[str, Any]:
    insurance: dict[str, Any] = {"sequence": 1, "focal": True,
                                 "coverage": _ref(urls.coverage)}
    if (member := _member(coverage)) is not None:
        insurance["coverage"]["identifier"] = member
    return {
        "resourceType": "Claim",
        # Invoice numbers are unique within a hospital only: the assigner says whose.
        "identifier": [{"system": INVOICE_NUMBER, "value": invoice.number,
                        "assigner": _ref(urls.provider)}],
        "status": "active",
        "type": _concept(CLAIM_TYPE, "institutional", "Institutional"),
        "use": "claim",
        "patient": _ref(urls.patient),
        "billablePeriod": {"start": invoice.period_from.isoformat(),
                           "end": invoice.period_to.isoformat()},
        "created": invoice.issued_on.isoformat(),
        "provider": _ref(urls.provider),
        "priority": _concept(PRIORITY, "normal", "Normal"),
        "insurer": _ref(urls.insurer),
        "supportingInfo": [_stay_information(stay)],
        "insurance": [insurance],
        "item": [claim_item(line, invoice.currency) for line in lines],
        "total": money(invoice.total_cents, invoice.currency),
    }


# --------------------------------------------------------------------- claim response


def outcome(lines: Sequence[Any], results: Sequence[Any]) -> str:
    """complete: every line answered and paid in full; error: nothing paid at all (every
    line rejected or reversed); partial: anything in between, or lines not answered yet."""
    if sum(result.paid_cents for result in results) <= 0:
        return "error"
    status = {result.seq: result.status for result in results}
    if all(status.get(line.seq) == "paid" for line in lines):
        return "complete"
    return "partial"


def _anomaly_text(anomaly: dict[str, str]) -> str:
    label = anomaly.get("label") or anomaly.get("motif") or ""
    head = " ".join(part for part in (anomaly.get("type", ""), anomaly.get("code", "")) if part)
    return f"{head}: {label}" if head and label else head or label or "anomaly"


def _adjudication(category: str, cents: int, currency: str) -> dict[str, Any]:
    return {"category": _concept(ADJUDICATION, category), "amount": money(cents, currency)}


def claim_response_resource(invoice: Any, lines: Sequence[Any], results: Sequence[Any],
                            urls: Urls) -> dict[str, Any]:
    currency = invoice.currency
    ordered = sorted(results, key=lambda result: result.seq)
    notes: dict[tuple[str, str, str], int] = {}
    items, errors = [], []
    for result in ordered:
        item: dict[str, Any] = {"itemSequence": result.seq, "adjudication": [
            _adjudication("submitted", result.claimed_cents, currency),
            _adjudication("benefit", result.paid_cents, currency)]}
        numbers = []
        for anomaly in result.anomalies:
            code = anomaly.get("code", "")
            label = anomaly.get("label") or anomaly.get("motif") or ""
            # An invoice-level anomaly is repeated on each of its lines: one note for all.
            key = (anomaly.get("type", ""), code, label)
            number = notes.setdefault(key, len(notes) + 1)
            if number not in numbers:
                numbers.append(number)
            if code:
                errors.append({"itemSequence": result.seq,
                               "code": _concept(ANOMALY, code, label)})
        if numbers:
            item["noteNumber"] = numbers
        items.append(item)
    claimed = sum(result.claimed_cents for result in ordered)
    paid = sum(result.paid_cents for result in ordered)
    answer = outcome(lines, ordered)
    resource: dict[str, Any] = {"resourceType": "ClaimResponse"}
    insurer_ids = sorted({result.insurer_invoice_id for result in ordered
                          if result.insurer_invoice_id})
    if insurer_ids:
        resource["identifier"] = [{"system": INSURER_INVOICE, "value": value}
                                  for value in insurer_ids]
    resource.update({
        "status": "active",
        "type": _concept(CLAIM_TYPE, "institutional", "Institutional"),
        "use": "claim",
        "patient": _ref(urls.patient),
        # When the answer was recorded here: the return file's own date is not kept.
        "created": _moment(max(result.updated_at for result in ordered)),
        "insurer": _ref(urls.insurer),
        "requestor": _ref(urls.provider),
        "request": _ref(urls.claim),
        "outcome": answer,
        "item": items,
        "total": [_adjudication("submitted", claimed, currency),
                  _adjudication("benefit", paid, currency)],
    })
    if paid > 0:
        resource["payment"] = {
            "type": _concept(PAYMENT_TYPE, "complete" if answer == "complete" else "partial"),
            "amount": money(paid, currency)}
    if notes:
        resource["processNote"] = [
            {"number": number, "type": "display",
             "text": _anomaly_text({"type": kind, "code": code, "label": label})}
            for (kind, code, label), number in notes.items()]
    if errors:
        resource["error"] = errors
    return resource


# ----------------------------------------------------------------------------- bundle


def bundle(invoice: Any, lines: Sequence[Any], patient: Any, stay: Any, coverage: Any | None,
           tenant: Any, results: Iterable[Any] = ()) -> dict[str, Any]:
    """The Bundle (type collection) of an issued insurer invoice: Patient, provider and
    insurer Organizations, Coverage, Claim, and the ClaimResponse when `results` (the
    invoice's rows of claim_line_results) is not empty. References are the fullUrls."""
    urls = Urls(invoice, tenant, coverage)
    entries = [
        (urls.patient, patient_resource(patient)),
        (urls.provider, provider_resource(tenant)),
        (urls.insurer, insurer_resource(invoice.payer)),
        (urls.coverage, coverage_resource(coverage, urls)),
        (urls.claim, claim_resource(invoice, lines, stay, coverage, urls)),
    ]
    answered = list(results)
    if answered:
        entries.append((urls.response,
                        claim_response_resource(invoice, lines, answered, urls)))
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries]}


# ------------------------------------------------------------------------------- JSON


def dumps(resource: Any) -> bytes:
    """FHIR JSON (UTF-8) with every Decimal written as the number it is, `19.30` included:
    the standard encoder knows no Decimal, and going through float would lose the zero."""
    return _encode(resource).encode()


def _encode(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(key), ensure_ascii=False)}:{_encode(item)}"
                              for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a FHIR decimal")
        return format(value, "f")
    if isinstance(value, date | datetime):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)

"""The FHIR view of an insurer invoice: a Bundle of its Claim and, once answered, its
ClaimResponse, validated with the R4B models of fhir.resources (the closest to R4 it has)."""

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse

from luxfact.auth.roles import Role
from luxfact.claims import fhir
from luxfact.claims.simulate import REJECTIONS
from tests.claims.test_batches import billed
from tests.claims.test_returns import answer_with_rejections, post_return, sent_batch
from tests.conftest import Hospital, Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")

FHIR_JSON = "application/fhir+json"
PROBLEM = "application/problem+json"


def _url(invoice_id: str) -> str:
    return f"/api/v1/invoices/{invoice_id}/fhir"


async def _fhir(client: httpx.AsyncClient, hospital: Hospital, invoice_id: str,
                role: Role = Role.billing) -> httpx.Response:
    return await client.get(_url(invoice_id), headers=hospital.auth(role))


def _read(response: httpx.Response) -> tuple[Bundle, dict[str, Any]]:
    """The Bundle validated by fhir.resources, and the same JSON with exact decimals."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    return (Bundle.model_validate_json(response.content),
            json.loads(response.content, parse_float=Decimal))


def _resources(raw: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(entry["fullUrl"], entry["resource"]) for entry in raw["entry"]
            if entry["resource"]["resourceType"] == kind]


def _one(raw: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = _resources(raw, kind)
    assert len(found) == 1, (kind, found)
    return found[0]


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [ref for key, item in value.items()
                for ref in ([item] if key == "reference" else _references(item))]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


async def _patient_reads(client: httpx.AsyncClient, hospital: Hospital, patient_id: str) -> int:
    events = (await client.get(f"/api/v1/audit-events?object_id={patient_id}",
                               headers=hospital.auth(Role.admin))).json()["items"]
    return sum(event["action"] == "patient.read" for event in events)


def _is_money(value: Decimal) -> bool:
    return isinstance(value, Decimal) and value.as_tuple().exponent == -2


async def test_the_claim_is_the_insurer_invoice(client: httpx.AsyncClient,
                                               hospitals: Hospitals) -> None:
    invoice = (await billed(client, hospitals.a, 1))[0]
    assert (invoice["kind"], invoice["doc_type"]) == ("insurer", "invoice")
    shown = (await client.get(f"/api/v1/invoices/{invoice['id']}",
                              headers=hospitals.a.auth(Role.billing))).json()
    before = await _patient_reads(client, hospitals.a, shown["patient_id"])
    bundle, raw = _read(await _fhir(client, hospitals.a, invoice["id"]))
    assert bundle.type == "collection"
    assert [e.resource.get_resource_type() for e in bundle.entry] == [
        "Patient", "Organization", "Organization", "Coverage", "Claim"]  # no answer yet
    urls = [entry["fullUrl"] for entry in raw["entry"]]
    assert all(url.startswith("urn:uuid:") for url in urls) and len(set(urls)) == len(urls)
    # Every reference points into the Bundle.
    assert set(_references(raw)) <= set(urls)

    claim_url, claim = _one(raw, "Claim")
    Claim.model_validate(claim)
    assert claim_url == f"urn:uuid:{invoice['id']}"
    assert (claim["status"], claim["use"]) == ("active", "claim")
    assert claim["type"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional",
        "display": "Institutional"}
    assert claim["priority"]["coding"][0]["code"] == "normal"
    assert claim["identifier"][0]["value"] == shown["number"]
    assert claim["created"] == shown["issued_on"]
    assert claim["billablePeriod"] == {"start": shown["period_from"],
                                       "end": shown["period_to"]}
    assert claim["insurance"] == [{"sequence": 1, "focal": True,
                                   "coverage": {"reference": _one(raw, "Coverage")[0]}}]
    # Items and total: exactly the invoice's lines, amounts to the cent, as 2-decimal numbers.
    assert [(item["sequence"], item["productOrService"]["coding"][0]["system"],
             item["productOrService"]["coding"][0]["code"],
             item["productOrService"]["coding"][0]["display"], item["servicedDate"],
             item["quantity"]["value"], item["unitPrice"]["value"], item["net"]["value"])
            for item in claim["item"]] == [
        (line["seq"], fhir.NOMENCLATURE, line["code"], line["label_fr"], line["day"],
         line["quantity"], Decimal(line["unit_price"]), Decimal(line["amount"]))
        for line in shown["lines"]]
    assert len(claim["item"]) == len(shown["lines"]) == 2
    assert claim["total"] == {"value": Decimal(shown["total"]), "currency": "EUR"}
    assert sum(item["net"]["value"] for item in claim["item"]) == claim["total"]["value"]
    assert all(_is_money(item[name]["value"]) for item in claim["item"]
               for name in ("unitPrice", "net"))
    assert _is_money(claim["total"]["value"])
    # Who is who: the patient by matricule, the hospital by its CNS code, the insurer by name.
    patient_url, patient = _one(raw, "Patient")
    assert claim["patient"] == {"reference": patient_url}
    assert patient_url == f"urn:uuid:{shown['patient_id']}"
    record = (await client.get(f"/api/v1/patients/{shown['patient_id']}",
                               headers=hospitals.a.auth(Role.billing))).json()
    assert patient["identifier"] == [{"use": "official", "system": fhir.MATRICULE,
                                      "value": record["matricule"]}]
    organizations = dict(_resources(raw, "Organization"))
    provider, insurer = (organizations[claim[name]["reference"]]
                         for name in ("provider", "insurer"))
    assert provider["identifier"] == [{"system": fhir.PROVIDER_CODE, "value": "90000017"}]
    assert insurer["name"] == "CNS" == shown["payer"]

    # The same Bundle read again is the same (stable urns), for every reader role.
    for role in (Role.admin, Role.integration):
        again = await _fhir(client, hospitals.a, invoice["id"], role)
        assert again.status_code == 200 and again.content == (
            await _fhir(client, hospitals.a, invoice["id"])).content
        assert again.headers["content-type"] == FHIR_JSON
    assert (await _fhir(client, hospitals.a, invoice["id"], Role.clerk)).status_code == 403

    # The Bundle names the patient: each of the 5 views above is a read in the audit trail
    # (plus the GET of the patient's record), and the trail holds no data of the patient.
    assert await _patient_reads(client, hospitals.a, shown["patient_id"]) == before + 6
    events = (await client.get(f"/api/v1/audit-events?object_id={shown['patient_id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert record["matricule"] not in str(events)


async def test_the_claim_response_is_the_insurers_answer(client: httpx.AsyncClient,
                                                         hospitals: Hospitals) -> None:
    batch, claim_file = await sent_batch(client, hospitals.a, 3)
    assert (await post_return(client, hospitals.a, batch,
                              answer_with_rejections(claim_file))).status_code == 200
    headers = hospitals.a.auth(Role.billing)
    answered: dict[str, dict[int, dict]] = {}
    for status in ("paid", "partly_paid", "rejected"):
        worklist = (await client.get(f"/api/v1/claim-lines?status={status}",
                                     headers=headers)).json()["items"]
        for line in worklist:
            answered.setdefault(line["invoice_id"], {})[line["line"]] = line
    assert len(answered) == 3
    outcomes, rejected_codes = set(), set()
    anomaly_codes = {code for code, _ in REJECTIONS}
    for invoice_id, lines in answered.items():
        bundle, raw = _read(await _fhir(client, hospitals.a, invoice_id))
        assert bundle.entry[-1].resource.get_resource_type() == "ClaimResponse"
        claim_url, claim = _one(raw, "Claim")
        _, response = _one(raw, "ClaimResponse")
        ClaimResponse.model_validate(response)
        assert response["request"] == {"reference": claim_url}
        assert response["patient"] == claim["patient"]
        assert response["insurer"] == claim["insurer"]
        assert (response["status"], response["use"]) == ("active", "claim")
        items = {item["itemSequence"]: item for item in response["item"]}
        assert set(items) == set(lines) == {item["sequence"] for item in claim["item"]}
        errors = {}
        for error in response.get("error", []):
            errors.setdefault(error["itemSequence"], []).append(error["code"]["coding"][0])
        for seq, line in lines.items():
            amounts = {a["category"]["coding"][0]["code"]: a["amount"]["value"]
                       for a in items[seq]["adjudication"]}
            assert amounts == {"submitted": Decimal(line["claimed"]),
                               "benefit": Decimal(line["paid"])}
            assert all(_is_money(value) for value in amounts.values())
            if line["status"] == "rejected":
                rejected_codes.add(line["anomalies"][0]["code"])
                assert [(c["system"], c["code"]) for c in errors[seq]] == [
                    (fhir.ANOMALY, a["code"]) for a in line["anomalies"]]
                assert errors[seq][0]["code"] in anomaly_codes
                notes = {n["number"]: n["text"] for n in response["processNote"]}
                assert all(line["anomalies"][0]["code"] in notes[n]
                           for n in items[seq]["noteNumber"])
            elif line["status"] == "paid":
                assert seq not in errors and "noteNumber" not in items[seq]
        paid = sum(Decimal(line["paid"]) for line in lines.values())
        statuses = {line["status"] for line in lines.values()}
        expected = ("error" if paid == 0 else "complete" if statuses == {"paid"}
                    else "partial")
        assert response["outcome"] == expected
        outcomes.add(expected)
        if paid:
            assert response["payment"]["amount"] == {"value": paid, "currency": "EUR"}
        else:
            assert "payment" not in response
        assert {t["category"]["coding"][0]["code"]: t["amount"]["value"]
                for t in response["total"]} == {
            "submitted": sum(Decimal(line["claimed"]) for line in lines.values()),
            "benefit": paid}
    assert rejected_codes  # the answer rejected at least one line
    assert outcomes & {"partial", "error"}


async def test_only_insurer_invoices_have_a_fhir_view(client: httpx.AsyncClient,
                                                      hospitals: Hospitals) -> None:
    from tests.billing.test_invoices import bill, stay_with_acts

    stay = await stay_with_acts(client, hospitals.a)
    insurer, patient = (await bill(client, hospitals.a, stay)).json()["invoices"]
    before = await _patient_reads(client, hospitals.a, stay["patient_id"])
    assert (insurer["kind"], patient["kind"]) == ("insurer", "patient")
    refused = await _fhir(client, hospitals.a, patient["id"])
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert "insurer" in refused.json()["detail"]
    headers = hospitals.a.auth(Role.billing)
    note = await client.post(f"/api/v1/invoices/{insurer['id']}/credit-notes",
                             json={"reason": "erreur de code"}, headers=headers)
    assert note.status_code == 201, note.text
    assert (await _fhir(client, hospitals.a, note.json()["id"])).status_code == 409
    # A refused view reads no patient: nothing audited.
    assert await _patient_reads(client, hospitals.a, stay["patient_id"]) == before


async def test_another_hospital_gets_404(client: httpx.AsyncClient,
                                         hospitals: Hospitals) -> None:
    invoice = (await billed(client, hospitals.a, 1))[0]
    for hospital, invoice_id in ((hospitals.b, invoice["id"]),
                                 (hospitals.a, str(uuid.uuid4())),
                                 (hospitals.a, "not-a-uuid")):
        missing = await _fhir(client, hospital, invoice_id)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith(PROBLEM)
        assert "matricule" not in missing.text


# ------------------------------------------------------------------- the mapping alone


def _rows(*statuses: tuple[str, int, int]) -> tuple[Any, list[Any], list[Any]]:
    """An invoice of one line per (status, claimed, paid), with its answered results."""
    invoice = SimpleNamespace(
        id=uuid.uuid4(), patient_id=uuid.uuid4(), payer="CNS", number="T-2026-000001",
        currency="EUR", period_from=date(2026, 3, 1), period_to=date(2026, 3, 5),
        issued_on=date(2026, 3, 6), total_cents=sum(c for _, c, _ in statuses))
    lines = [SimpleNamespace(seq=n, code="N101", label_fr="Soins", day=date(2026, 3, 2),
                             last_day=date(2026, 3, 2), quantity=1, unit_price_cents=claimed,
                             amount_cents=claimed)
             for n, (_, claimed, _) in enumerate(statuses, 1)]
    results = [SimpleNamespace(
        seq=n, status=status, claimed_cents=claimed, paid_cents=paid,
        insurer_invoice_id="UTA-1", updated_at=datetime(2026, 4, 1, 8, tzinfo=UTC),
        anomalies=[] if status == "paid" else [
            {"type": "REJET", "code": "ACTE_INCONNU", "motif": "Code N101 inconnu."},
            {"type": "INFORMATION", "code": "AUTRE", "label": ""}])
        for n, (status, claimed, paid) in enumerate(statuses, 1)]
    return invoice, lines, results


def _bundle(invoice: Any, lines: list[Any], results: list[Any],
            coverage: Any | None = None) -> dict[str, Any]:
    patient = SimpleNamespace(matricule=None, family_name="Muller", given_name="",
                              sex="X", birth_date=date(1980, 1, 1))
    stay = SimpleNamespace(id=uuid.uuid4(), kind="inpatient", external_id=None,
                           admitted_at=datetime(2026, 3, 1, 9, tzinfo=UTC), discharged_at=None)
    tenant = SimpleNamespace(id=uuid.uuid4(), legal_name="Hôpital", cns_provider_code="90000017")
    raw = fhir.bundle(invoice, lines, patient, stay, coverage, tenant, results)
    Bundle.model_validate_json(fhir.dumps(raw))
    return json.loads(fhir.dumps(raw), parse_float=Decimal)


@pytest.mark.parametrize(("statuses", "outcome"), [
    ([("paid", 1930, 1930), ("paid", 984, 984)], "complete"),
    ([("paid", 1930, 1930), ("partly_paid", 984, 787)], "partial"),
    ([("rejected", 1930, 0), ("reversed", 984, 0)], "error"),
])
def test_outcome_follows_what_was_paid(statuses: list[tuple[str, int, int]],
                                       outcome: str) -> None:
    invoice, lines, results = _rows(*statuses)
    raw = _bundle(invoice, lines, results)
    _, response = _one(raw, "ClaimResponse")
    assert response["outcome"] == outcome
    paid = sum(p for _, _, p in statuses)
    assert ("payment" in response) == (paid > 0)
    # The invoice-level anomaly repeated on several lines is one note, pointed at by each.
    if outcome != "complete":
        assert [n["text"] for n in response["processNote"]] == [
            "REJET ACTE_INCONNU: Code N101 inconnu.", "INFORMATION AUTRE"]


def test_an_unanswered_line_makes_the_outcome_partial() -> None:
    invoice, lines, results = _rows(("paid", 1930, 1930), ("paid", 984, 984))
    _, response = _one(_bundle(invoice, lines, results[:1]), "ClaimResponse")
    assert response["outcome"] == "partial" and len(response["item"]) == 1


def test_coverage_carries_the_member_number_and_amounts_stay_exact() -> None:
    invoice, lines, _ = _rows(("paid", 10, 10), ("paid", 20, 20))
    coverage = SimpleNamespace(id=uuid.uuid4(), kind="statutory", member_number="M-42",
                               accident_number="U123456789", valid_from=date(2020, 1, 1),
                               valid_to=None)
    raw = _bundle(invoice, lines, [], coverage)
    assert not _resources(raw, "ClaimResponse")
    coverage_url, resource = _one(raw, "Coverage")
    assert coverage_url == f"urn:uuid:{coverage.id}"
    assert resource["subscriberId"] == "M-42"
    assert resource["identifier"] == [
        {"system": fhir.MEMBER_NUMBER, "value": "M-42"},
        {"system": fhir.ACCIDENT_NUMBER, "value": "U123456789"}]
    _, claim = _one(raw, "Claim")
    assert claim["insurance"][0]["coverage"] == {
        "reference": coverage_url, "identifier": {"system": fhir.MEMBER_NUMBER, "value": "M-42"}}
    # 0.10 + 0.20 is 0.30 to the cent, written with its two decimals.
    assert b'"total":{"value":0.30,"currency":"EUR"}' in fhir.dumps(fhir.bundle(
        invoice, lines, SimpleNamespace(matricule="1990093012358", family_name="A",
                                        given_name="B", sex="F", birth_date=date(1990, 9, 30)),
        SimpleNamespace(id=uuid.uuid4(), kind="inpatient", external_id="V1",
                        admitted_at=datetime(2026, 3, 1, tzinfo=UTC),
                        discharged_at=datetime(2026, 3, 5, tzinfo=UTC)),
        coverage, SimpleNamespace(id=uuid.uuid4(), legal_name="H",
                                  cns_provider_code="90000017")))

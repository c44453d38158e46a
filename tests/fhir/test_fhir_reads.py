"""FHIR R4 reads: every answer validated with the R4B models of fhir.resources, and its
values checked against the REST API's JSON; other hospitals and unknown ids get 404."""

import json
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.claim import Claim
from fhir.resources.R4B.claimresponse import ClaimResponse
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.invoice import Invoice
from fhir.resources.R4B.patient import Patient

from luxfact.auth.roles import Role
from luxfact.billing import service
from luxfact.claims import fhir as claims_fhir
from tests.billing.test_invoices import bill, stay_with_acts
from tests.claims.test_returns import answer_with_rejections, post_return, sent_batch
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient

pytestmark = pytest.mark.usefixtures("catalogue")

FHIR_JSON = "application/fhir+json"
MODELS = {"Patient": Patient, "Encounter": Encounter, "Claim": Claim,
          "ClaimResponse": ClaimResponse, "Invoice": Invoice}


async def read(client: httpx.AsyncClient, hospital: Hospital, kind: str, id_: str,
               role: Role = Role.billing) -> dict[str, Any]:
    response = await client.get(f"/api/v1/fhir/{kind}/{id_}", headers=hospital.auth(role))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == FHIR_JSON
    MODELS[kind].model_validate_json(response.content)  # valid FHIR, or it raises
    resource = json.loads(response.content, parse_float=Decimal)
    assert resource["resourceType"] == kind and resource["id"] == id_
    return resource


async def rest(client: httpx.AsyncClient, hospital: Hospital, path: str,
               role: Role = Role.billing) -> dict[str, Any]:
    response = await client.get(f"/api/v1/{path}", headers=hospital.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


def money(value: dict[str, Any]) -> str:
    assert value["currency"] == "EUR"
    return format(value["value"], "f")


async def patient_reads(client: httpx.AsyncClient, hospital: Hospital, patient_id: str) -> int:
    events = (await client.get(f"/api/v1/audit-events?object_id={patient_id}&limit=200",
                               headers=hospital.auth(Role.admin))).json()["items"]
    return sum(event["action"] == "patient.read" for event in events)


async def test_patient_and_encounter(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    patient = await rest(client, hospitals.a, f"patients/{stay['patient_id']}", Role.clerk)
    before = await patient_reads(client, hospitals.a, patient["id"])
    fhir_patient = await read(client, hospitals.a, "Patient", patient["id"], Role.clerk)
    assert fhir_patient["identifier"][0]["value"] == patient["matricule"]
    assert fhir_patient["name"][0]["family"] == patient["family_name"]
    assert fhir_patient["birthDate"] == patient["birth_date"]
    assert await patient_reads(client, hospitals.a, patient["id"]) == before + 1  # audited

    fresh = await rest(client, hospitals.a, f"stays/{stay['id']}", Role.clerk)
    encounter = await read(client, hospitals.a, "Encounter", stay["id"], Role.clerk)
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    assert encounter["status"] == {"discharged": "finished", "admitted": "in-progress",
                                   "closed": "finished"}[fresh["state"]]
    assert encounter["class"]["code"] == "IMP"
    assert encounter["period"]["start"].startswith(fresh["admitted_at"][:10])
    if fresh["discharged_at"]:
        assert "end" in encounter["period"]
    for role in (Role.billing, Role.integration):
        await read(client, hospitals.a, "Encounter", stay["id"], role)
    # As the REST API: an administrator reads no patient record, nor a stay.
    for kind, id_ in (("Patient", patient["id"]), ("Encounter", stay["id"])):
        denied = await client.get(f"/api/v1/fhir/{kind}/{id_}",
                                  headers=hospitals.a.auth(Role.admin))
        assert denied.status_code == 403


async def test_claim_and_invoice_match_the_rest_api(client: httpx.AsyncClient,
                                                    hospitals: Hospitals) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    issued = await bill(client, hospitals.a, stay)
    assert issued.status_code == 201, issued.text
    for invoice in issued.json()["invoices"]:
        rest_invoice = await rest(client, hospitals.a, f"invoices/{invoice['id']}")
        fhir_invoice = await read(client, hospitals.a, "Invoice", invoice["id"])
        assert fhir_invoice["identifier"][0]["value"] == rest_invoice["number"]
        assert fhir_invoice["status"] == "issued"
        assert fhir_invoice["subject"]["reference"] == f"Patient/{rest_invoice['patient_id']}"
        assert money(fhir_invoice["totalNet"]) == rest_invoice["total"]
        assert money(fhir_invoice["totalGross"]) == rest_invoice["gross"]
        assert len(fhir_invoice["lineItem"]) == len(rest_invoice["lines"])
        for item, line in zip(fhir_invoice["lineItem"], rest_invoice["lines"], strict=True):
            assert item["sequence"] == line["seq"]
            coding = item["chargeItemCodeableConcept"]["coding"][0]
            assert coding["code"] == line["code"]
            parts = {c["type"]: Decimal(money(c["amount"])) for c in item["priceComponent"]}
            assert parts["base"] == Decimal(line["unit_price"]) * line["quantity"]
            gross = parts["base"] + parts.get("surcharge", 0) - parts.get("discount", 0)
            assert gross == Decimal(line["gross"])
            assert gross - parts.get("deduction", 0) == Decimal(line["amount"])
        if rest_invoice["kind"] == "patient":
            with_claim = await client.get(f"/api/v1/fhir/Claim/{invoice['id']}",
                                          headers=hospitals.a.auth(Role.billing))
            assert with_claim.status_code == 404  # a patient invoice is no claim
            continue
        claim = await read(client, hospitals.a, "Claim", invoice["id"])
        assert claim["identifier"][0]["value"] == rest_invoice["number"]
        assert claim["patient"]["reference"] == f"Patient/{rest_invoice['patient_id']}"
        assert money(claim["total"]) == rest_invoice["total"]
        assert [i["productOrService"]["coding"][0]["code"] for i in claim["item"]] == [
            line["code"] for line in rest_invoice["lines"]]
        assert [money(i["net"]) for i in claim["item"]] == [
            line["amount"] for line in rest_invoice["lines"]]
        assert {i["encounter"][0]["reference"] for i in claim["item"]} == {
            f"Encounter/{stay['id']}"}
        unanswered = await client.get(f"/api/v1/fhir/ClaimResponse/{invoice['id']}",
                                      headers=hospitals.a.auth(Role.billing))
        assert unanswered.status_code == 404
        assert unanswered.headers["content-type"] == "application/problem+json"

    # A credit note is an Invoice too; the credited invoice reads `cancelled`.
    first = issued.json()["invoices"][0]
    credit = await client.post(f"/api/v1/invoices/{first['id']}/credit-notes",
                               json={"reason": "wrong coverage"},
                               headers=hospitals.a.auth(Role.billing))
    assert credit.status_code == 201, credit.text
    note = credit.json()
    fhir_note = await read(client, hospitals.a, "Invoice", note["id"])
    assert fhir_note["type"]["coding"][0]["code"] == "credit_note"
    assert money(fhir_note["totalNet"]) == note["total"]
    assert money(fhir_note["totalGross"]) == note["gross"]
    assert f"Invoice/{first['id']}" in fhir_note["note"][0]["text"]
    assert (await read(client, hospitals.a, "Invoice", first["id"]))["status"] == "cancelled"
    # Paid, then credited in full: a refund is due (REST's `overpaid`), so it is not closed.
    second = issued.json()["invoices"][1]
    paid = await client.post(f"/api/v1/invoices/{second['id']}/payments", json={
        "amount": second["total"], "paid_on": service.today().isoformat(), "method": "transfer"},
        headers=hospitals.a.auth(Role.billing))
    assert paid.status_code == 201, paid.text
    assert (await read(client, hospitals.a, "Invoice", second["id"]))["status"] == "balanced"
    assert (await client.post(f"/api/v1/invoices/{second['id']}/credit-notes",
                              json={"reason": "duplicate"},
                              headers=hospitals.a.auth(Role.billing))).status_code == 201
    assert (await rest(client, hospitals.a, f"invoices/{second['id']}"))["status"] == "overpaid"
    assert (await read(client, hospitals.a, "Invoice", second["id"]))["status"] == "issued"


async def test_claim_response_once_answered(client: httpx.AsyncClient,
                                            hospitals: Hospitals) -> None:
    batch, claim_file = await sent_batch(client, hospitals.a, 2)
    answered = await post_return(client, hospitals.a, batch,
                                 answer_with_rejections(claim_file))
    assert answered.status_code == 200, answered.text
    lines = (await rest(client, hospitals.a, "claim-lines?status=paid"))["items"] + (
        await rest(client, hospitals.a, "claim-lines?status=rejected"))["items"] + (
        await rest(client, hospitals.a, "claim-lines?status=partly_paid"))["items"]
    invoice_ids = {line["invoice_id"] for line in lines}
    assert invoice_ids
    for invoice_id in invoice_ids:
        response = await read(client, hospitals.a, "ClaimResponse", invoice_id)
        assert response["request"]["reference"] == f"Claim/{invoice_id}"
        mine = {line["line"]: line for line in lines if line["invoice_id"] == invoice_id}
        for item in response["item"]:
            line = mine.get(item["itemSequence"])
            if line is None:
                continue
            amounts = {a["category"]["coding"][0]["code"]: money(a["amount"])
                       for a in item["adjudication"]}
            assert amounts == {"submitted": line["claimed"], "benefit": line["paid"]}


async def test_other_hospitals_and_unknown_ids_get_404(client: httpx.AsyncClient,
                                                       hospitals: Hospitals) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    issued = (await bill(client, hospitals.a, stay)).json()["invoices"]
    insurer = next(i for i in issued if i["kind"] == "insurer")
    ids = {"Patient": stay["patient_id"], "Encounter": stay["id"], "Claim": insurer["id"],
           "ClaimResponse": insurer["id"], "Invoice": insurer["id"]}
    for kind, id_ in ids.items():
        # Other forms of the same id too: read, they answered a resource whose id was not
        # the one asked for.
        other_forms = (f"urn:uuid:{id_}", "{" + id_ + "}", id_.replace("-", ""))
        for hospital, wanted in ((hospitals.b, id_), (hospitals.a, str(uuid.uuid4())),
                                 (hospitals.a, "not-a-uuid"),
                                 *((hospitals.a, form) for form in other_forms)):
            response = await client.get(f"/api/v1/fhir/{kind}/{wanted}",
                                        headers=hospital.auth(Role.billing))
            assert response.status_code == 404, (kind, wanted)
    # The desk may read patients and stays, not invoices or claims.
    for kind in ("Claim", "Invoice"):
        response = await client.get(f"/api/v1/fhir/{kind}/{ids[kind]}",
                                    headers=hospitals.a.auth(Role.clerk))
        assert response.status_code == 403


async def test_a_merged_patient_says_which_record_replaced_it(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    clerk = hospitals.a.auth(Role.clerk)
    keep = await create_patient(client, hospitals.a)
    dup = await create_patient(client, hospitals.a, matricule=None,
                               no_matricule_reason="unidentified")
    merged = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                               json={"duplicate_id": dup["id"]}, headers=clerk)
    assert merged.status_code == 200, merged.text
    gone = await read(client, hospitals.a, "Patient", dup["id"], Role.clerk)
    assert gone["active"] is False
    assert gone["link"] == [{"other": {"reference": f"Patient/{keep['id']}"},
                             "type": "replaced-by"}]
    assert "active" not in await read(client, hospitals.a, "Patient", keep["id"], Role.clerk)


def test_a_blank_display_is_left_out_as_fhir_requires() -> None:
    coding = claims_fhir._coding("urn:x", "CUMUL_INTERDIT", "\u00a0")
    assert coding == {"system": "urn:x", "code": "CUMUL_INTERDIT"}
    Coding.model_validate(coding)
    spaced = claims_fhir._coding("urn:x", "C", " refusé\u00a0 ")
    assert Coding.model_validate(spaced).display == "refusé"


async def test_only_fhirs_json_format_is_accepted_in_the_query(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    patient = await create_patient(client, hospitals.a)
    path = f"/api/v1/fhir/Patient/{patient['id']}"
    before = await patient_reads(client, hospitals.a, patient["id"])
    for value in ("json", "application/fhir+json"):
        answer = await client.get(path, params={"_format": value},
                                  headers=hospitals.a.auth(Role.billing))
        assert answer.status_code == 200 and answer.headers["content-type"] == FHIR_JSON
    # Written unencoded, as FHIR's examples write it: its `+` arrives as a space.
    plain = await client.get(f"{path}?_format=application/fhir+json",
                             headers=hospitals.a.auth(Role.billing))
    assert plain.status_code == 200, plain.text
    for params, field in (({"_format": "xml"}, "query._format"),
                          ({"_pretty": "true"}, "query._pretty"),
                          ({"patient": str(uuid.uuid4())}, "query.patient")):
        refused = await client.get(path, params=params, headers=hospitals.a.auth(Role.billing))
        assert refused.status_code == 422, refused.text
        assert [error["field"] for error in refused.json()["errors"]] == [field]
    # Refused before the record was read: only the three answered reads are audited.
    assert await patient_reads(client, hospitals.a, patient["id"]) == before + 3


async def test_a_planned_encounter_has_no_place_yet(client: httpx.AsyncClient,
                                                    hospitals: Hospitals) -> None:
    from tests.stays.test_api import admit, move

    planned = await admit(client, hospitals.a, planned=True)  # its bed booked: MED2 204 A
    encounter = await read(client, hospitals.a, "Encounter", planned["id"], Role.clerk)
    assert encounter["status"] == "planned" and "location" not in encounter
    await move(client, hospitals.a, planned, type="admit", at="2026-03-02T09:00:00+01:00",
               unit="MED2", room="204", bed="A")
    encounter = await read(client, hospitals.a, "Encounter", planned["id"], Role.clerk)
    assert encounter["location"] == [{"location": {"display": "MED2 204 A"}}]

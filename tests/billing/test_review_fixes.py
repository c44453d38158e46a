"""Defects a review found in billing, each with the test that would have caught it."""

import asyncio
import base64
import json
import uuid

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.billing.service import today as billing_today
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient
from tests.patients.test_api import new_matricule
from tests.stays.test_api import act, admit, move

pytestmark = pytest.mark.usefixtures("catalogue")


async def adult(client: httpx.AsyncClient, hospital: Hospital) -> dict:
    return await create_patient(client, hospital, birth_date="1970-01-01",
                                matricule=new_matricule("19700101"))


async def warm(client: httpx.AsyncClient, hospital: Hospital) -> None:
    # A key's first use in a minute writes its last-used time, which would serialise the
    # concurrent requests below and hide the race they are about.
    for role in (Role.billing, Role.clerk):
        await client.get("/api/v1/invoices" if role == Role.billing else "/api/v1/stays",
                         headers=hospital.auth(role))


def participation(invoice: dict) -> list[tuple[int, str]]:
    return [(line["quantity"], line["amount"]) for line in invoice["lines"]
            if line["code"] == "PARTICIPATION"]


@pytest.mark.postgres
async def test_two_stays_of_one_patient_billed_at_once_respect_the_yearly_cap(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    await warm(client, a)
    patient = await adult(client, a)
    first = await admit(client, a, patient=patient, admitted_at="2026-01-05T08:00:00+01:00")
    await move(client, a, first, type="discharge", at="2026-01-25T11:00:00+01:00")
    second = (await client.post("/api/v1/stays", json={
        "patient_id": patient["id"], "kind": "inpatient",
        "admitted_at": "2026-02-05T08:00:00+01:00"}, headers=a.auth(Role.clerk))).json()
    await move(client, a, second, type="discharge", at="2026-02-25T11:00:00+01:00")
    answers = await asyncio.gather(bill(client, a, first), bill(client, a, second))
    charged = sorted(participation(r.json()["invoices"][-1])[0][0] for r in answers)
    assert charged == [10, 20]  # 30 days a year at most, whichever is billed first


@pytest.mark.postgres
async def test_credit_notes_on_both_parts_of_an_act_at_once_release_it(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    await warm(client, a)
    stay = await admit(client, a, patient=await adult(client, a))
    await move(client, a, stay, type="transfer", at="2026-03-02T09:00:00+01:00", unit="C",
               room="1", bed="B", room_class="first")
    await act(client, a, stay, code="V1", performer="12345678",
              performed_at="2026-03-03T10:00:00+01:00")
    await move(client, a, stay, type="discharge", at="2026-03-05T11:00:00+01:00")
    invoices = (await bill(client, a, stay)).json()["invoices"]
    assert {line["code"] for i in invoices for line in i["lines"]} >= {"V1"}
    answers = await asyncio.gather(*(
        client.post(f"/api/v1/invoices/{i['id']}/credit-notes", json={"reason": "erreur"},
                    headers=a.auth(Role.billing)) for i in invoices))
    assert [r.status_code for r in answers] == [201] * len(invoices)
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=a.auth(Role.billing))).json()["items"]
    assert [(x["code"], x["state"]) for x in acts] == [("V1", "recorded")]


async def test_a_part_priced_differently_now_is_not_billed_alone(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    patient = await adult(client, a)
    stay = await admit(client, a, patient=patient, kind="outpatient")
    await act(client, a, stay, code="C1", performer="12345678")
    await move(client, a, stay, type="discharge", at="2026-03-02T11:00:00+01:00")
    insurer, patient_part = (await bill(client, a, stay)).json()["invoices"]
    await client.post(f"/api/v1/invoices/{patient_part['id']}/credit-notes",
                      json={"reason": "tiers payant"}, headers=a.auth(Role.billing))
    # The patient now has a social tiers-payant attestation: the insurer's share of the act
    # grows, and billing only the (now empty) patient part would lose the difference.
    await client.post(f"/api/v1/patients/{patient['id']}/coverages", json={
        "kind": "social_tiers_payant", "payer": "Office social", "valid_from": "2026-02-01",
        "valid_to": "2026-04-30"}, headers=a.auth(Role.clerk))
    again = await bill(client, a, stay)
    assert again.status_code == 409, again.text
    act_id = insurer["lines"][0]["act_id"]
    assert again.json()["acts"] == [act_id] and "credit" in again.json()["detail"]


async def test_a_discharge_before_invoiced_days_is_refused_and_a_final_closes(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    stay = await admit(client, a, patient=await adult(client, a))
    interim = await bill(client, a, stay, kind="interim", until="2026-03-06")
    assert participation(interim.json()["invoices"][-1]) == [(5, "99.60")]
    early = await move(client, a, stay, type="discharge", at="2026-03-04T11:00:00+01:00")
    assert early.status_code == 409 and "2026-03-06" in early.json()["detail"]
    assert (await move(client, a, stay, type="discharge",
                       at="2026-03-07T11:00:00+01:00")).status_code == 201
    final = await bill(client, a, stay)  # nothing new to bill: the final closes the stay
    assert final.status_code == 201, final.text
    assert final.json()["invoices"] == [] and final.json()["stay_state"] == "closed"


async def test_hostile_inputs_get_a_422(client: httpx.AsyncClient,
                                        hospitals: Hospitals) -> None:
    a = hospitals.a
    headers = a.auth(Role.billing)
    stay = await stay_with_acts(client, a)
    invoice = (await bill(client, a, stay)).json()["invoices"][1]
    forged = base64.urlsafe_b64encode(json.dumps(
        ["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]).encode()).decode()
    assert (await client.get(f"/api/v1/invoices?cursor={forged}",
                             headers=headers)).status_code == 422
    notes = f"/api/v1/invoices/{invoice['id']}/credit-notes"
    for body in ({"reason": "a\u0000b"}, {"reason": "x", "lines": [True]}):
        assert (await client.post(notes, json=body, headers=headers)).status_code == 422
    payments = f"/api/v1/invoices/{invoice['id']}/payments"
    today = billing_today().isoformat()
    for body in ({"amount": "1", "paid_on": today, "method": "cash", "reference": "\u0000"},
                 {"amount": "999999999.99", "paid_on": today, "method": "cash"}):
        response = await client.post(payments, json=body, headers=headers)
        assert response.status_code == 422, body

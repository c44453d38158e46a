"""Billing a stay over the API: dry run, issue, numbering, credit notes, payments, statuses."""

import random
import uuid
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import text, update

from luxfact.auth.roles import Role
from luxfact.billing import service
from luxfact.billing.repository import BillingRepository
from luxfact.billing.schemas import BillIn
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.stays.models import Act
from luxfact.tariffs.models import TariffAct, TariffModifier, TariffParameter
from luxfact.tenancy.repository import TenantRepository
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient
from tests.patients.test_api import new_matricule
from tests.stays.test_api import act, admit, move
from tests.tariffs.corrections import corrected

pytestmark = pytest.mark.usefixtures("catalogue")

DISCHARGED = "2026-03-05T11:00:00+01:00"


async def stay_with_acts(client: httpx.AsyncClient, hospital: Hospital, *,
                         discharge: bool = True, **overrides: object) -> dict:
    """An inpatient stay of 3 days with a doctor's visit, nursing care and a single room."""
    # Birth dates spread over 20 years: a matricule has 1,000 serials per birth date.
    birth = date(1960, 1, 1) + timedelta(days=random.randrange(7300))
    patient = await create_patient(client, hospital, birth_date=birth.isoformat(),
                                   matricule=new_matricule(birth.strftime("%Y%m%d")))
    stay = await admit(client, hospital, patient=patient, **overrides)
    for body in ({"code": "V1", "performer": "12345678"}, {"code": "N101"},
                 {"code": "CP1", "performed_at": "2026-03-03T10:00:00+01:00"}):
        assert (await act(client, hospital, stay, **body)).status_code == 201
    if discharge:
        assert (await move(client, hospital, stay, type="discharge",
                           at=DISCHARGED)).status_code == 201
    return stay


async def bill(client: httpx.AsyncClient, hospital: Hospital, stay: dict,
               **body: object) -> httpx.Response:
    return await client.post(f"/api/v1/stays/{stay['id']}/invoices",
                             json={"kind": "final", **body}, headers=hospital.auth(Role.billing))


async def invoices_of(client: httpx.AsyncClient, hospital: Hospital, stay: dict) -> list[dict]:
    response = await client.get(f"/api/v1/invoices?stay_id={stay['id']}",
                                headers=hospital.auth(Role.billing))
    assert response.status_code == 200
    return response.json()["items"]


async def test_dry_run_shows_exactly_what_is_then_issued(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    dry = await bill(client, hospitals.a, stay, dry_run=True)
    assert dry.status_code == 200, dry.text
    drafts = dry.json()["invoices"]
    assert [(i["kind"], i["payer"], i["number"], i["id"]) for i in drafts] == [
        ("insurer", "CNS", None, None), ("patient", "patient", None, None)]
    assert await invoices_of(client, hospitals.a, stay) == []  # nothing stored
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert {a["state"] for a in acts} == {"recorded"}

    issued = await bill(client, hospitals.a, stay)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["stay_state"] == "closed"
    for draft, invoice in zip(drafts, body["invoices"], strict=True):
        assert invoice["number"] and invoice["id"]
        assert (invoice["total"], invoice["payer"], invoice["kind"]) == (
            draft["total"], draft["payer"], draft["kind"])
        strip = ("seq",)
        assert [{k: v for k, v in line.items() if k not in strip} for line in invoice["lines"]] \
            == [{k: v for k, v in line.items() if k not in strip} for line in draft["lines"]]
    insurer, patient = body["invoices"]
    # The insurer pays the doctor's visit and the nursing care in full; the patient the
    # single room (a convenience supplement) and 3 days of participation (2, 3, 4 March).
    assert {line["code"] for line in insurer["lines"]} == {"V1", "N101"}
    assert {(line["code"], line["amount"]) for line in patient["lines"]} == {
        ("CP1", "45.00"), ("PARTICIPATION", "59.76")}
    assert patient["total"] == "104.76" and patient["status"] == "open"
    participation = next(line for line in patient["lines"] if line["code"] == "PARTICIPATION")
    assert participation["quantity"] == 3 and "19.92" in participation["explanation"]
    assert all(line["explanation"] for line in insurer["lines"])
    assert patient["reference"].startswith("RF")
    assert patient["due_on"] == str(date.fromisoformat(patient["issued_on"]) + timedelta(days=30))

    # Acts on an issued invoice are locked; billing again finds nothing.
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert {a["state"] for a in acts} == {"invoiced"}
    locked = await client.patch(f"/api/v1/stays/{stay['id']}/acts/{acts[0]['id']}",
                                json={"quantity": 2}, headers={
                                    **hospitals.a.auth(Role.clerk), "If-Match": '"2"'})
    assert locked.status_code == 409
    assert (await bill(client, hospitals.a, stay)).status_code == 409  # closed
    # Issued invoices cannot be changed through the API either.
    for method in ("PATCH", "DELETE"):
        refused = await client.request(method, f"/api/v1/invoices/{patient['id']}",
                                       headers=hospitals.a.auth(Role.billing))
        assert refused.status_code == 409 and patient["number"] in refused.json()["detail"]


async def test_numbers_follow_per_year_without_gaps(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    numbers = []
    for _ in range(3):
        stay = await stay_with_acts(client, hospitals.a)
        numbers += [i["number"] for i in (await bill(client, hospitals.a, stay)).json()["invoices"]]
    year = service.today().year
    assert numbers == [f"T-{year}-{n:06}" for n in range(1, 7)]
    # The other hospital has its own series.
    other = await stay_with_acts(client, hospitals.b)
    first = (await bill(client, hospitals.b, other)).json()["invoices"][0]["number"]
    assert first == f"T-{year}-000001"


async def test_a_number_drawn_by_a_failed_issue_is_not_lost(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    drawn: list[list[int]] = []
    draw = BillingRepository.draw_numbers

    async def spy(self: BillingRepository, *args: object) -> list[int]:
        drawn.append(await draw(self, *args))  # type: ignore[arg-type]
        return drawn[-1]

    async def fail(*args: object, **kwargs: object) -> None:
        # The last write of an issue: the numbers are drawn, the invoices inserted.
        raise RuntimeError("disk full")

    monkeypatch.setattr(BillingRepository, "draw_numbers", spy)
    monkeypatch.setattr(service, "record_many", fail)
    with context.tenant_scope(hospitals.a.id, actor="test"), pytest.raises(RuntimeError):
        async with owner_db.transaction() as session:
            tenant = await TenantRepository(session).by_id(hospitals.a.id)
            assert tenant is not None
            await service.bill_stay(session, tenant, uuid.UUID(stay["id"]),
                                    BillIn(kind="final"), "test")
    monkeypatch.undo()
    assert drawn == [[1, 2]]  # drawn, then the transaction failed
    assert await invoices_of(client, hospitals.a, stay) == []
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert {a["state"] for a in acts} == {"recorded"}  # nothing half-applied
    year = service.today().year
    again = (await bill(client, hospitals.a, stay)).json()["invoices"]
    assert [i["number"] for i in again] == [f"T-{year}-000001", f"T-{year}-000002"]


async def test_credit_notes_release_acts_for_billing_again(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    insurer, patient = (await bill(client, hospitals.a, stay)).json()["invoices"]
    url = f"/api/v1/invoices/{patient['id']}/credit-notes"
    headers = hospitals.a.auth(Role.billing)
    cp1 = next(line["seq"] for line in patient["lines"] if line["code"] == "CP1")
    no_reason = await client.post(url, json={"lines": [cp1]}, headers=headers)
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    unknown = await client.post(url, json={"lines": [99], "reason": "x"}, headers=headers)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "lines"

    note = await client.post(url, json={"lines": [cp1], "reason": "Chambre double en fait"},
                             headers=headers)
    assert note.status_code == 201, note.text
    credit = note.json()
    year = service.today().year
    assert credit["number"] == f"TC-{year}-000001" and credit["doc_type"] == "credit_note"
    assert credit["total"] == "45.00" and credit["credited_invoice_id"] == patient["id"]
    assert credit["lines"][0]["credited_seq"] == cp1
    twice = await client.post(url, json={"lines": [cp1], "reason": "again"}, headers=headers)
    assert twice.status_code == 409  # never more credited than invoiced
    after = (await client.get(f"/api/v1/invoices/{patient['id']}", headers=headers)).json()
    assert (after["credited"], after["balance"]) == ("45.00", "59.76")

    # The single room act is free again: it can be corrected, and the stay billed again.
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts", headers=headers)).json()
    states = {a["code"]: a["state"] for a in acts["items"]}
    assert states == {"V1": "invoiced", "N101": "invoiced", "CP1": "recorded"}
    stay_now = (await client.get(f"/api/v1/stays/{stay['id']}", headers=headers)).json()
    assert stay_now["state"] == "discharged"
    rebilled = (await bill(client, hospitals.a, stay)).json()["invoices"]
    assert [(i["kind"], [line["code"] for line in i["lines"]]) for i in rebilled] == [
        ("patient", ["CP1"])]
    assert rebilled[0]["number"] == f"T-{year}-000003"

    # The whole rest of the insurer invoice: then nothing is left to credit.
    whole = await client.post(f"/api/v1/invoices/{insurer['id']}/credit-notes",
                              json={"reason": "Erreur de prestataire"}, headers=headers)
    assert whole.status_code == 201 and whole.json()["total"] == insurer["total"]
    assert whole.json()["number"] == f"TC-{year}-000002"
    empty = await client.post(f"/api/v1/invoices/{insurer['id']}/credit-notes",
                              json={"reason": "encore"}, headers=headers)
    assert empty.status_code == 409
    credited = (await client.get(f"/api/v1/invoices/{insurer['id']}", headers=headers)).json()
    assert credited["status"] == "credited"
    of_note = await client.post(f"/api/v1/invoices/{credit['id']}/credit-notes",
                                json={"reason": "x"}, headers=headers)
    assert of_note.status_code == 409


async def test_payments_balance_and_status(
    client: httpx.AsyncClient, hospitals: Hospitals, monkeypatch: pytest.MonkeyPatch
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    patient = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    url = f"/api/v1/invoices/{patient['id']}/payments"
    headers = hospitals.a.auth(Role.billing)
    today = service.today().isoformat()
    part = await client.post(url, json={"amount": "50.00", "paid_on": today,
                                        "method": "transfer", "reference": "virement"},
                             headers=headers)
    assert part.status_code == 201, part.text
    assert (part.json()["status"], part.json()["balance"]) == ("partly_paid", "54.76")
    too_much = await client.post(url, json={"amount": "60.00", "paid_on": today,
                                            "method": "cash"}, headers=headers)
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount"
    for bad in ({"amount": "-1", "paid_on": today, "method": "cash"},
                {"amount": "1.234", "paid_on": today, "method": "cash"},
                {"amount": "0", "paid_on": today, "method": "cash"},
                {"amount": "1", "paid_on": "2999-01-01", "method": "cash"},
                {"amount": "1", "paid_on": today, "method": "bitcoin"}):
        assert (await client.post(url, json=bad, headers=headers)).status_code == 422, bad
    listed = await client.get(url, headers=headers)
    assert [p["amount"] for p in listed.json()["items"]] == ["50.00"]
    paid = await client.post(url, json={"amount": "54.76", "paid_on": today, "method": "card"},
                             headers=headers)
    assert paid.json()["status"] == "paid" and paid.json()["balance"] == "0.00"
    found = await client.get(f"/api/v1/invoices?status=paid&patient_id={patient['patient_id']}",
                             headers=headers)
    assert [i["id"] for i in found.json()["items"]] == [patient["id"]]

    # Overdue once the due date has passed, and only then.
    other = await stay_with_acts(client, hospitals.a)
    late = (await bill(client, hospitals.a, other)).json()["invoices"][1]
    overdue_url = "/api/v1/invoices?status=overdue&kind=patient"
    assert (await client.get(overdue_url, headers=headers)).json()["items"] == []
    due = date.fromisoformat(late["due_on"])
    monkeypatch.setattr(service, "today", lambda: due + timedelta(days=1))
    overdue = (await client.get(overdue_url, headers=headers)).json()["items"]
    assert [i["id"] for i in overdue] == [late["id"]] and overdue[0]["status"] == "overdue"


async def test_overpayment_when_the_hospital_accepts_it(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    async with owner_db.transaction() as session:
        await session.execute(text(
            "UPDATE tenants SET config = :config WHERE id = :id"), {
            "config": '{"invoices": {"allow_overpayment": true, "payment_terms_days": 30}}',
            "id": hospitals.a.id if owner_db.engine.dialect.name == "postgresql"
            else hospitals.a.id.hex})
    stay = await stay_with_acts(client, hospitals.a)
    patient = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    over = await client.post(f"/api/v1/invoices/{patient['id']}/payments", json={
        "amount": "200.00", "paid_on": service.today().isoformat(), "method": "transfer"},
        headers=hospitals.a.auth(Role.billing))
    assert over.status_code == 201 and over.json()["status"] == "overpaid"
    assert over.json()["balance"] == "-95.24"


async def test_what_cannot_be_billed(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    open_stay = await stay_with_acts(client, hospitals.a, discharge=False)
    not_out = await bill(client, hospitals.a, open_stay)
    assert not_out.status_code == 409 and "discharge" in not_out.json()["detail"]
    future = await bill(client, hospitals.a, open_stay, kind="interim", until="2999-01-01")
    assert future.status_code == 422 and future.json()["errors"][0]["field"] == "until"
    before = await bill(client, hospitals.a, open_stay, kind="interim", until="2026-03-01")
    assert before.status_code == 422

    planned = await admit(client, hospitals.a, planned=True)
    assert (await bill(client, hospitals.a, planned, kind="interim")).status_code == 409
    cancelled = await admit(client, hospitals.a)
    await move(client, hospitals.a, cancelled, type="cancel_admit",
               at="2026-03-02T12:00:00+01:00", cancels=cancelled["movements"][0]["id"])
    assert (await bill(client, hospitals.a, cancelled, kind="interim")).status_code == 409

    # A coverage gap: the error names the days.
    gap_stay = await stay_with_acts(client, hospitals.a)
    async with owner_db.transaction() as session:
        await session.execute(text("UPDATE coverages SET valid_from = :d WHERE patient_id = :p"),
                              {"d": date(2026, 3, 4), "p": gap_stay["patient_id"]
                               if owner_db.engine.dialect.name == "postgresql"
                               else uuid.UUID(gap_stay["patient_id"]).hex})
    gap = await bill(client, hospitals.a, gap_stay)
    assert gap.status_code == 422, gap.text
    assert gap.json()["errors"] == [{"field": "coverage",
                                     "reason": "no coverage from 2026-03-02 to 2026-03-03"}]

    # An act whose tariff no longer exists on its day: every such act is listed.
    withdrawn = await stay_with_acts(client, hospitals.a)
    async with owner_db.transaction() as session:
        await session.execute(update(Act.__table__).where(  # type: ignore[attr-defined]
            Act.__table__.c.stay_id == uuid.UUID(withdrawn["id"]),  # type: ignore[attr-defined]
            Act.__table__.c.code.in_(["V1", "N101"])).values(code="ZZ99"))  # type: ignore[attr-defined]
    unpriced = await bill(client, hospitals.a, withdrawn)
    assert unpriced.status_code == 422
    assert len(unpriced.json()["errors"]) == 2
    assert all("ZZ99" in e["reason"] and e["field"].startswith("acts.")
               for e in unpriced.json()["errors"])


async def test_interim_then_final(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await stay_with_acts(client, hospitals.a, discharge=False)
    interim = await bill(client, hospitals.a, stay, kind="interim", until="2026-03-02")
    assert interim.status_code == 201, interim.text
    patient = interim.json()["invoices"][-1]
    # One day of participation (2 March); the single room of 3 March is not billed yet.
    assert [(line["code"], line["quantity"]) for line in patient["lines"]] == [
        ("PARTICIPATION", 1)]
    assert interim.json()["stay_state"] == "admitted"
    assert (await move(client, hospitals.a, stay, type="discharge",
                       at=DISCHARGED)).status_code == 201
    final = (await bill(client, hospitals.a, stay)).json()
    assert final["stay_state"] == "closed"
    rest = final["invoices"][-1]
    assert sorted((line["code"], line["quantity"], line["day"]) for line in rest["lines"]) == [
        ("CP1", 1, "2026-03-03"), ("PARTICIPATION", 2, "2026-03-03")]


async def test_an_admission_billed_only_for_its_days_cannot_be_cancelled(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    """An interim invoice of participation days alone (no act on it) still bills the
    admission: cancelling it would leave the patient owing days of a stay that never was."""
    birth = date(1960, 1, 1) + timedelta(days=random.randrange(7300))
    patient = await create_patient(client, hospitals.a, birth_date=birth.isoformat(),
                                   matricule=new_matricule(birth.strftime("%Y%m%d")))
    stay = await admit(client, hospitals.a, patient=patient)
    interim = await bill(client, hospitals.a, stay, kind="interim", until="2026-03-03")
    assert interim.status_code == 201, interim.text
    [invoice] = interim.json()["invoices"]
    assert [line["code"] for line in invoice["lines"]] == ["PARTICIPATION"]
    cancel = {"type": "cancel_admit", "at": "2026-03-04T12:00:00+01:00",
              "cancels": stay["movements"][0]["id"]}
    refused = await move(client, hospitals.a, stay, **cancel)
    assert refused.status_code == 409, refused.text
    assert refused.json()["invoice_id"] == invoice["id"]
    assert "credit" in refused.json()["detail"]
    still = await client.get(f"/api/v1/stays/{stay['id']}", headers=hospitals.a.auth(Role.clerk))
    assert still.json()["state"] == "admitted"
    credited = await client.post(f"/api/v1/invoices/{invoice['id']}/credit-notes",
                                 json={"reason": "admission entered by mistake"},
                                 headers=hospitals.a.auth(Role.billing))
    assert credited.status_code == 201, credited.text
    done = await move(client, hospitals.a, stay, **cancel)
    assert done.status_code == 201 and done.json()["state"] == "cancelled"


async def test_nothing_after_the_patients_death_is_billed(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    """A death date recorded after the acts (the death is often entered late): the act
    after it and the days after it are refused, each saying what to correct."""
    stay = await stay_with_acts(client, hospitals.a)  # acts on 2 and 3 March, out on 5 March
    clerk = hospitals.a.auth(Role.clerk)
    died = await client.patch(f"/api/v1/patients/{stay['patient_id']}",
                              json={"death_date": "2026-03-02"},
                              headers={**clerk, "If-Match": '"1"'})
    assert died.status_code == 200, died.text
    late_act = await bill(client, hospitals.a, stay, dry_run=True)
    assert late_act.status_code == 422, late_act.text
    [error] = late_act.json()["errors"]
    acts_of_stay = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                                     headers=clerk)).json()["items"]
    [cp1] = [a for a in acts_of_stay if a["code"] == "CP1"]
    assert error["field"] == f"acts.{cp1['id']}" and "after_death" in error["reason"]
    assert (await client.delete(f"/api/v1/stays/{stay['id']}/acts/{cp1['id']}",
                                headers=clerk)).status_code == 200
    late_days = await bill(client, hospitals.a, stay, dry_run=True)
    assert late_days.status_code == 422, late_days.text
    assert late_days.json()["errors"] == [{"field": "discharged_at", "reason": (
        "after_death: participation counted up to 2026-03-04, after the patient's death on "
        "2026-03-02: the stay ends with it")}]
    # The discharge moved to the day of death: one day, billed.
    discharge = (await client.get(f"/api/v1/stays/{stay['id']}", headers=clerk)).json()[
        "movements"][-1]
    assert (await move(client, hospitals.a, stay, type="cancel_discharge",
                       at="2026-03-05T12:00:00+01:00", cancels=discharge["id"])
            ).status_code == 201
    assert (await move(client, hospitals.a, stay, type="discharge",
                       at="2026-03-02T18:00:00+01:00")).status_code == 201
    billed = await bill(client, hospitals.a, stay)
    assert billed.status_code == 201, billed.text
    days = [line for invoice in billed.json()["invoices"] for line in invoice["lines"]
            if line["code"] == "PARTICIPATION"]
    assert [(line["day"], line["quantity"]) for line in days] == [("2026-03-02", 1)]


async def test_a_parameter_missing_on_a_day_of_the_stay_is_named(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database) -> None:
    """The daily participation ended in the catalogue (its next amount not known yet): the
    bill says which parameter lacks a value on which day, and guesses nothing."""
    stay = await stay_with_acts(client, hospitals.a)  # participation 2 to 4 March
    async with corrected(owner_db, TariffParameter, "valid_to", date(2026, 3, 3),
                         name="daily_participation_inpatient"):
        refused = await bill(client, hospitals.a, stay, dry_run=True)
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "tariffs"
    assert "daily_participation_inpatient" in error["reason"] and "2026-03-04" in error["reason"]
    assert (await bill(client, hospitals.a, stay, dry_run=True)).status_code == 200


async def test_an_act_keeps_its_price_until_it_is_re_priced(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database) -> None:
    """A tariff corrected in place after acts were priced with it: billing does not bill
    them at another price silently. It lists them (the re-pricing report); re-priced on
    purpose, they are billed at today's price. A note alone changes no price."""
    stay = await stay_with_acts(client, hospitals.a)
    clerk = hospitals.a.auth(Role.clerk)
    url = f"/api/v1/stays/{stay['id']}/acts"
    [n101] = [a for a in (await client.get(url, headers=clerk)).json()["items"]
              if a["code"] == "N101"]
    async with corrected(owner_db, TariffAct, "coefficient", Decimal("3.00"), code="N101"):
        noted = await client.patch(f"{url}/{n101['id']}", json={"note": "checked"},
                                   headers={**clerk, "If-Match": f'"{n101["version"]}"'})
        assert noted.status_code == 200 and noted.json()["gross"] == n101["gross"]
        refused = await bill(client, hospitals.a, stay, dry_run=True)
        assert refused.status_code == 409, refused.text
        [report] = refused.json()["acts"]
        assert (report["act_id"], report["unit_price"], report["unit_price_today"]) == (
            n101["id"], n101["pricing"]["unit_price"], "23.27")
        repriced = await client.patch(
            f"{url}/{n101['id']}", json={"reprice": True},
            headers={**clerk, "If-Match": f'"{noted.json()["version"]}"'})
        assert repriced.status_code == 200 and repriced.json()["gross"] == "23.27"
        billed = await bill(client, hospitals.a, stay, dry_run=True)
        assert billed.status_code == 200, billed.text
        lines = [line for invoice in billed.json()["invoices"] for line in invoice["lines"]
                 if line["code"] == "N101"]
        assert [line["gross"] for line in lines] == ["23.27"]


async def test_a_modifier_corrected_in_place_is_reported_and_invoiced_acts_left_alone(
        client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database) -> None:
    """The night surcharge corrected in place (25 % to 50 %): an act priced with it is
    reported as its tariff is. Its modifiers sent again in another order re-price nothing.
    An act already invoiced is not reported: its invoiced parts are (credit, bill again)."""
    stay = await stay_with_acts(client, hospitals.a, discharge=False)
    clerk = hospitals.a.auth(Role.clerk)
    url = f"/api/v1/stays/{stay['id']}/acts"
    night = await act(client, hospitals.a, stay, code="C1", modifiers=["NUIT", "WE"],
                      performed_at="2026-03-04T22:00:00+01:00")
    assert night.status_code == 201, night.text
    early = await act(client, hospitals.a, stay, code="C1", modifiers=["NUIT"],
                      performed_at="2026-03-02T23:00:00+01:00")
    assert early.status_code == 201, early.text
    interim = await bill(client, hospitals.a, stay, kind="interim", until="2026-03-02")
    assert interim.status_code == 201, interim.text  # the acts of 2 March invoiced
    async with corrected(owner_db, TariffModifier, "percent", Decimal(50), code="NUIT"):
        same = await client.patch(f"{url}/{night.json()['id']}", json={
            "modifiers": ["WE", "NUIT"]}, headers={**clerk, "If-Match": '"1"'})
        assert same.status_code == 200 and same.json()["gross"] == night.json()["gross"]
        assert (await move(client, hospitals.a, stay, type="discharge",
                           at="2026-03-05T11:00:00+01:00")).status_code == 201
        refused = await bill(client, hospitals.a, stay, dry_run=True)
        assert refused.status_code == 409, refused.text
        assert [a["act_id"] for a in refused.json()["acts"]] == [night.json()["id"]]


async def test_other_hospitals_see_nothing(client: httpx.AsyncClient,
                                           hospitals: Hospitals) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    invoice = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    assert (await bill(client, hospitals.b, stay)).status_code == 404
    for role in (Role.billing, Role.admin, Role.integration):
        headers = hospitals.b.auth(role)
        assert (await client.get(f"/api/v1/invoices/{invoice['id']}",
                                 headers=headers)).status_code == 404
        assert (await client.get(f"/api/v1/invoices/{invoice['id']}/pdf",
                                 headers=headers)).status_code == 404
        listed = await client.get("/api/v1/invoices", headers=headers)
        assert listed.json()["items"] == []
    billing = hospitals.b.auth(Role.billing)
    assert (await client.post(f"/api/v1/invoices/{invoice['id']}/credit-notes",
                              json={"reason": "x"}, headers=billing)).status_code == 404
    assert (await client.post(f"/api/v1/invoices/{invoice['id']}/payments", json={
        "amount": "1", "paid_on": service.today().isoformat(), "method": "cash"},
        headers=billing)).status_code == 404
    # A clerk bills nothing.
    assert (await bill(client, hospitals.a, stay)).status_code == 409
    clerk = await client.post(f"/api/v1/stays/{stay['id']}/invoices", json={"kind": "final"},
                              headers=hospitals.a.auth(Role.clerk))
    assert clerk.status_code == 403


async def test_each_line_explains_its_own_act(client: httpx.AsyncClient,
                                              hospitals: Hospitals) -> None:
    """Identical acts share their computation, never their first line (act and day)."""
    stay = await stay_with_acts(client, hospitals.a, discharge=False)
    for day in ("2026-03-04", "2026-03-05"):
        assert (await act(client, hospitals.a, stay, code="CP1",
                          performed_at=f"{day}T10:00:00+01:00")).status_code == 201
    await move(client, hospitals.a, stay, type="discharge", at="2026-03-06T11:00:00+01:00")
    patient = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    rooms = [line for line in patient["lines"] if line["code"] == "CP1"]
    assert len(rooms) == 3
    for line in rooms:
        head, body = line["explanation"].split("\n", 1)
        assert head.startswith(f"Line {line['act_id']}: CP1") and head.endswith(line["day"])
        assert "45.00" in body
    assert len({line["explanation"] for line in rooms}) == 3


async def test_each_payer_gets_its_part(client: httpx.AsyncClient,
                                        hospitals: Hospitals) -> None:
    """The statutory fund the act, a complementary insurer the first-class surcharge, a
    work-accident insurer the act of an accident, and the patient the rest."""
    a = hospitals.a
    clerk = a.auth(Role.clerk)
    stay = await admit(client, a, room_class="first")
    patient_url = f"/api/v1/patients/{stay['patient_id']}/coverages"
    added = await client.post(patient_url, json={
        "kind": "complementary", "payer": "Mutuelle", "first_class": True,
        "valid_from": "2020-01-01"}, headers=clerk)
    assert added.status_code == 201, added.text
    assert (await act(client, a, stay, code="V1", performer="12345678")).status_code == 201
    await move(client, a, stay, type="discharge", at=DISCHARGED)
    invoices = (await bill(client, a, stay)).json()["invoices"]
    by_payer = {i["payer"]: i for i in invoices}
    assert set(by_payer) == {"CNS", "Mutuelle", "patient"}
    (cns_line,) = by_payer["CNS"]["lines"]
    (surcharge,) = by_payer["Mutuelle"]["lines"]
    assert (cns_line["part"], surcharge["part"]) == ("insurer", "complementary")
    assert cns_line["act_id"] == surcharge["act_id"]
    # Together the parts bill the line's gross exactly once.
    assert Decimal(cns_line["amount"]) + Decimal(surcharge["amount"]) == \
        Decimal(cns_line["gross"])
    assert [line["code"] for line in by_payer["patient"]["lines"]] == ["PARTICIPATION"]

    accident = await admit(client, a)
    await client.post(f"/api/v1/patients/{accident['patient_id']}/coverages", json={
        "kind": "accident", "payer": "AAA", "accident_number": "U123456789",
        "valid_from": "2026-03-01", "valid_to": "2026-03-31"}, headers=clerk)
    await act(client, a, accident, code="V1", performer="12345678")
    await move(client, a, accident, type="discharge", at=DISCHARGED)
    payers = [i["payer"] for i in (await bill(client, a, accident)).json()["invoices"]]
    assert payers == ["AAA", "patient"]  # the accident insurer before the statutory fund

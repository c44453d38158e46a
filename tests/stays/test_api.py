"""Stays, movements and acts over the API, for the personas of two hospitals."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit.money import MAX_CENTS
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient
from tests.tariffs.test_api import load_own_price

pytestmark = pytest.mark.usefixtures("catalogue")

ADMITTED = "2026-03-02T08:00:00+01:00"


async def admit(client: httpx.AsyncClient, hospital: Hospital, *, patient: dict | None = None,
                **overrides: object) -> dict:
    patient = patient or await create_patient(client, hospital)
    coverage = await client.post(f"/api/v1/patients/{patient['id']}/coverages", json={
        "kind": "statutory", "payer": "CNS", "valid_from": "2020-01-01"},
        headers=hospital.auth(Role.clerk))
    assert coverage.status_code == 201
    body = {"patient_id": patient["id"], "kind": "inpatient", "admitted_at": ADMITTED,
            "unit": "MED2", "room": "204", "bed": "A", **overrides}
    response = await client.post("/api/v1/stays", json=body, headers=hospital.auth(Role.clerk))
    assert response.status_code == 201, response.text
    return response.json()


async def move(client: httpx.AsyncClient, hospital: Hospital, stay: dict,
               **body: object) -> httpx.Response:
    return await client.post(f"/api/v1/stays/{stay['id']}/movements", json=body,
                             headers=hospital.auth(Role.clerk))


async def act(client: httpx.AsyncClient, hospital: Hospital, stay: dict,
              **body: object) -> httpx.Response:
    payload = {"code": "N101", "performed_at": "2026-03-02T10:00:00+01:00", **body}
    return await client.post(f"/api/v1/stays/{stay['id']}/acts", json=payload,
                             headers=hospital.auth(Role.clerk))


@pytest.mark.parametrize("planned", [False, True])
async def test_the_created_stay_reads_back_as_answered(client: httpx.AsyncClient,
                                                      hospitals: Hospitals,
                                                      planned: bool) -> None:
    """The creation answers from what it wrote, without reading it back: the answer must be
    what a read gives, to the microsecond and the time zone (given here at +01:00)."""
    created = await admit(client, hospitals.a, planned=planned,
                          admitted_at="2026-03-02T08:00:00.123456+01:00")
    read = await client.get(f"/api/v1/stays/{created['id']}",
                            headers=hospitals.a.auth(Role.clerk))
    assert read.json() == created
    assert len(created["movements"]) == (0 if planned else 1)


async def test_admit_transfer_discharge_and_history(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    assert stay["state"] == "admitted" and stay["unit"] == "MED2"
    assert [m["type"] for m in stay["movements"]] == ["admit"]
    assert stay["coverage_gaps"] == []
    moved = await move(client, hospitals.a, stay, type="transfer",
                       at="2026-03-03T09:00:00+01:00", unit="CHIR", room="12", bed="B",
                       room_class="first")
    assert moved.status_code == 201
    assert moved.json()["unit"] == "CHIR" and moved.json()["room_class"] == "first"
    out = await move(client, hospitals.a, stay, type="discharge", at="2026-03-05T11:00:00+01:00")
    body = out.json()
    assert body["state"] == "discharged" and body["discharged_at"] == "2026-03-05T10:00:00Z"
    assert [m["type"] for m in body["movements"]] == ["admit", "transfer", "discharge"]
    # Each movement audited with it, by the clerk who recorded it.
    events = (await client.get(f"/api/v1/audit-events?object_id={stay['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    moves = sorted((e["action"], e["details"]["seq"], e["actor"]) for e in events
                   if e["action"] in ("stay.transfer", "stay.discharge"))
    clerk = {e["actor"] for e in events if e["action"] == "stay.admit"}
    assert [(action, seq) for action, seq, _ in moves] == [("stay.discharge", 3),
                                                          ("stay.transfer", 2)]
    assert {actor for _, _, actor in moves} == clerk and len(clerk) == 1
    for role in (Role.clerk, Role.billing, Role.integration):
        assert (await client.get(f"/api/v1/stays/{stay['id']}",
                                 headers=hospitals.b.auth(role))).status_code == 404


async def test_a_transfer_leaves_the_old_units_room_and_bed_behind(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)  # MED2, room 204, bed A
    steps = [({"unit": "ICU"}, ("ICU", "", "")),            # another unit: no room, no bed yet
             ({"room": "3", "bed": "C"}, ("ICU", "3", "C")),
             ({"room": "4"}, ("ICU", "4", "")),              # another room: not its old bed
             ({"bed": "D"}, ("ICU", "4", "D")),
             ({"room_class": "first"}, ("ICU", "4", "D"))]   # class only: the place stays
    for hour, (where, expected) in enumerate(steps, start=9):
        moved = await move(client, hospitals.a, stay, type="transfer",
                           at=f"2026-03-03T{hour:02d}:00:00+01:00", **where)
        assert moved.status_code == 201, moved.text
        body = moved.json()
        assert (body["unit"], body["room"], body["bed"]) == expected, where
    assert body["room_class"] == "first"
    encounter = (await client.get(f"/api/v1/fhir/Encounter/{stay['id']}",
                                  headers=hospitals.a.auth(Role.clerk))).json()
    assert encounter["location"][0]["location"]["display"] == "ICU 4 D"


async def test_cancellations_reverse_exactly(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    transfer = (await move(client, hospitals.a, stay, type="transfer",
                           at="2026-03-03T09:00:00+01:00", unit="ICU")).json()
    transfer_id = transfer["movements"][-1]["id"]
    discharge = (await move(client, hospitals.a, stay, type="discharge",
                            at="2026-03-04T09:00:00+01:00")).json()
    discharge_id = discharge["movements"][-1]["id"]
    early = await move(client, hospitals.a, stay, type="cancel_transfer",
                       at="2026-03-04T10:00:00+01:00", cancels=transfer_id)
    assert early.status_code == 409  # the discharge came after it: undo that first
    undone = (await move(client, hospitals.a, stay, type="cancel_discharge",
                         at="2026-03-04T10:00:00+01:00", cancels=discharge_id)).json()
    assert undone["state"] == "admitted" and undone["discharged_at"] is None
    back = (await move(client, hospitals.a, stay, type="cancel_transfer",
                       at="2026-03-04T10:05:00+01:00", cancels=transfer_id)).json()
    assert back["unit"] == "MED2"
    types = [(m["type"], m["cancelled_by"] is not None) for m in back["movements"]]
    assert types == [("admit", False), ("transfer", True), ("discharge", True),
                     ("cancel_discharge", False), ("cancel_transfer", False)]


async def test_cancel_admit_cancels_the_stay_and_its_acts(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    assert (await act(client, hospitals.a, stay)).status_code == 201
    admit_id = stay["movements"][0]["id"]
    cancelled = (await move(client, hospitals.a, stay, type="cancel_admit",
                            at="2026-03-02T12:00:00+01:00", cancels=admit_id)).json()
    assert cancelled["state"] == "cancelled"
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=hospitals.a.auth(Role.clerk))).json()["items"]
    assert [a["state"] for a in acts] == ["cancelled"]
    trail = (await client.get("/api/v1/audit-events", params={"object_id": acts[0]["id"]},
                              headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert [(e["action"], e["details"]) for e in trail] == [
        ("act.cancel", {"by": "cancel_admit"}), ("act.create", trail[1]["details"])]
    late = await act(client, hospitals.a, stay)
    assert late.status_code == 409
    transfer = await move(client, hospitals.a, stay, type="transfer",
                          at="2026-03-03T09:00:00+01:00", unit="X")
    assert transfer.status_code == 409


async def test_cancelling_the_admission_of_a_pre_admission_returns_it_to_planned(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """A cancellation reverses exactly what its event did: the admission of a planned stay
    made it admitted, so cancelling it leaves the stay planned (and admissible again)."""
    stay = await admit(client, hospitals.a, planned=True)
    admitted = await move(client, hospitals.a, stay, type="admit",
                          at="2026-03-02T09:00:00+01:00", unit="ICU", room="1", bed="B")
    assert admitted.status_code == 201 and admitted.json()["state"] == "admitted"
    assert (await act(client, hospitals.a, stay)).status_code == 201
    undone = await move(client, hospitals.a, stay, type="cancel_admit",
                        at="2026-03-02T12:00:00+01:00",
                        cancels=admitted.json()["movements"][0]["id"])
    assert undone.status_code == 201, undone.text
    body = undone.json()
    # As planned: its date and place, not the cancelled admission's.
    assert (body["state"], body["admitted_at"], body["unit"], body["room"], body["bed"],
            body["discharged_at"]) == ("planned", stay["admitted_at"], "MED2", "204", "A",
                                       None)
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=hospitals.a.auth(Role.clerk))).json()["items"]
    assert [a["state"] for a in acts] == ["cancelled"]  # the acts of the admission undone
    again = await move(client, hospitals.a, stay, type="admit", at="2026-03-03T09:00:00+01:00")
    assert again.status_code == 201 and again.json()["state"] == "admitted"


async def test_bad_movements(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a)
    before = await move(client, hospitals.a, stay, type="discharge",
                        at="2026-03-01T08:00:00+01:00")
    assert before.status_code == 422 and before.json()["errors"][0]["field"] == "at"
    nowhere = await move(client, hospitals.a, stay, type="transfer",
                         at="2026-03-03T08:00:00+01:00")
    assert nowhere.status_code == 422
    naive = await move(client, hospitals.a, stay, type="discharge", at="2026-03-03T08:00:00")
    assert naive.status_code == 422
    assert (await move(client, hospitals.a, stay, type="discharge",
                       at="2026-03-04T08:00:00+01:00")).status_code == 201
    transfer = await move(client, hospitals.a, stay, type="transfer",
                          at="2026-03-05T08:00:00+01:00", unit="X")
    assert transfer.status_code == 409
    wrong = await move(client, hospitals.a, stay, type="cancel_transfer",
                       at="2026-03-05T08:00:00+01:00", cancels=stay["movements"][0]["id"])
    assert wrong.status_code == 422


async def test_stay_for_another_hospitals_patient_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    patient = await create_patient(client, hospitals.b)
    response = await client.post("/api/v1/stays", json={
        "patient_id": patient["id"], "kind": "inpatient", "admitted_at": ADMITTED},
        headers=hospitals.a.auth(Role.clerk))
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"field": "patient_id", "reason": "no such patient"}


async def test_coverage_gap_is_reported(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    patient = await create_patient(client, hospitals.a)
    await client.post(f"/api/v1/patients/{patient['id']}/coverages", json={
        "kind": "statutory", "payer": "CNS", "valid_from": "2020-01-01",
        "valid_to": "2026-03-03"}, headers=hospitals.a.auth(Role.clerk))
    stay = (await client.post("/api/v1/stays", json={
        "patient_id": patient["id"], "kind": "inpatient", "admitted_at": ADMITTED},
        headers=hospitals.a.auth(Role.clerk))).json()
    out = (await move(client, hospitals.a, stay, type="discharge",
                      at="2026-03-06T10:00:00+01:00")).json()
    assert out["coverage_gaps"] == [{"start": "2026-03-04", "end": "2026-03-06"}]


async def test_act_is_priced_with_its_explanation(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    response = await act(client, hospitals.a, stay, code="n101", quantity=2)
    assert response.status_code == 201, response.text
    body = response.json()
    # 2 × 19.78 (2.55 × 7.7571: 0.80132 × cote 968.04 / 100), nursing: the insurer pays all
    assert body["code"] == "N101" and body["gross"] == "39.56"
    assert body["insurer"] == "39.56" and body["patient"] == "0.00"
    assert body["tariff_version"] == "N101@2019-01-01"
    assert body["pricing"]["key_letter_value"] == "7.7571"
    assert "7.7571" in body["explanation"] and "968.04" in body["explanation"]
    # The act and its audit event are written together (one statement on PostgreSQL).
    events = (await client.get(f"/api/v1/audit-events?object_id={body['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert [e["action"] for e in events] == ["act.create"]
    assert events[0]["details"] == {"stay": stay["id"], "code": "N101"}


async def test_first_class_doctor_act_carries_the_surcharge(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a, room_class="first")
    response = await act(client, hospitals.a, stay, code="V1", performer="12345678")
    body = response.json()
    assert response.status_code == 201, body
    # V1: 7.40 × 5.3766 = 39.79 to the insurer; 66 % first-class surcharge 26.26 to the patient
    assert body["insurer"] == "39.79" and body["patient"] == "26.26"
    assert body["gross"] == "66.05"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"code": "NOPE"}, 422, "code"),
    ({"code": "N101", "performed_at": "2026-03-01T10:00:00+01:00"}, 422, "performed_at"),
    ({"code": "N101", "quantity": 0}, 422, "quantity"),
    ({"code": "N101", "quantity": -1}, 422, "quantity"),
    ({"code": "C1", "modifiers": ["ZZ"]}, 422, "modifiers"),
    ({"code": "N101", "performer": "123"}, 422, "performer"),
    ({"code": "N101", "note": "x" * 10000}, 422, "note"),
])
async def test_bad_acts(client: httpx.AsyncClient, hospitals: Hospitals, body: dict,
                        status: int, field: str) -> None:
    stay = await admit(client, hospitals.a)
    response = await act(client, hospitals.a, stay, **body)
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["field"] == field


async def test_rules_name_the_other_act(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a, kind="outpatient")
    first = await act(client, hospitals.a, stay, code="C1", performer="12345678")
    assert first.status_code == 201, first.text
    second = await act(client, hospitals.a, stay, code="C52", performer="12345678")
    assert second.status_code == 422
    problem = second.json()
    assert "C1" in problem["detail"] and problem["rule"] == "non_cumulable"
    assert problem["other_line_id"] == first.json()["id"]
    twice = await act(client, hospitals.a, stay, code="C1", performer="12345678")
    assert twice.status_code == 422 and twice.json()["rule"] == "max_per_day"


async def test_act_correction_and_cancellation(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    created = (await act(client, hospitals.a, stay)).json()
    url = f"/api/v1/stays/{stay['id']}/acts/{created['id']}"
    clerk = hospitals.a.auth(Role.clerk)
    patched = await client.patch(url, json={"quantity": 3}, headers={**clerk, "If-Match": '"1"'})
    assert patched.status_code == 200 and patched.json()["gross"] == "59.34"
    stale = await client.patch(url, json={"quantity": 2}, headers={**clerk, "If-Match": '"1"'})
    assert stale.status_code == 412
    other = await client.delete(url, headers=hospitals.b.auth(Role.clerk))
    assert other.status_code == 404
    cancelled = await client.delete(url, headers=clerk)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    again = await client.delete(url, headers=clerk)
    assert again.status_code == 409


async def test_idempotent_act(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a)
    headers = {**hospitals.a.auth(Role.integration), "Idempotency-Key": str(uuid.uuid4())}
    body = {"code": "N104", "performed_at": "2026-03-02T11:00:00+01:00"}
    url = f"/api/v1/stays/{stay['id']}/acts"
    first = await client.post(url, json=body, headers=headers)
    second = await client.post(url, json=body, headers=headers)
    assert first.json() == second.json()
    acts = (await client.get(url, headers=headers)).json()["items"]
    assert len(acts) == 1


async def test_future_act_is_refused(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a, admitted_at=datetime.now(UTC).isoformat())
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = await act(client, hospitals.a, stay, performed_at=later)
    assert response.status_code == 422


async def test_act_not_allowed_for_the_stay_kind(client: httpx.AsyncClient,
                                                 hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a, kind="outpatient")
    response = await act(client, hospitals.a, stay, code="F20", performer="12345678",
                         specialty="internal_medicine")
    assert response.status_code == 422
    assert response.json()["rule"] == "stay_kinds"
    assert response.json()["errors"][0]["field"] == "code"
    inpatient = await admit(client, hospitals.a)
    ok = await act(client, hospitals.a, inpatient, code="F20", performer="12345678",
                   specialty="internal_medicine")
    assert ok.status_code == 201, ok.text


async def test_a_line_over_what_an_amount_holds_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    # The hospital's own item at the most one line can bill: twice that is refused, clearly,
    # where the database would have refused the amount with a 500.
    await load_own_price(owner_db, hospitals.a, "A-MAX", MAX_CENTS)
    stay = await admit(client, hospitals.a)
    once = await act(client, hospitals.a, stay, code="A-MAX")
    assert once.status_code == 201, once.text
    assert once.json()["gross"] == "21474836.47"
    twice = await act(client, hospitals.a, stay, code="A-MAX", quantity=2)
    assert twice.status_code == 422, twice.text
    error = twice.json()["errors"][0]
    assert error["field"] == "quantity" and "42949672.94" in error["reason"]
    listed = await client.get(f"/api/v1/stays/{stay['id']}/acts",
                              headers=hospitals.a.auth(Role.clerk))
    assert [a["code"] for a in listed.json()["items"]] == ["A-MAX"]


async def test_a_stay_kind_and_doctors_are_corrected(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """PATCH /stays/{id}, the service HL7 A06, A07 and A08 use: a new kind prices the acts
    again, doctors are set or removed, each audited, the version moved on."""
    stay = await admit(client, hospitals.a, kind="outpatient")
    created = await act(client, hospitals.a, stay, code="C1", performer="12345678")
    assert created.status_code == 201, created.text
    outpatient = created.json()
    url = f"/api/v1/stays/{stay['id']}"
    clerk = hospitals.a.auth(Role.clerk)
    assert (await client.patch(url, json={"kind": "inpatient"}, headers=clerk)
            ).status_code == 428
    changed = await client.patch(url, json={"kind": "inpatient", "attending_doctor": "23456789"},
                                 headers={**clerk, "If-Match": f'"{stay["version"]}"'})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["kind"], body["attending_doctor"]) == ("inpatient", "23456789")
    assert changed.headers["ETag"] == f'"{stay["version"] + 1}"'
    [inpatient] = (await client.get(f"{url}/acts", headers=clerk)).json()["items"]
    assert inpatient["version"] == outpatient["version"] + 1
    assert (inpatient["insurer"], inpatient["patient"]) != \
        (outpatient["insurer"], outpatient["patient"])
    stale = await client.patch(url, json={"kind": "outpatient"},
                               headers={**clerk, "If-Match": f'"{stay["version"]}"'})
    assert stale.status_code == 412
    removed = await client.patch(url, json={"attending_doctor": None},
                                 headers={**clerk, "If-Match": changed.headers["ETag"]})
    assert removed.status_code == 200 and removed.json()["attending_doctor"] is None
    events = (await client.get(f"/api/v1/audit-events?object_id={stay['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    actions = [(e["action"], e["details"]) for e in events
               if e["action"] in ("stay.change_kind", "stay.update")]
    assert sorted(actions, key=str) == sorted([
        ("stay.change_kind", {"from": "outpatient", "to": "inpatient"}),
        ("stay.update", {"fields": ["attending_doctor"]}),
        ("stay.update", {"fields": ["attending_doctor"]})], key=str)
    other = await client.patch(url, json={"kind": "outpatient"},
                               headers={**hospitals.b.auth(Role.clerk), "If-Match": '"1"'})
    assert other.status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "ambulance"}, "kind"),
    ({"kind": None}, "kind"),
    ({"attending_doctor": "1234"}, "attending_doctor"),
    ({"state": "closed"}, "state"),
])
async def test_bad_stay_corrections_name_the_field(client: httpx.AsyncClient,
                                                   hospitals: Hospitals, body: dict,
                                                   field: str) -> None:
    stay = await admit(client, hospitals.a)
    response = await client.patch(f"/api/v1/stays/{stay['id']}", json=body, headers={
        **hospitals.a.auth(Role.clerk), "If-Match": f'"{stay["version"]}"'})
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    read = await client.get(f"/api/v1/stays/{stay['id']}", headers=hospitals.a.auth(Role.clerk))
    assert read.json() == stay


async def test_the_kind_of_an_invoiced_stay_does_not_change(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    bill = await client.post(f"/api/v1/stays/{stay['id']}/invoices",
                             json={"kind": "interim", "until": "2026-03-04"},
                             headers=hospitals.a.auth(Role.billing))
    assert bill.status_code == 201, bill.text
    url = f"/api/v1/stays/{stay['id']}"
    refused = await client.patch(url, json={"kind": "outpatient"}, headers={
        **hospitals.a.auth(Role.clerk), "If-Match": f'"{stay["version"]}"'})
    assert refused.status_code == 409 and "invoiced" in refused.json()["detail"]
    doctor = await client.patch(url, json={"admitting_doctor": "34567890"}, headers={
        **hospitals.a.auth(Role.clerk), "If-Match": f'"{stay["version"]}"'})
    assert doctor.status_code == 200 and doctor.json()["kind"] == "inpatient"


async def test_a_kind_its_acts_cannot_have_is_refused_whole(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """F20 is billed on inpatient stays only: the stay does not become outpatient, its act
    keeps its price, the refusal names the kind and the act; on the desk, whose request
    commits after showing the error, nothing is kept either."""
    stay = await admit(client, hospitals.a)
    recorded = await act(client, hospitals.a, stay, code="F20", performer="12345678",
                         specialty="internal_medicine")
    assert recorded.status_code == 201, recorded.text
    url = f"/api/v1/stays/{stay['id']}"
    refused = await client.patch(url, json={"kind": "outpatient"}, headers={
        **hospitals.a.auth(Role.clerk), "If-Match": f'"{stay["version"]}"'})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "kind" and "F20" in error["reason"]
    assert refused.json()["act_id"] == recorded.json()["id"]
    read = await client.get(url, headers=hospitals.a.auth(Role.clerk))
    assert (read.json()["kind"], read.json()["version"]) == ("inpatient", stay["version"])
    [kept] = (await client.get(f"{url}/acts", headers=hospitals.a.auth(Role.clerk))
              ).json()["items"]
    assert (kept["version"], kept["gross"]) == (recorded.json()["version"],
                                                recorded.json()["gross"])

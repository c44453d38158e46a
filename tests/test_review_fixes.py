"""Regressions found in review: each was a 500, a lost write or a rule bypassed."""

import asyncio
import base64
import json
import uuid

import httpx
import pytest

from luxfact.auth.roles import Role
from tests.conftest import Hospitals
from tests.patients.test_api import create as create_patient
from tests.patients.test_api import new_matricule
from tests.stays.test_api import act, admit, move

pytestmark = pytest.mark.usefixtures("catalogue")


def cursor(position: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


@pytest.mark.parametrize("moment", ["9999-12-31T23:30:00-05:00", "0001-01-01T00:30:00+05:00"])
async def test_extreme_date_times_are_422(client: httpx.AsyncClient, hospitals: Hospitals,
                                          moment: str) -> None:
    patient = await create_patient(client, hospitals.a)
    response = await client.post("/api/v1/stays", json={
        "patient_id": patient["id"], "kind": "inpatient", "admitted_at": moment},
        headers=hospitals.a.auth(Role.clerk))
    assert response.status_code == 422
    audit = await client.get("/api/v1/audit-events", params={"since": moment},
                             headers=hospitals.a.auth(Role.admin))
    assert audit.status_code == 422


@pytest.mark.parametrize(("path", "position"), [
    ("/api/v1/patients", [0, "a", "b", "zz"]),
    ("/api/v1/stays", ["2026-01-01T00:00:00", str(uuid.uuid4())]),
    ("/api/v1/audit-events", ["2026-01-01T00:00:00", str(uuid.uuid4())]),
])
async def test_forged_cursors_are_422(client: httpx.AsyncClient, hospitals: Hospitals,
                                      path: str, position: list) -> None:
    role = Role.admin if "audit" in path else Role.clerk
    response = await client.get(path, params={"cursor": cursor(position)},
                                headers=hospitals.a.auth(role))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.cursor"


async def test_huge_integer_in_a_body_is_400(client: httpx.AsyncClient,
                                             hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/patients",
                                 content=b'{"family_name": ' + b"1" * 5000 + b"}",
                                 headers={**hospitals.a.auth(Role.clerk),
                                          "Content-Type": "application/json"})
    assert response.status_code == 400


async def test_patch_keeps_identity_and_required_values(client: httpx.AsyncClient,
                                                        hospitals: Hospitals) -> None:
    created = await create_patient(client, hospitals.a)
    url = f"/api/v1/patients/{created['id']}"
    headers = {**hospitals.a.auth(Role.clerk), "If-Match": '"1"'}
    for body, field in (({"city": None}, "city"), ({"matricule": None}, "body"),
                        ({"birth_date": "2001-05-05"}, "body")):
        response = await client.patch(url, json=body, headers=headers)
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["field"] == field
    ok = await client.patch(url, json={"matricule": None, "no_matricule_reason": "other"},
                            headers=headers)
    assert ok.status_code == 200 and ok.json()["matricule"] is None


async def test_merged_record_refuses_writes_and_keeps_the_matricule(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    keep = await create_patient(client, hospitals.a, matricule=None, no_matricule_reason="other")
    dup = await create_patient(client, hospitals.a)
    clerk = hospitals.a.auth(Role.clerk)
    merged = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                               json={"duplicate_id": dup["id"]}, headers=clerk)
    assert merged.status_code == 200 and merged.json()["matricule"] == dup["matricule"]
    patch = await client.patch(f"/api/v1/patients/{dup['id']}", json={"city": "X"},
                               headers={**clerk, "If-Match": '"2"'})
    assert patch.status_code == 409
    coverage = await client.post(f"/api/v1/patients/{dup['id']}/coverages", json={
        "kind": "statutory", "payer": "CNS", "valid_from": "2020-01-01"}, headers=clerk)
    assert coverage.status_code == 409


async def test_discharge_before_an_act_is_refused(client: httpx.AsyncClient,
                                                  hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a)
    assert (await act(client, hospitals.a, stay,
                      performed_at="2026-03-04T10:00:00+01:00")).status_code == 201
    early = await move(client, hospitals.a, stay, type="discharge",
                       at="2026-03-03T10:00:00+01:00")
    assert early.status_code == 422 and early.json()["errors"][0]["field"] == "at"


async def test_room_class_change_before_priced_acts_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stay = await admit(client, hospitals.a)
    assert (await act(client, hospitals.a, stay, code="V1", performer="12345678",
                      performed_at="2026-03-03T10:00:00+01:00")).status_code == 201
    change = await move(client, hospitals.a, stay, type="transfer", room_class="first",
                        at="2026-03-03T09:00:00+01:00")
    assert change.status_code == 409 and "priced in the room class" in change.json()["detail"]
    later = await move(client, hospitals.a, stay, type="transfer", room_class="first",
                       at="2026-03-03T11:00:00+01:00")
    assert later.status_code == 201


async def test_concurrent_acts_cannot_bypass_a_daily_limit(client: httpx.AsyncClient,
                                                           hospitals: Hospitals) -> None:
    stay = await admit(client, hospitals.a, kind="outpatient")
    answers = await asyncio.gather(*(act(client, hospitals.a, stay, code="C1",
                                         performer="12345678") for _ in range(3)))
    assert sorted(r.status_code for r in answers) == [201, 422, 422]


async def test_idempotent_replay_keeps_etag_and_location(client: httpx.AsyncClient,
                                                         hospitals: Hospitals) -> None:
    body = {"matricule": new_matricule(), "family_name": "Replay", "given_name": "Eve",
            "birth_date": "1980-01-01", "sex": "F"}
    headers = {**hospitals.a.auth(Role.clerk), "Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/api/v1/patients", json=body, headers=headers)
    again = await client.post("/api/v1/patients", json=body, headers=headers)
    assert again.headers["etag"] == first.headers["etag"] == '"1"'
    assert again.headers["location"] == first.headers["location"]


async def test_a_query_parameter_given_twice_is_refused(client, hospitals) -> None:  # type: ignore[no-untyped-def]
    from luxfact.auth.roles import Role

    response = await client.get("/api/v1/patients?matricule=1&matricule=2",
                                headers=hospitals.a.auth(Role.clerk))
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "query.matricule",
                                          "reason": "given more than once"}]


async def test_an_endpoint_without_parameters_refuses_any(client: httpx.AsyncClient,
                                                          hospitals: Hospitals) -> None:
    """A parameter the endpoint does not read must not look obeyed: `?tenant=` on a read
    of one's own hospital, a filter on a single record."""
    patient = await create_patient(client, hospitals.a)
    for path, role in ((f"/api/v1/patients/{patient['id']}", Role.clerk),
                       ("/api/v1/tenant", Role.admin)):
        plain = await client.get(path, headers=hospitals.a.auth(role))
        assert plain.status_code == 200
        refused = await client.get(path, params={"tenant": hospitals.b.slug},
                                   headers=hospitals.a.auth(role))
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [{"field": "query.tenant",
                                             "reason": "not a parameter of this endpoint"}]

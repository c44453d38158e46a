"""Patients over the API, for the personas of two hospitals."""

import unicodedata
import uuid

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.patients.matricule import complete
from tests.conftest import Hospitals
from tests.identities import new_matricule


def patient_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"matricule": new_matricule(), "family_name": "Muller",
                               "given_name": "Anne", "birth_date": "1980-01-01", "sex": "F"}
    body.update(overrides)
    return body


async def create(client: httpx.AsyncClient, hospital, **overrides: object) -> dict:  # type: ignore[no-untyped-def]
    response = await client.post("/api/v1/patients", json=patient_body(**overrides),
                                  headers=hospital.auth(Role.clerk))
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_read_and_audit(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a, family_name="Müller", given_name="Jean-Luc")
    assert created["family_name"] == "Müller" and created["version"] == 1
    read = await client.get(f"/api/v1/patients/{created['id']}",
                            headers=hospitals.a.auth(Role.billing))
    assert read.status_code == 200 and read.headers["etag"] == '"1"'
    events = (await client.get(f"/api/v1/audit-events?object_id={created['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert {e["action"] for e in events} == {"patient.create", "patient.read"}
    assert created["matricule"] not in str(events)


async def test_other_hospital_sees_nothing(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a)
    for role in (Role.clerk, Role.billing, Role.integration):
        response = await client.get(f"/api/v1/patients/{created['id']}",
                                    headers=hospitals.b.auth(role))
        assert response.status_code == 404
    patch = await client.patch(f"/api/v1/patients/{created['id']}", json={"given_name": "X"},
                               headers={**hospitals.b.auth(Role.clerk), "If-Match": '"1"'})
    assert patch.status_code == 404
    search = await client.get(f"/api/v1/patients?matricule={created['matricule']}",
                              headers=hospitals.b.auth(Role.clerk))
    assert search.json()["items"] == []
    # The same person may be registered at the other hospital too: separate records.
    again = await client.post("/api/v1/patients",
                              json=patient_body(matricule=created["matricule"]),
                              headers=hospitals.b.auth(Role.clerk))
    assert again.status_code == 201 and again.json()["id"] != created["id"]


async def test_admin_may_not_read_patients(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a)
    response = await client.get(f"/api/v1/patients/{created['id']}",
                                headers=hospitals.a.auth(Role.admin))
    assert response.status_code == 403


@pytest.mark.parametrize(("matricule", "reason"), [
    ("1990093012348", "Luhn"), ("1990093012357", "Verhoeff"), ("199009301235", "not 12"),
    ("19900930123581", "not 14"), ("19900930A2358", "digits only"),
    (complete("19901301123"), "month 13"),
])
async def test_invalid_matricules_are_refused(
    client: httpx.AsyncClient, hospitals: Hospitals, matricule: str, reason: str
) -> None:
    response = await client.post("/api/v1/patients", json=patient_body(matricule=matricule),
                                 headers=hospitals.a.auth(Role.clerk))
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "matricule" and reason in error["reason"]


async def test_other_bad_input(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    clerk = hospitals.a.auth(Role.clerk)
    cases = [
        (patient_body(birth_date="2099-01-01"), "birth_date"),
        (patient_body(matricule=new_matricule("19900101"), birth_date="1980-01-01"), "body"),
        (patient_body(family_name="x" * 10000), "family_name"),
        (patient_body(family_name="<script>alert(1)</script>"), "family_name"),
        (patient_body(sex="Q"), "sex"),
        (patient_body(matricule=None), "body"),
        (patient_body(email="not-an-email"), "body"),
    ]
    for body, field in cases:
        response = await client.post("/api/v1/patients", json=body, headers=clerk)
        assert response.status_code == 422, body
        assert response.json()["errors"][0]["field"] == field, response.json()


async def test_patient_without_matricule(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a, matricule=None, no_matricule_reason="foreign",
                           family_name="Dupont", given_name="Pierre")
    assert created["matricule"] is None and created["no_matricule_reason"] == "foreign"


async def test_duplicate_matricule_is_409(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a)
    again = await client.post("/api/v1/patients", json=patient_body(matricule=created["matricule"]),
                              headers=hospitals.a.auth(Role.clerk))
    assert again.status_code == 409 and again.json()["existing_id"] == created["id"]


async def test_search_forgives_accents_case_and_one_typo(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    family = "Müller" + uuid.uuid4().hex[:4].translate(str.maketrans("0123456789", "ghijklmnop"))
    created = await create(client, hospitals.a, family_name=family, given_name="Léa",
                           birth_date="1975-03-04", matricule=new_matricule("19750304"))
    clerk = hospitals.a.auth(Role.clerk)
    folded = family.replace("ü", "u")
    typo = folded[:3] + "x" + folded[4:]  # one substitution
    missing = folded[:2] + folded[3:]  # one deletion
    nfd = unicodedata.normalize("NFD", family)
    for q in (folded.upper(), folded[:5].lower(), typo, missing, nfd, f"{folded} lea",
              "04.03.1975 " + folded):
        found = (await client.get("/api/v1/patients", params={"q": q}, headers=clerk)).json()
        assert created["id"] in [p["id"] for p in found["items"]], q
    by_matricule = (await client.get("/api/v1/patients", params={"q": created["matricule"]},
                                     headers=clerk)).json()["items"]
    assert [p["id"] for p in by_matricule] == [created["id"]]
    by_birth = (await client.get("/api/v1/patients",
                                 params={"birth_date": "1975-03-04", "q": folded},
                                 headers=clerk)).json()["items"]
    assert [p["id"] for p in by_birth] == [created["id"]]
    wrong_birth = (await client.get("/api/v1/patients",
                                    params={"birth_date": "1975-03-05", "q": folded},
                                    headers=clerk)).json()["items"]
    assert wrong_birth == []


async def test_nfd_input_is_stored_nfc(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    created = await create(client, hospitals.a, family_name=unicodedata.normalize("NFD", "Bäcker"))
    assert created["family_name"] == unicodedata.normalize("NFC", "Bäcker")


async def test_pagination_walks_all_once(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    family = "Pagin" + uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "abcdefghij"))
    ids = {(await create(client, hospitals.a, family_name=family, given_name=g))["id"]
           for g in ("Ada", "Bea", "Cy", "Dan", "Eve")}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": family, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/patients", params=params,
                                 headers=hospitals.a.auth(Role.clerk))).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 5 and set(seen) == ids


async def test_patch_needs_the_current_etag(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    created = await create(client, hospitals.a)
    url = f"/api/v1/patients/{created['id']}"
    clerk = hospitals.a.auth(Role.clerk)
    missing = await client.patch(url, json={"given_name": "Anna"}, headers=clerk)
    assert missing.status_code == 428
    ok = await client.patch(url, json={"given_name": "Anna"}, headers={**clerk, "If-Match": '"1"'})
    assert ok.status_code == 200 and ok.json()["given_name"] == "Anna"
    assert ok.headers["etag"] == '"2"'
    stale = await client.patch(url, json={"given_name": "Anne"}, headers={**clerk,
                                                                          "If-Match": '"1"'})
    assert stale.status_code == 412
    assert (await client.get(url, headers=clerk)).json()["given_name"] == "Anna"


async def test_idempotent_create(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    body = patient_body()
    headers = {**hospitals.a.auth(Role.integration), "Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/api/v1/patients", json=body, headers=headers)
    second = await client.post("/api/v1/patients", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await client.post("/api/v1/patients", json={**body, "given_name": "Other"},
                              headers=headers)
    assert other.status_code == 422
    found = (await client.get(f"/api/v1/patients?matricule={body['matricule']}",
                              headers=hospitals.a.auth(Role.clerk))).json()["items"]
    assert len(found) == 1


async def test_duplicates_and_merge(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    family = "Dupli" + uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "abcdefghij"))
    keep = await create(client, hospitals.a, family_name=family, birth_date="1970-05-05",
                        matricule=new_matricule("19700505"))
    dup = await create(client, hospitals.a, family_name=family[:-1] + "z", matricule=None,
                       no_matricule_reason="unidentified", birth_date="1970-05-05")
    clerk = hospitals.a.auth(Role.clerk)
    candidates = (await client.get(f"/api/v1/patients/{keep['id']}/duplicates",
                                   headers=clerk)).json()["items"]
    assert [c["id"] for c in candidates] == [dup["id"]]
    self_merge = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                                   json={"duplicate_id": keep["id"]}, headers=clerk)
    assert self_merge.status_code == 422
    other = await create(client, hospitals.b)
    cross = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                              json={"duplicate_id": other["id"]}, headers=clerk)
    assert cross.status_code == 422
    merged = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                               json={"duplicate_id": dup["id"]}, headers=clerk)
    assert merged.status_code == 200
    gone = (await client.get(f"/api/v1/patients/{dup['id']}", headers=clerk)).json()
    assert gone["merged_into"] == keep["id"]
    again = await client.post(f"/api/v1/patients/{keep['id']}/merge",
                              json={"duplicate_id": dup["id"]}, headers=clerk)
    assert again.status_code == 409


async def test_merge_refused_when_coverages_conflict(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = await create(client, hospitals.a)
    b = await create(client, hospitals.a, matricule=None, no_matricule_reason="foreign")
    clerk = hospitals.a.auth(Role.clerk)
    for patient, payer in ((a, "CNS"), (b, "CMFEP")):
        response = await client.post(f"/api/v1/patients/{patient['id']}/coverages", json={
            "kind": "statutory", "payer": payer, "valid_from": "2020-01-01"}, headers=clerk)
        assert response.status_code == 201
    refused = await client.post(f"/api/v1/patients/{a['id']}/merge",
                                json={"duplicate_id": b["id"]}, headers=clerk)
    assert refused.status_code == 409 and "coverages conflict" in refused.json()["detail"]


async def test_coverages(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    patient = await create(client, hospitals.a)
    url = f"/api/v1/patients/{patient['id']}/coverages"
    clerk = hospitals.a.auth(Role.clerk)
    ok = await client.post(url, json={"kind": "statutory", "payer": "CNS",
                                      "valid_from": "2020-01-01", "valid_to": "2025-12-31"},
                           headers=clerk)
    assert ok.status_code == 201
    overlap = await client.post(url, json={"kind": "statutory", "payer": "CMFEP",
                                           "valid_from": "2025-06-01"}, headers=clerk)
    assert overlap.status_code == 409
    accident = await client.post(url, json={"kind": "accident", "payer": "AAA",
                                            "valid_from": "2024-01-01"}, headers=clerk)
    assert accident.status_code == 422
    attestation = await client.post(url, json={"kind": "social_tiers_payant", "payer": "OS",
                                                "valid_from": "2024-01-01",
                                                "valid_to": "2024-12-31"}, headers=clerk)
    assert attestation.status_code == 422  # longer than 6 months
    listed = (await client.get(url, headers=clerk)).json()["items"]
    assert [c["payer"] for c in listed] == ["CNS"]


@pytest.mark.parametrize("narrow", [False, True])
async def test_exact_matches_come_first_then_typos_across_pages(
    client: httpx.AsyncClient, hospitals: Hospitals, narrow: bool
) -> None:
    stem = "Rank" + uuid.uuid4().hex[:6].translate(str.maketrans("0123456789", "abcdefghij"))
    born = {"birth_date": "1961-02-03", "matricule": None, "no_matricule_reason": "other"}
    exact = {(await create(client, hospitals.a, family_name=stem, given_name=g, **born))["id"]
             for g in ("Zoe", "Alma")}
    typo = {(await create(client, hospitals.a, family_name=stem[:-1] + "q", given_name=g,
                          **born))["id"] for g in ("Yan", "Bob")}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"q": stem, "limit": 1, **({"cursor": cursor} if cursor else {}),
                  **({"birth_date": "1961-02-03"} if narrow else {})}
        page = (await client.get("/api/v1/patients", params=params,
                                 headers=hospitals.a.auth(Role.clerk))).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen[:2]) == exact and set(seen[2:]) == typo and len(seen) == 4


async def test_legacy_number_is_kept_for_search_only(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    from luxfact.patients.matricule import legacy_check_digit

    base = uuid.uuid4().int
    first_ten = next(f for i in range(20)
                     if legacy_check_digit(f := "1958071" + f"{(base + i) % 1000:03d}"))
    legacy = first_ten + str(legacy_check_digit(first_ten))
    created = await create(client, hospitals.a, legacy_matricule=legacy)
    found = (await client.get("/api/v1/patients", params={"matricule": legacy},
                              headers=hospitals.a.auth(Role.clerk))).json()["items"]
    assert [p["id"] for p in found] == [created["id"]]
    wrong = legacy[:10] + str((int(legacy[10]) + 1) % 10)
    bad = await client.post("/api/v1/patients", json=patient_body(legacy_matricule=wrong),
                            headers=hospitals.a.auth(Role.clerk))
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "legacy_matricule"

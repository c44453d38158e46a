"""Credentials, roles and tenant boundaries, for every persona of two hospitals."""

import uuid

import httpx
import pytest

from luxfact.auth.credentials import new_api_key, parse_api_key
from luxfact.auth.roles import Role
from tests.conftest import Hospitals

ADMIN_ONLY = [("GET", "/api/v1/audit-events"), ("GET", "/api/v1/api-keys"),
              ("GET", "/api/v1/users")]


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
async def test_no_credentials_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key",
    "Bearer lfx_00000000000000000000000000000000_short",
])
async def test_malformed_credentials_are_401(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/api/v1/api-keys", headers={"Authorization": header})
    assert response.status_code == 401


async def test_unknown_tenant_key_is_401(client: httpx.AsyncClient) -> None:
    key = new_api_key(uuid.uuid4())
    response = await client.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


async def test_key_claiming_another_tenant_is_401(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    # B's secret presented under A's tenant id: the hash does not exist in A.
    _, secret_b = parse_api_key(hospitals.b.keys[Role.admin])  # type: ignore[misc]
    forged = new_api_key(hospitals.a.id, secret_b)
    response = await client.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


@pytest.mark.parametrize("role", [Role.clerk, Role.billing, Role.integration])
@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
async def test_wrong_role_is_403(
    client: httpx.AsyncClient, hospitals: Hospitals, role: Role, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=hospitals.a.auth(role))
    assert response.status_code == 403
    assert role.value in response.json()["detail"]


async def test_admin_creates_key_shown_once_and_it_works(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    admin = hospitals.a.auth(Role.admin)
    created = await client.post("/api/v1/api-keys", json={"name": "HIS", "role": "admin"},
                                headers=admin)
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith(f"lfx_{hospitals.a.id.hex}_")
    assert created.headers["cache-control"] == "no-store"
    listed = await client.get("/api/v1/api-keys", headers=admin)
    row = next(k for k in listed.json()["items"] if k["id"] == body["id"])
    assert "key" not in row and row["prefix"] == body["prefix"]
    used = await client.get("/api/v1/api-keys", headers={"Authorization": f"Bearer {body['key']}"})
    assert used.status_code == 200
    listed = await client.get("/api/v1/api-keys", headers=admin)
    row = next(k for k in listed.json()["items"] if k["id"] == body["id"])
    assert row["last_used_at"] is not None


async def test_revocation_takes_effect_at_once(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    admin = hospitals.a.auth(Role.admin)
    created = (await client.post("/api/v1/api-keys", json={"name": "temp", "role": "clerk"},
                                 headers=admin)).json()
    other = {"Authorization": f"Bearer {created['key']}"}
    assert (await client.get("/api/v1/api-keys", headers=other)).status_code == 403
    revoked = await client.post(f"/api/v1/api-keys/{created['id']}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await client.get("/api/v1/api-keys", headers=other)).status_code == 401


async def test_other_hospital_gets_404_for_a_key(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    created = (await client.post("/api/v1/api-keys", json={"name": "mine", "role": "clerk"},
                                 headers=hospitals.a.auth(Role.admin))).json()
    response = await client.post(f"/api/v1/api-keys/{created['id']}/revoke",
                                 headers=hospitals.b.auth(Role.admin))
    assert response.status_code == 404
    listed = await client.get("/api/v1/api-keys", headers=hospitals.b.auth(Role.admin))
    assert created["id"] not in {k["id"] for k in listed.json()["items"]}
    still = await client.get("/api/v1/api-keys",
                             headers={"Authorization": f"Bearer {created['key']}"})
    assert still.status_code == 403  # alive (clerk may not list keys), not revoked by B


async def test_not_a_uuid_is_404(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/api-keys/../revoke", headers=hospitals.a.auth("admin"))
    assert response.status_code == 404
    response = await client.post("/api/v1/api-keys/123/revoke", headers=hospitals.a.auth("admin"))
    assert response.status_code == 404


async def test_users_are_created_per_hospital(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    payload = {"email": "Desk@Example.lu", "role": "clerk", "password": "correct horse battery"}
    created = await client.post("/api/v1/users", json=payload, headers=hospitals.a.auth("admin"))
    assert created.status_code == 201
    assert created.json()["email"] == "desk@example.lu"
    assert "password" not in created.text and "argon2" not in created.text
    again = await client.post("/api/v1/users", json=payload, headers=hospitals.a.auth("admin"))
    assert again.status_code == 409
    # The same e-mail in another hospital is another user.
    other = await client.post("/api/v1/users", json=payload, headers=hospitals.b.auth("admin"))
    assert other.status_code == 201
    listed_b = await client.get("/api/v1/users", headers=hospitals.b.auth("admin"))
    assert [u["id"] for u in listed_b.json()["items"]] == [other.json()["id"]]


async def test_weak_password_is_refused_naming_the_field(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    payload = {"email": "x@example.lu", "role": "clerk", "password": "short"}
    response = await client.post("/api/v1/users", json=payload, headers=hospitals.a.auth("admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "password"

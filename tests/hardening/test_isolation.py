"""Tenant isolation, route by route: hospital B, with A's ids, gets 404 and not a byte of A.

The routes come from the route table itself (`luxfact.routes.routes()`), so a new route is
checked the day it is added; one whose path parameter names an object this file does not
create in hospital A fails ("add an id for <param>") until someone adds it below.
"""

import re
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg
import httpx
import pytest
from starlette.routing import Route

from luxfact.auth.roles import Role
from luxfact.routes import routes
from luxfact.settings import Settings
from tests.billing.test_invoices import DISCHARGED, bill
from tests.claims.test_batches import build
from tests.claims.test_returns import answer_with_rejections, post_return
from tests.conftest import BACKEND, Hospital, Hospitals, _asyncpg_dsn
from tests.hardening.permissions import PERMISSIONS, PUBLIC, SIGNED_IN
from tests.hl7 import messages as hl7
from tests.hl7.helpers import accepted
from tests.patients.test_api import create as create_patient
from tests.patients.test_api import new_matricule
from tests.stays.test_api import act, admit, move
from tests.web.desk import csrf_of, signed_in

pytestmark = pytest.mark.usefixtures("catalogue")

PARAM = re.compile(r"{(\w+)}")
# Routes whose path parameter names shared, national data (the tariff catalogue): every
# hospital reads the same, so there is nothing of A's to hide.
SHARED = {"/api/v1/tariffs/acts", "/api/v1/tariffs/acts/{code}"}
# Query strings that name one of A's objects, tried on B's lists besides the bare list.
FILTERS = {
    "/api/v1/audit-events": ["object_id={patient_id}", "object_id={invoice_id}"],
    "/api/v1/patients": ["q={family}", "matricule={matricule}"],
    "/api/v1/stays": ["patient_id={patient_id}"],
    "/api/v1/invoices": ["stay_id={stay_id}", "patient_id={patient_id}"],
    "/api/v1/claim-lines": ["status=rejected", "status=paid"],
}
PAID_ON = "2026-03-10"


@dataclass
class World:
    """Hospital A's objects: ids by path-parameter name, and strings only A may read."""

    ids: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    answer: bytes = b""


async def hospital_a(client: httpx.AsyncClient, a: Hospital) -> World:
    world = World()
    tag = uuid.uuid4().hex[:8]
    family = f"Isolata{tag}"
    birth = date(1960, 1, 1) + timedelta(days=uuid.uuid4().int % 7300)
    matricule = new_matricule(birth.strftime("%Y%m%d"))
    # A patient with coverage, a stay with acts, discharged (admit adds the CNS coverage).
    patient = await create_patient(client, a, family_name=family, given_name="Secret",
                                   birth_date=birth.isoformat(), matricule=matricule)
    stay = await admit(client, a, patient=patient)
    for body in ({"code": "V1", "performer": "12345678"}, {"code": "N101"},
                 {"code": "CP1", "performed_at": "2026-03-03T10:00:00+01:00"}):
        assert (await act(client, a, stay, **body)).status_code == 201
    assert (await move(client, a, stay, type="discharge", at=DISCHARGED)).status_code == 201
    acts = (await client.get(f"/api/v1/stays/{stay['id']}/acts",
                             headers=a.auth(Role.clerk))).json()["items"]
    # An issued invoice, in a claim batch frozen, sent, and answered.
    issued = await bill(client, a, stay)
    assert issued.status_code == 201, issued.text
    invoice = issued.json()["invoices"][0]
    built = await build(client, a)
    assert built.status_code == 201, built.text
    batch = built.json()
    billing = a.auth(Role.billing)
    url = f"/api/v1/claim-batches/{batch['id']}"
    assert (await client.post(f"{url}/freeze", headers=billing)).status_code == 200
    assert (await client.post(f"{url}/sent", headers=billing)).status_code == 200
    claim = await client.get(f"{url}/file", headers=billing)
    world.answer = answer_with_rejections(claim.content)
    returned = await post_return(client, a, batch, world.answer)
    assert returned.status_code == 200, returned.text
    batch = (await client.get(url, headers=billing)).json()
    # An API key, a user, an HL7 message, a webhook endpoint.
    admin = a.auth(Role.admin)
    key = await client.post("/api/v1/api-keys", json={"name": f"key-{tag}", "role": "clerk"},
                            headers=admin)
    assert key.status_code == 201, key.text
    user = await client.post("/api/v1/users", json={
        "email": f"user-{tag}@{a.slug}.lu", "role": "clerk", "password": "Correct-horse-42!",
        "display_name": f"User {tag}"}, headers=admin)
    assert user.status_code == 201, user.text
    hl7_matricule = hl7.new_matricule()
    await accepted(client, a, hl7.admit(f"CTL{tag}", hl7_matricule, f"VIS{tag}"))
    messages = (await client.get("/api/v1/hl7/messages", headers=admin)).json()["items"]
    hook = await client.post("/api/v1/webhooks", json={
        "url": f"https://hooks-{tag}.example.org/in", "events": ["stay.admitted"],
        "description": f"hook {tag}"}, headers=admin)
    assert hook.status_code == 201, hook.text

    world.ids = {
        "patient_id": patient["id"], "stay_id": stay["id"], "act_id": acts[0]["id"],
        "invoice_id": invoice["id"], "line": "1", "number": "1", "batch_id": batch["id"],
        "key_id": key.json()["id"], "user_id": user.json()["id"],
        "message_id": messages[0]["id"], "webhook_id": hook.json()["id"],
        # Not path parameters: what B might search A's patient by.
        "family": family, "matricule": matricule,
    }
    world.secrets = [family, matricule, invoice["number"], hl7_matricule, f"CTL{tag}",
                     f"VIS{tag}", f"key-{tag}", f"user-{tag}", f"hooks-{tag}",
                     *world.ids.values()]
    # The claim file's reference and fingerprint.
    world.secrets += [batch["file_reference"], batch["sha256"]]
    world.secrets = [s for s in world.secrets if len(s) >= 6]
    return world


def fill(path: str, ids: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in ids:
            raise AssertionError(f"{path}: add an id for {name} (an object of hospital A)")
        return ids[name]
    return PARAM.sub(value, path)


def bodies(world: World) -> dict[tuple[str, str], dict[str, object]]:
    """A valid request for the routes that read a body, so the lookup is really reached."""
    return {
        ("POST", "/api/v1/claim-lines/{invoice_id}/{line}/write-off"): {
            "json": {"reason": "isolation"}},
        ("POST", "/api/v1/invoices/{invoice_id}/credit-notes"): {
            "json": {"reason": "isolation"}},
        ("POST", "/api/v1/invoices/{invoice_id}/payments"): {
            "json": {"amount": "1.00", "paid_on": PAID_ON, "method": "transfer"}},
        ("PATCH", "/api/v1/patients/{patient_id}"): {
            "json": {"given_name": "Mallory"}, "headers": {"If-Match": '"1"'}},
        ("POST", "/api/v1/patients/{patient_id}/coverages"): {
            "json": {"kind": "complementary", "payer": "DKV", "valid_from": "2024-01-01"}},
        ("POST", "/api/v1/patients/{patient_id}/merge"): {
            "json": {"duplicate_id": str(uuid.uuid4())}},
        ("POST", "/api/v1/stays/{stay_id}/acts"): {
            "json": {"code": "N101", "performed_at": "2026-03-02T10:00:00+01:00"}},
        ("PATCH", "/api/v1/stays/{stay_id}"): {
            "json": {"attending_doctor": "23456789"}, "headers": {"If-Match": '"1"'}},
        ("PATCH", "/api/v1/stays/{stay_id}/acts/{act_id}"): {
            "json": {"note": "isolation"}, "headers": {"If-Match": '"1"'}},
        ("POST", "/api/v1/stays/{stay_id}/invoices"): {"json": {"kind": "final"}},
        ("POST", "/api/v1/stays/{stay_id}/movements"): {
            "json": {"type": "transfer", "at": "2026-03-03T08:00:00+01:00", "unit": "MED2"}},
        ("POST", "/api/v1/claim-batches/{batch_id}/return"): {
            "content": world.answer, "headers": {"Content-Type": "application/xml"}},
        ("POST", "/api/v1/hl7/messages/{message_id}/replay"): {},
        ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"json": {"description": "isolation"}},
        ("POST", "/api/v1/api-keys/{key_id}/revoke"): {},
    }


def api_routes() -> list[tuple[str, str]]:
    found = []
    for route in routes():
        if isinstance(route, Route) and route.path.startswith("/api/"):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                found.append((method, route.path))
    return sorted(found)


def role_for(method: str, path: str) -> Role:
    """A role of B allowed on the route (the least privileged first)."""
    allowed = PERMISSIONS[(method, path)]
    for role in (Role.integration, Role.clerk, Role.billing, Role.admin):
        if role.value in allowed:
            return role
    raise AssertionError(f"{method} {path}: no role may call it")


def leaks(response: httpx.Response, secrets: list[str], url: str = "") -> list[str]:
    """A's strings in B's answer, but for the ids B itself put in the URL (echoed back in
    a problem's `instance`: B knew them already)."""
    secrets = [secret for secret in secrets if secret not in url]
    body = response.content.decode("utf-8", errors="replace")
    headers = " ".join(f"{k}: {v}" for k, v in response.headers.items())
    return [secret for secret in secrets if secret in body or secret in headers]


@pytest.fixture
async def world(client: httpx.AsyncClient, hospitals: Hospitals) -> World:
    return await hospital_a(client, hospitals.a)


async def test_b_cannot_reach_any_of_a_s_objects(client: httpx.AsyncClient,
                                                 hospitals: Hospitals, world: World) -> None:
    requests = bodies(world)
    failures = []
    checked = 0
    for method, path in api_routes():
        if not PARAM.search(path) or path in SHARED or PUBLIC in PERMISSIONS[(method, path)]:
            continue
        url = fill(path, world.ids)
        extra = dict(requests.get((method, path), {}))
        headers = {**extra.pop("headers", {}), **hospitals.b.auth(role_for(method, path))}
        response = await client.request(method, url, headers=headers, **extra)
        checked += 1
        if response.status_code != 404:
            failures.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        if found := leaks(response, world.secrets, url):
            failures.append(f"{method} {path}: B's response holds A's {found}")
    assert checked >= 40
    assert not failures, "\n".join(failures)
    # And A's objects are all still there, untouched by B's attempts.
    patient = await client.get(f"/api/v1/patients/{world.ids['patient_id']}",
                               headers=hospitals.a.auth(Role.clerk))
    assert patient.status_code == 200 and patient.json()["given_name"] == "Secret"
    hooks = await client.get("/api/v1/webhooks", headers=hospitals.a.auth(Role.admin))
    assert [h["id"] for h in hooks.json()["items"]] == [world.ids["webhook_id"]]
    assert world.ids["webhook_id"] not in str(
        (await client.get("/api/v1/webhooks", headers=hospitals.b.auth(Role.admin))).json())


async def test_b_s_lists_hold_nothing_of_a(client: httpx.AsyncClient, hospitals: Hospitals,
                                           world: World) -> None:
    failures = []
    for method, path in api_routes():
        roles = PERMISSIONS[(method, path)]
        if method != "GET" or PARAM.search(path) or PUBLIC in roles or path in SHARED:
            continue
        headers = hospitals.b.auth(role_for(method, path))
        urls = [path] + [f"{path}?{query.format(**world.ids)}"
                         for query in FILTERS.get(path, [])]
        for url in urls:
            response = await client.get(url, headers=headers)
            if response.status_code >= 300 and response.status_code != 404:
                failures.append(f"GET {url}: {response.status_code} {response.text[:200]}")
            if found := leaks(response, world.secrets, url):
                failures.append(f"GET {url}: B's response holds A's {found}")
    assert not failures, "\n".join(failures)
    # The same lists, asked by A, do show A's strings: the check above can fail.
    for path, role in (("/api/v1/patients", Role.clerk), ("/api/v1/invoices", Role.billing),
                       ("/api/v1/claim-lines", Role.billing), ("/api/v1/users", Role.admin)):
        mine = await client.get(path, headers=hospitals.a.auth(role))
        assert mine.status_code == 200 and leaks(mine, world.secrets), path


async def test_b_s_desk_cannot_open_a_s_pages(app: object, owner_db: object,
                                              hospitals: Hospitals, world: World) -> None:
    failures = []
    desk = sorted(key for key in PERMISSIONS
                  if not key[1].startswith("/api/") and PARAM.search(key[1]))
    for role in (Role.clerk, Role.billing, Role.admin):
        async with signed_in(app, owner_db, hospitals.b, role) as browser:  # type: ignore[arg-type]
            token = csrf_of(await browser.get("/desk"))
            for method, path in desk:
                if not PERMISSIONS[(method, path)] & {role.value, SIGNED_IN}:
                    continue
                url = fill(path, world.ids)
                if method == "GET":
                    response = await browser.get(url)
                else:
                    response = await browser.post(url, data={"csrf": token,
                                                              "reason": "isolation"})
                if response.status_code != 404:
                    failures.append(f"{method} {path} as {role}: {response.status_code}")
                if found := leaks(response, world.secrets, url):
                    failures.append(f"{method} {path} as {role}: holds A's {found}")
    assert not failures, "\n".join(failures)


@pytest.mark.postgres
async def test_every_tenant_table_has_forced_rls(settings: Settings) -> None:
    """Every table with a tenant_id, found in the catalogue itself: RLS on, forced, and a
    policy. (tests/db/test_row_level_security.py checks the same against the models.)"""
    assert BACKEND == "postgres"
    conn = await asyncpg.connect(_asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT n.nspname || '.' || c.relname AS name, c.relrowsecurity,"
            " c.relforcerowsecurity,"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
            "  AND a.attname = 'tenant_id' AND NOT a.attisdropped)")
    finally:
        await conn.close()
    assert rows, "no table with a tenant_id column: is this the right database?"
    offenders = [row["name"] for row in rows
                 if not (row["relrowsecurity"] and row["relforcerowsecurity"]
                         and row["policies"] >= 1)]
    assert not offenders, f"tables with a tenant_id but no forced RLS and policy: {offenders}"

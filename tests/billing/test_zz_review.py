import asyncio, base64, json, uuid
from datetime import date
import httpx, pytest
from sqlalchemy import text
from luxfact.auth.roles import Role
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")

def cur(pos):
    return base64.urlsafe_b64encode(json.dumps(pos).encode()).decode().rstrip("=")

async def test_inputs(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    h = hospitals.a.auth(Role.billing)
    stay = await stay_with_acts(client, hospitals.a)
    inv = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    urls = [
        "/api/v1/invoices?issued_from=1850-01-01&issued_to=2200-12-31",
        "/api/v1/invoices?issued_to=1850-01-01",
        "/api/v1/invoices?cursor=" + cur(["0001-01-01T00:00:00+14:00", str(uuid.uuid4())]),
        "/api/v1/invoices?cursor=" + cur(["9999-12-31T23:59:59-14:00", str(uuid.uuid4())]),
        "/api/v1/invoices?cursor=" + cur([1, 2]),
        "/api/v1/invoices?cursor=" + cur(["2026-01-01T00:00:00+00:00", "x"]),
        "/api/v1/invoices?status=bogus", "/api/v1/invoices?limit=0", "/api/v1/invoices?patient_id=x",
        "/api/v1/invoices?status=overdue&issued_from=2026-13-01",
        f"/api/v1/invoices/{uuid.uuid4()}", f"/api/v1/invoices/{uuid.uuid4()}/pdf",
        f"/api/v1/invoices/{inv['id']}/reminders/1", f"/api/v1/invoices/{inv['id']}/reminders/%D9%A3",
        f"/api/v1/invoices/{inv['id']}/reminders/-1", f"/api/v1/invoices/{uuid.uuid4()}/payments",
        "/api/v1/invoices/not-a-uuid",
    ]
    for u in urls:
        r = await client.get(u, headers=h)
        print("GET", u[:80], r.status_code)
    r = await client.get("/api/v1/tenant", headers=hospitals.a.auth(Role.admin)); print("tenant", r.status_code)
    posts = [
        (f"/api/v1/stays/{stay['id']}/invoices", {"kind": "interim", "until": "2200-12-31"}),
        (f"/api/v1/stays/{stay['id']}/invoices", {"kind": "interim", "dry_run": "yes"}),
        (f"/api/v1/stays/{stay['id']}/invoices", {"kind": "interim", "until": 20260301}),
        (f"/api/v1/stays/{uuid.uuid4()}/invoices", {"kind": "final"}),
        (f"/api/v1/invoices/{inv['id']}/credit-notes", {"reason": "x", "lines": [2**80]}),
        (f"/api/v1/invoices/{inv['id']}/credit-notes", {"reason": "x", "lines": [True]}),
        (f"/api/v1/invoices/{inv['id']}/credit-notes", {"reason": "x", "lines": []}),
        (f"/api/v1/invoices/{inv['id']}/credit-notes", {"reason": "x" * 501}),
        (f"/api/v1/invoices/{inv['id']}/credit-notes", ["x"]),
        (f"/api/v1/invoices/{inv['id']}/payments", {"amount": "999999999.99", "paid_on": date.today().isoformat(), "method": "cash"}),
        (f"/api/v1/invoices/{inv['id']}/payments", {"amount": "1", "paid_on": "1850-01-01", "method": "cash"}),
        (f"/api/v1/invoices/{inv['id']}/payments", {"amount": "0.001", "paid_on": date.today().isoformat(), "method": "cash"}),
        (f"/api/v1/invoices/{inv['id']}/payments", {"amount": "1", "paid_on": date.today().isoformat(), "method": "cash", "reference": "\x00"}),
        (f"/api/v1/invoices/{inv['id']}/reminders", None),
        (f"/api/v1/invoices/{uuid.uuid4()}/reminders", None),
    ]
    for u, body in posts:
        r = await client.post(u, json=body, headers=h) if body is not None else await client.post(u, headers=h)
        print("POST", u[-40:], str(body)[:60], r.status_code, r.text[:150])
    for m in ("PATCH", "DELETE", "PUT"):
        r = await client.request(m, f"/api/v1/invoices/{uuid.uuid4()}", headers=h); print(m, r.status_code)

"""Webhooks: signed events to a real receiver, retries, timeouts, isolation, rollback."""

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.jobs import handlers, queue  # noqa: F401 (handlers: webhook.deliver)
from luxfact.jobs.models import Job
from luxfact.jobs.worker import Worker
from luxfact.kit import context
from luxfact.kit.time import utcnow
from luxfact.settings import Settings
from luxfact.stays import service as stays
from luxfact.stays.schemas import StayIn
from luxfact.webhooks import addresses, deliver, service
from luxfact.webhooks.models import WebhookDelivery
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient
from tests.stays.test_api import admit, move
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.usefixtures("catalogue")


@pytest.fixture
async def app_db(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.effective_app_database_url, pool_size=8)
    yield db
    await db.dispose()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.stop()


async def drain(worker: Worker, rounds: int = 50) -> None:
    for _ in range(rounds):
        await worker.run_once()
        if worker.running:
            await asyncio.wait(worker.running)
        else:
            return


async def subscribe(client: httpx.AsyncClient, hospital: Hospital, url: str,
                    events: list[str] | None = None) -> dict:
    response = await client.post("/api/v1/webhooks", json={
        "url": url, "events": events or ["stay.admitted", "stay.discharged"],
        "description": "ADT bridge"}, headers=hospital.auth(Role.admin))
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    return response.json()


async def deliveries(client: httpx.AsyncClient, hospital: Hospital, hook: dict) -> list[dict]:
    response = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries",
                                headers=hospital.auth(Role.admin))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def due_now(db: Database, tenant_id: uuid.UUID) -> None:
    """As if the backoff had passed."""
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            await session.execute(queue.J.update().where(
                queue.J.c.tenant_id == tenant_id, queue.J.c.kind == "webhook.deliver",
                queue.J.c.state == "queued").values(run_at=utcnow()))


async def test_an_admission_is_delivered_signed(client: httpx.AsyncClient,
                                                hospitals: Hospitals, app_db: Database,
                                                receiver: Receiver) -> None:
    hook = await subscribe(client, hospitals.a, receiver.url)
    secret = hook["secret"]
    assert secret.startswith("whsec_") and hook["events"] == ["stay.admitted",
                                                              "stay.discharged"]
    listed = (await client.get("/api/v1/webhooks", headers=hospitals.a.auth(Role.admin))).json()
    assert [h["id"] for h in listed["items"]] == [hook["id"]]
    assert "secret" not in listed["items"][0] and secret not in json.dumps(listed)

    patient = await create_patient(client, hospitals.a)
    stay = await admit(client, hospitals.a, patient=patient)
    assert receiver.requests == []  # nothing is sent by the request itself
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.headers["content-type"] == "application/json"
    event = json.loads(request.body)
    assert set(event) == {"id", "type", "created_at", "tenant", "data"}
    assert event["type"] == "stay.admitted" and event["tenant"] == hospitals.a.slug
    assert event["data"]["stay_id"] == stay["id"]
    assert event["data"]["patient_id"] == patient["id"]
    assert request.headers["luxfact-event-id"] == event["id"]
    # No identity of the patient beyond ids.
    for field in ("matricule", "family_name", "given_name"):
        assert str(patient[field]) not in request.body.decode(), field
    # The signature, checked as a receiver would, with the secret alone.
    parts = dict(p.split("=", 1) for p in request.headers["luxfact-signature"].split(","))
    assert abs(int(parts["t"]) - time.time()) < 60
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + request.body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert deliver.verify(secret, request.headers["luxfact-signature"], request.body)
    assert not deliver.verify("whsec_other", request.headers["luxfact-signature"],
                              request.body)
    [logged] = await deliveries(client, hospitals.a, hook)
    assert logged["state"] == "delivered" and logged["attempts"] == 1
    assert logged["last_status_code"] == 200 and logged["event_id"] == event["id"]
    assert logged["event_type"] == "stay.admitted" and logged["delivered_at"]

    # A discharge is the next event; an act recorded is none (not subscribed).
    out = await move(client, hospitals.a, stay, type="discharge",
                     at="2026-03-05T11:00:00+01:00")
    assert out.status_code in (200, 201), out.text
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    assert [json.loads(r.body)["type"] for r in receiver.requests] == [
        "stay.admitted", "stay.discharged"]
    discharged = json.loads(receiver.requests[1].body)
    assert discharged["data"]["discharged_at"].startswith("2026-03-05")
    assert discharged["id"] != event["id"]
    assert [d["event_type"] for d in await deliveries(client, hospitals.a, hook)] == [
        "stay.discharged", "stay.admitted"]


async def test_an_admission_or_discharge_undone_is_told(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver) -> None:
    """A receiver told of a discharge must learn that it was cancelled (the patient is in
    again), and of an admission cancelled (a pre-admission back to planned)."""
    await subscribe(client, hospitals.a, receiver.url,
                    ["stay.discharged", "stay.discharge_cancelled",
                     "stay.admission_cancelled"])
    stay = await admit(client, hospitals.a, planned=True)
    admitted = (await move(client, hospitals.a, stay, type="admit",
                           at="2026-03-02T09:00:00+01:00")).json()
    out = (await move(client, hospitals.a, stay, type="discharge",
                      at="2026-03-05T11:00:00+01:00")).json()
    back = await move(client, hospitals.a, stay, type="cancel_discharge",
                      at="2026-03-05T12:00:00+01:00", cancels=out["movements"][-1]["id"])
    assert back.status_code == 201, back.text
    undone = await move(client, hospitals.a, stay, type="cancel_admit",
                        at="2026-03-05T13:00:00+01:00", cancels=admitted["movements"][0]["id"])
    assert undone.status_code == 201, undone.text
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    events = sorted((json.loads(r.body) for r in receiver.requests),
                    key=lambda e: e["created_at"])
    assert [(e["type"], e["data"].get("state")) for e in events] == [
        ("stay.discharged", None), ("stay.discharge_cancelled", "admitted"),
        ("stay.admission_cancelled", "planned")]
    assert all(e["data"]["stay_id"] == stay["id"] for e in events)
    assert events[1]["data"]["cancelled_at"] == "2026-03-05T11:00:00+00:00"  # 12:00 local


async def test_a_failing_receiver_is_retried_then_failed(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "MAX_ATTEMPTS", 3)
    receiver.mode = "fail"
    hook = await subscribe(client, hospitals.a, receiver.url, ["stay.admitted"])
    await admit(client, hospitals.a)
    worker = Worker(app_db, tenants=[hospitals.a.id])
    before = utcnow()
    await drain(worker)
    [logged] = await deliveries(client, hospitals.a, hook)
    assert logged["state"] == "pending" and logged["attempts"] == 1
    assert logged["last_status_code"] == 500 and "HTTP 500" in logged["last_error"]
    # Backed off by the job queue (5 s after the first failure).
    next_at = logged["next_attempt_at"].replace("Z", "+00:00")
    assert datetime.fromisoformat(next_at) >= before + timedelta(seconds=4)
    await drain(worker)  # not due yet: nothing sent
    assert len(receiver.requests) == 1
    for attempt in (2, 3):
        await due_now(app_db, hospitals.a.id)
        await drain(worker)
        [logged] = await deliveries(client, hospitals.a, hook)
        assert logged["attempts"] == attempt
    assert logged["state"] == "failed" and logged["next_attempt_at"] is None
    assert logged["last_status_code"] == 500
    # The same event each time: receivers de-duplicate on its id.
    assert len(receiver.requests) == 3
    assert len({r.headers["luxfact-event-id"] for r in receiver.requests}) == 1
    with context.tenant_scope(hospitals.a.id):
        async with app_db.transaction() as session:
            states = (await session.execute(select(Job.state).where(
                Job.tenant_id == hospitals.a.id, Job.kind == "webhook.deliver"))).scalars()
            assert list(states) == ["dead"]
    # A receiver back up does not revive a failed delivery.
    receiver.mode = "ok"
    await due_now(app_db, hospitals.a.id)
    await drain(worker)
    assert len(receiver.requests) == 3
    # Disabling the endpoint cancels what is still to send, not what failed: its log keeps
    # the answer and the error of the last attempt.
    disabled = await client.post(f"/api/v1/webhooks/{hook['id']}/disable",
                                 headers=hospitals.a.auth(Role.admin))
    assert disabled.status_code == 200, disabled.text
    [kept] = await deliveries(client, hospitals.a, hook)
    assert (kept["state"], kept["last_status_code"]) == ("failed", 500)
    assert "HTTP 500" in kept["last_error"]


async def test_a_hanging_receiver_times_out_and_blocks_no_request(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "TIMEOUT", 3.0)
    receiver.mode = "hang"
    hook = await subscribe(client, hospitals.a, receiver.url, ["stay.admitted"])
    started = time.monotonic()
    stay = await admit(client, hospitals.a)
    assert time.monotonic() - started < 1.5  # the request did not wait for the receiver
    worker = Worker(app_db, tenants=[hospitals.a.id])
    draining = asyncio.create_task(drain(worker))
    await asyncio.wait_for(receiver.arrived.wait(), 5)
    # While the worker waits on the receiver, the API reads and writes: no transaction is
    # open meanwhile (on SQLite one would hold the database's only write lock).
    started = time.monotonic()
    read = await client.get(f"/api/v1/stays/{stay['id']}", headers=hospitals.a.auth(Role.clerk))
    assert read.status_code == 200
    await create_patient(client, hospitals.a)
    assert time.monotonic() - started < 1.5
    assert not draining.done()  # the receiver was still being waited for
    started = time.monotonic()
    await draining
    assert time.monotonic() - started < 4.0  # bounded by the timeout
    [logged] = await deliveries(client, hospitals.a, hook)
    assert logged["state"] == "pending" and logged["attempts"] == 1
    assert "timeout" in logged["last_error"] and logged["last_status_code"] is None


async def test_an_endpoint_is_changed_and_its_secret_rotated(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver) -> None:
    """A receiver moved, or a secret leaked: changed in place, the deliveries still to send
    going to the new URL, signed with the new secret only."""
    admin = hospitals.a.auth(Role.admin)
    hook = await subscribe(client, hospitals.a, "http://127.0.0.1:9/old", ["stay.admitted"])
    await admit(client, hospitals.a)  # queued for the old URL, not sent yet
    url = f"/api/v1/webhooks/{hook['id']}"
    moved = await client.patch(url, json={"url": receiver.url,
                                          "events": ["stay.admitted", "stay.discharged"]},
                               headers=admin)
    assert moved.status_code == 200, moved.text
    assert (moved.json()["url"], moved.json()["events"]) == (
        receiver.url, ["stay.admitted", "stay.discharged"])
    assert "secret" not in moved.json()
    rotated = await client.post(f"{url}/rotate-secret", headers=admin)
    assert rotated.status_code == 200 and rotated.headers["cache-control"] == "no-store"
    secret = rotated.json()["secret"]
    assert secret.startswith("whsec_") and secret != hook["secret"]
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    [request] = receiver.requests
    signature = request.headers["luxfact-signature"]
    assert deliver.verify(secret, signature, request.body)
    assert not deliver.verify(hook["secret"], signature, request.body)
    # Checked as at creation; null, unknown fields and a disabled endpoint refused.
    for body, field in (({"url": "http://10.0.0.1/x"}, "url"), ({"url": None}, "url"),
                        ({"events": []}, "events"), ({"secret": "mine"}, "secret")):
        refused = await client.patch(url, json=body, headers=admin)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    trail = (await client.get("/api/v1/audit-events", params={"object_id": hook["id"]},
                              headers=admin)).json()["items"]
    assert [e["action"] for e in trail][:2] == ["webhook.rotate_secret", "webhook.update"]
    assert secret not in json.dumps(trail) and hook["secret"] not in json.dumps(trail)
    assert (await client.post(f"{url}/disable", headers=admin)).status_code == 200
    assert (await client.patch(url, json={"description": "x"}, headers=admin)
            ).status_code == 409
    assert (await client.post(f"{url}/rotate-secret", headers=admin)).status_code == 409


async def test_the_administrator_may_give_the_secret(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver) -> None:
    """A receiver configured with a secret already: given at creation or at rotation, it
    signs the deliveries; too short, with spaces, or on a PATCH it is refused; never kept in
    the audit trail."""
    admin = hospitals.a.auth(Role.admin)
    given = "receiver-side-secret-0123456789-abcdef"
    for secret, why in (("short-secret", "at least 32"), ("a" * 20 + " " * 2 + "b" * 20,
                                                          "pattern")):
        refused = await client.post("/api/v1/webhooks", json={
            "url": receiver.url, "events": ["stay.admitted"], "secret": secret},
            headers=admin)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "secret"
        assert why in refused.json()["errors"][0]["reason"]
    created = await client.post("/api/v1/webhooks", json={
        "url": receiver.url, "events": ["stay.admitted"], "secret": given}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["secret"] == given
    await admit(client, hospitals.a)
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    [request] = receiver.requests
    assert deliver.verify(given, request.headers["luxfact-signature"], request.body)
    url = f"/api/v1/webhooks/{created.json()['id']}"
    again = given[::-1]
    rotated = await client.post(f"{url}/rotate-secret", json={"secret": again}, headers=admin)
    assert rotated.status_code == 200 and rotated.json()["secret"] == again
    await admit(client, hospitals.a)
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    assert deliver.verify(again, receiver.requests[-1].headers["luxfact-signature"],
                          receiver.requests[-1].body)
    made = await client.post(f"{url}/rotate-secret", headers=admin)  # no body: one is made
    assert made.status_code == 200 and made.json()["secret"].startswith("whsec_")
    trail = (await client.get("/api/v1/audit-events", params={"object_id": created.json()["id"]},
                              headers=admin)).json()["items"]
    assert sorted(e["details"].get("secret_given") for e in trail) == [False, True, True]
    assert given not in json.dumps(trail) and again not in json.dumps(trail)


@pytest.mark.postgres
@pytest.mark.parametrize("change", ["update", "rotate"])
async def test_an_endpoint_disabled_meanwhile_is_not_changed(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    """Disabled by another request between the change's read and its write: refused."""
    hook = await subscribe(client, hospitals.a, "http://127.0.0.1:9/hook")
    endpoint_id = uuid.UUID(hook["id"])
    reading = service.get_endpoint
    disabled: list[bool] = []

    async def read_then_disabled(session, tenant_id, wanted):  # type: ignore[no-untyped-def]
        found = await reading(session, tenant_id, wanted)
        if not disabled:
            disabled.append(True)
            async with app_db.transaction() as other:  # the other request, committed
                await service.disable_endpoint(other, tenant_id, wanted)
        return found

    monkeypatch.setattr(service, "get_endpoint", read_then_disabled)
    with context.tenant_scope(hospitals.a.id, actor="test"):
        async with app_db.transaction() as session:
            with pytest.raises(service.Conflict):
                if change == "update":
                    await service.update_endpoint(session, hospitals.a.id, endpoint_id,
                                                  {"url": "http://127.0.0.1:9/other"})
                else:
                    await service.rotate_secret(session, hospitals.a.id, endpoint_id)
    monkeypatch.setattr(service, "get_endpoint", reading)
    [row] = (await client.get("/api/v1/webhooks",
                              headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert (row["active"], row["url"]) == (False, "http://127.0.0.1:9/hook")


async def test_another_hospital_sees_nothing(client: httpx.AsyncClient, hospitals: Hospitals,
                                             app_db: Database, receiver: Receiver) -> None:
    hook = await subscribe(client, hospitals.a, receiver.url)
    await admit(client, hospitals.a)
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    b = hospitals.b.auth(Role.admin)
    assert (await client.get("/api/v1/webhooks", headers=b)).json()["items"] == []
    for method, path in (("GET", f"/api/v1/webhooks/{hook['id']}/deliveries"),
                         ("DELETE", f"/api/v1/webhooks/{hook['id']}"),
                         ("POST", f"/api/v1/webhooks/{hook['id']}/disable"),
                         ("POST", f"/api/v1/webhooks/{hook['id']}/rotate-secret"),
                         ("PATCH", f"/api/v1/webhooks/{hook['id']}"),
                         ("GET", "/api/v1/webhooks/not-a-uuid/deliveries")):
        response = await client.request(method, path, headers=b, json={"description": "x"}
                                        if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
    # B's admissions go to none of A's endpoints.
    await admit(client, hospitals.b)
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    assert len(receiver.requests) == 1
    # Only administrators manage webhooks.
    for role in (Role.clerk, Role.billing, Role.integration):
        response = await client.get("/api/v1/webhooks", headers=hospitals.a.auth(role))
        assert response.status_code == 403


async def test_a_rolled_back_change_emits_nothing(client: httpx.AsyncClient,
                                                  hospitals: Hospitals, app_db: Database,
                                                  receiver: Receiver) -> None:
    hook = await subscribe(client, hospitals.a, receiver.url)
    patient = await create_patient(client, hospitals.a)
    tenant = hospitals.a.id
    data = StayIn.model_validate({"patient_id": patient["id"], "kind": "inpatient",
                                  "admitted_at": "2026-03-02T08:00:00+01:00", "unit": "MED2"})
    with context.tenant_scope(tenant, actor="test"), pytest.raises(RuntimeError):
        async with app_db.transaction() as session:
            await stays.create_stay(session, tenant, data)
            assert await session.scalar(select(func.count()).select_from(
                WebhookDelivery).where(WebhookDelivery.tenant_id == tenant)) == 1
            raise RuntimeError("the request failed after the admission")
    # A refused change emits nothing either.
    refused = await client.post("/api/v1/stays", json={
        "patient_id": patient["id"], "kind": "inpatient",
        "admitted_at": "1800-01-01T08:00:00+01:00"}, headers=hospitals.a.auth(Role.clerk))
    assert refused.status_code == 422
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    assert receiver.requests == []
    assert await deliveries(client, hospitals.a, hook) == []
    with context.tenant_scope(tenant):
        async with app_db.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(Job).where(
                Job.tenant_id == tenant, Job.kind == "webhook.deliver")) == 0


async def test_disabled_endpoints_get_nothing_and_input_is_checked(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver) -> None:
    admin = hospitals.a.auth(Role.admin)
    hook = await subscribe(client, hospitals.a, receiver.url)
    await admit(client, hospitals.a)  # queued, not yet sent
    gone = await client.delete(f"/api/v1/webhooks/{hook['id']}", headers=admin)
    assert gone.status_code == 200 and gone.json()["active"] is False
    [cancelled] = await deliveries(client, hospitals.a, hook)  # at once, before any run
    assert cancelled["state"] == "cancelled" and cancelled["next_attempt_at"] is None
    await admit(client, hospitals.a)
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    assert receiver.requests == []
    [logged] = await deliveries(client, hospitals.a, hook)
    assert logged["state"] == "cancelled"
    for body in ({"url": "ftp://x.lu/", "events": ["stay.admitted"]},
                 {"url": receiver.url, "events": ["stay.exploded"]},
                 {"url": receiver.url, "events": []},
                 {"url": receiver.url, "events": ["stay.admitted"], "secret": "mine"}):
        response = await client.post("/api/v1/webhooks", json=body, headers=admin)
        assert response.status_code == 422, body
    page = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?cursor=zzz",
                            headers=admin)
    assert page.status_code == 422


async def test_billing_and_claim_events(client: httpx.AsyncClient, hospitals: Hospitals,
                                        app_db: Database, receiver: Receiver) -> None:
    from tests.claims.test_returns import answer_with_rejections, post_return, sent_batch

    await subscribe(client, hospitals.a, receiver.url, [
        "invoice.issued", "claim_batch.frozen", "claim_batch.answered",
        "claim_line.rejected"])
    batch, claim_file = await sent_batch(client, hospitals.a, 2)
    answered = await post_return(client, hospitals.a, batch, answer_with_rejections(claim_file))
    assert answered.status_code == 200, answered.text
    await drain(Worker(app_db, tenants=[hospitals.a.id]))
    events = [json.loads(r.body) for r in receiver.requests]
    by_type: dict[str, list[dict]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    assert set(by_type) == {"invoice.issued", "claim_batch.frozen", "claim_batch.answered",
                            "claim_line.rejected"}
    issued = by_type["invoice.issued"]
    assert {e["data"]["kind"] for e in issued} >= {"insurer"}
    for event in issued:
        invoice = (await client.get(f"/api/v1/invoices/{event['data']['invoice_id']}",
                                    headers=hospitals.a.auth(Role.billing))).json()
        assert (invoice["number"], invoice["total"]) == (event["data"]["number"],
                                                         event["data"]["total"])
    [frozen] = by_type["claim_batch.frozen"]
    assert frozen["data"]["batch_id"] == batch["id"] and frozen["data"]["sha256"]
    [answer] = by_type["claim_batch.answered"]
    assert answer["data"]["batch_id"] == batch["id"]
    [rejected] = by_type["claim_line.rejected"]
    rest = (await client.get("/api/v1/claim-lines?status=rejected",
                             headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert sorted((line["invoice_id"], line["line"]) for line in rejected["data"]["lines"]) \
        == sorted((line["invoice_id"], line["line"]) for line in rest)
    assert answer["data"]["by_status"]["rejected"] == len(rest)


async def test_an_answer_is_not_read_past_its_status(receiver: Receiver) -> None:
    # A receiver answering 200 and then a body without end: the status is enough, the body
    # is not read (it would fill the worker's memory, past the ten seconds allowed).
    receiver.mode = "flood"
    started = time.monotonic()
    status = await deliver.post(receiver.url, "whsec_x", str(uuid.uuid4()), b"{}")
    assert status == 200 and time.monotonic() - started < 3


async def test_webhooks_go_to_public_addresses_or_the_networks_allowed(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = hospitals.a.auth(Role.admin)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/hook",
                "http://[fe80::1]/hook", "http://0.0.0.0:5432/"):
        refused = await client.post("/api/v1/webhooks", json={
            "url": url, "events": ["stay.admitted"]}, headers=admin)
        assert refused.status_code == 422, url
        assert refused.json()["errors"][0]["field"] == "url", url
    with_password = await client.post("/api/v1/webhooks", json={
        "url": receiver.url.replace("http://", "http://user:pw@"),
        "events": ["stay.admitted"]}, headers=admin)
    assert with_password.status_code == 422
    assert "pw" not in with_password.text.replace("password", "")
    # Loopback is allowed here (the tests' LUXFACT_WEBHOOK_NETWORKS), also by name.
    hook = await subscribe(client, hospitals.a,
                           receiver.url.replace("127.0.0.1", "localhost"), ["stay.admitted"])
    # A deployment without that network: the same endpoint is no longer sent to.
    monkeypatch.setattr(addresses, "_allowed", ())
    await admit(client, hospitals.a)
    await drain(Worker(app_db, tenants=[hospitals.a.id]), rounds=1)
    assert receiver.requests == []
    [logged] = await deliveries(client, hospitals.a, hook)
    assert logged["state"] == "pending" and "not sent" in logged["last_error"]
    refused = await client.post("/api/v1/webhooks", json={
        "url": receiver.url, "events": ["stay.admitted"]}, headers=admin)
    assert refused.status_code == 422 and "127.0.0.1" in refused.text


# On SQLite a job's transaction holds the database's only write lock while its receiver is
# asked (docs/webhooks.md): the other hospital's job waits for it whatever the slots.
@pytest.mark.postgres
async def test_a_hanging_receiver_leaves_a_slot_for_another_hospital(
        client: httpx.AsyncClient, hospitals: Hospitals, app_db: Database,
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "TIMEOUT", 3.0)
    receiver.mode = "hang"
    other = await Receiver().start()
    try:
        await subscribe(client, hospitals.a, receiver.url, ["stay.admitted"])
        await subscribe(client, hospitals.b, other.url, ["stay.admitted"])
        for _ in range(3):
            await admit(client, hospitals.a)  # first in the queue, each hanging 3 s
        await admit(client, hospitals.b)
        worker = Worker(app_db, concurrency=2, tenants=[hospitals.a.id, hospitals.b.id])
        started = time.monotonic()
        draining = asyncio.create_task(drain(worker))
        await asyncio.wait_for(other.arrived.wait(), 10)
        # Served beside the first hanging delivery, not after three of them (9 s).
        assert time.monotonic() - started < 2.5
        receiver.release.set()
        await draining
    finally:
        await other.stop()


async def test_a_name_that_does_not_resolve_in_time_is_a_failed_attempt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The look-up before each delivery is bounded like the exchange: a resolver that hangs
    fails the attempt (retried as any failure) instead of holding the job past the time
    after which another worker would take it."""
    async def hanging(url: str, **_: object) -> str | None:
        await asyncio.sleep(30)
        return None

    monkeypatch.setattr(deliver, "TIMEOUT", 0.2)
    monkeypatch.setattr(addresses, "refusal", hanging)
    outgoing = deliver.Outgoing(uuid.uuid4(), "http://receiver.invalid/x", "s" * 32,
                                str(uuid.uuid4()), b"{}")
    started = time.monotonic()
    with pytest.raises(deliver.DeliveryFailed, match=r"did not resolve within 0\.2 s"):
        await deliver.call(outgoing)
    assert time.monotonic() - started < 2

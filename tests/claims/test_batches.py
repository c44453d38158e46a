"""Claim batches over the API: build once per month, check, freeze, download, send."""

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lxml import etree

from luxfact.auth.roles import Role
from luxfact.billing.service import today as billing_today
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospital, Hospitals
from tests.patients.test_api import create as create_patient
from tests.stays.test_api import act, admit, move

pytestmark = pytest.mark.usefixtures("catalogue")
SCHEMAS = Path(__file__).resolve().parents[2] / "invoices" / "schemas"
PERIOD = billing_today().strftime("%Y-%m")


async def billed(client: httpx.AsyncClient, hospital: Hospital, count: int = 2) -> list[dict]:
    stays = [await stay_with_acts(client, hospital) for _ in range(count)]
    return [(await bill(client, hospital, stay)).json()["invoices"][0] for stay in stays]


async def build(client: httpx.AsyncClient, hospital: Hospital,
                period: str = PERIOD) -> httpx.Response:
    return await client.post("/api/v1/claim-batches", json={"payer": "CNS", "period": period},
                             headers=hospital.auth(Role.billing))


async def test_build_freeze_download_and_send(client: httpx.AsyncClient,
                                              hospitals: Hospitals) -> None:
    invoices = await billed(client, hospitals.a)
    first = await build(client, hospitals.a)
    assert first.status_code == 201, first.text
    batch = first.json()
    assert (batch["state"], batch["invoice_count"], batch["payer"]) == ("open", 2, "CNS")
    again = await build(client, hospitals.a)
    assert again.status_code == 200 and again.json()["id"] == batch["id"]
    headers = hospitals.a.auth(Role.billing)
    url = f"/api/v1/claim-batches/{batch['id']}"
    assert (await client.get(f"{url}/errors", headers=headers)).json()["items"] == []
    assert (await client.get(f"{url}/file", headers=headers)).status_code == 409  # not frozen

    frozen = await client.post(f"{url}/freeze", headers=headers)
    assert frozen.status_code == 200, frozen.text
    body = frozen.json()
    assert body["state"] == "frozen" and body["line_count"] == 4
    assert body["net"] == f"{sum(float(i['total']) for i in invoices):.2f}"
    file = await client.get(f"{url}/file", headers=headers)
    assert hashlib.sha256(file.content).hexdigest() == body["sha256"] == \
        file.headers["x-content-sha256"]
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "claim-1.0.xsd"), parser))
    document = etree.fromstring(file.content, parser)
    schema.assertValid(document)
    ns = {"c": "urn:luxfact:claims:1.0"}
    assert document.findtext("c:entete/c:referenceFichierFacturation", namespaces=ns) == \
        body["file_reference"]
    assert sorted(document.xpath("//c:facture/c:referenceFacture/text()", namespaces=ns)) == \
        sorted(i["number"] for i in invoices)

    # Frozen means frozen: no second freeze, nothing claimed twice, the same bytes later.
    assert (await client.post(f"{url}/freeze", headers=headers)).status_code == 409
    assert (await build(client, hospitals.a)).status_code == 422  # nothing left this month
    sent = await client.post(f"{url}/sent", headers=hospitals.a.auth(Role.integration))
    assert sent.status_code == 200 and sent.json()["state"] == "sent"
    assert (await client.get(f"{url}/file", headers=headers)).content == file.content
    # Another hospital sees none of it.
    assert (await client.get(url, headers=hospitals.b.auth(Role.billing))).status_code == 404
    assert (await client.get("/api/v1/claim-batches",
                             headers=hospitals.b.auth(Role.billing))).json()["items"] == []


async def test_errors_are_pinned_to_invoice_and_line(client: httpx.AsyncClient,
                                                     hospitals: Hospitals) -> None:
    patient = await create_patient(client, hospitals.a, matricule=None,
                                   no_matricule_reason="foreign")
    stay = await admit(client, hospitals.a, patient=patient)
    await act(client, hospitals.a, stay, code="V1", performer="12345678")
    await move(client, hospitals.a, stay, type="discharge", at="2026-03-05T11:00:00+01:00")
    invoice = (await bill(client, hospitals.a, stay)).json()["invoices"][0]
    batch = (await build(client, hospitals.a)).json()
    url = f"/api/v1/claim-batches/{batch['id']}"
    headers = hospitals.a.auth(Role.billing)
    errors = (await client.get(f"{url}/errors", headers=headers)).json()["items"]
    assert [(e["invoice_number"], e["field"], e["stay_id"]) for e in errors] == [
        (invoice["number"], "matricule", stay["id"])]
    refused = await client.post(f"{url}/freeze", headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == f"invoices.{invoice['number']}.matricule"
    assert (await client.get(url, headers=headers)).json()["state"] == "open"


async def test_no_batch_without_invoices_and_merges_wait_for_the_batch(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    empty = await build(client, hospitals.a, "2019-01")
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "period"
    stay = await stay_with_acts(client, hospitals.a)
    await bill(client, hospitals.a, stay)
    assert (await build(client, hospitals.a)).status_code == 201
    twin = await create_patient(client, hospitals.a, matricule=None,
                                no_matricule_reason="unidentified")
    merge = await client.post(f"/api/v1/patients/{stay['patient_id']}/merge",
                              json={"duplicate_id": twin["id"]},
                              headers=hospitals.a.auth(Role.clerk))
    assert merge.status_code == 409 and "claim batch" in merge.json()["detail"]


@pytest.mark.postgres
async def test_twenty_concurrent_builds_make_one_batch(client: httpx.AsyncClient,
                                                       hospitals: Hospitals) -> None:
    await billed(client, hospitals.a, 3)
    await client.get("/api/v1/claim-batches", headers=hospitals.a.auth(Role.billing))  # warm
    answers = await asyncio.gather(*(build(client, hospitals.a) for _ in range(20)))
    assert sorted(a.status_code for a in answers) == [200] * 19 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    listed = (await client.get("/api/v1/claim-batches",
                               headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert len(listed) == 1 and listed[0]["invoice_count"] == 3


async def test_the_command_line_builds_freezes_and_prints_the_file(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str]
) -> None:
    invoices = await billed(client, hospitals.a, 1)
    command = [sys.executable, "-m", "luxfact.cli.main", "claims", "build",
               "--tenant", hospitals.a.slug, "--period", PERIOD]
    done = await asyncio.to_thread(subprocess.run, command, env=cli_env, capture_output=True,
                                   text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    content = await asyncio.to_thread(path.read_bytes)
    assert invoices[0]["number"].encode() in content
    listed = (await client.get("/api/v1/claim-batches",
                               headers=hospitals.a.auth(Role.billing))).json()["items"]
    assert [(b["state"], b["sha256"]) for b in listed] == [
        ("frozen", hashlib.sha256(content).hexdigest())]
    nothing = await asyncio.to_thread(subprocess.run, command, env=cli_env,
                                      capture_output=True, text=True, timeout=120)
    assert nothing.returncode != 0 and "left to claim" in nothing.stdout + nothing.stderr

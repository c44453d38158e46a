"""Invoice documents over the API and the CLI: archived once, served byte for byte, payable."""

import asyncio
import hashlib
import subprocess
import sys
import tomllib
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from luxfact.auth.roles import Role
from luxfact.billing import service
from luxfact.db.engine import Database
from tests.billing.test_invoices import bill, stay_with_acts
from tests.billing.test_pdf import needs_tools, pdf_text, qr_codes
from tests.conftest import Hospitals, make_hospital

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.usefixtures("catalogue"), needs_tools]


async def issued(client: httpx.AsyncClient, hospital, **patient: object) -> dict:  # type: ignore[no-untyped-def]
    stay = await stay_with_acts(client, hospital, **patient)
    response = await bill(client, hospital, stay)
    assert response.status_code == 201, response.text
    return response.json()["invoices"][1]  # the patient's


async def test_the_pdf_is_archived_and_served_identically(
    client: httpx.AsyncClient, hospitals: Hospitals, tmp_path: Path
) -> None:
    invoice = await issued(client, hospitals.a)
    url = f"/api/v1/invoices/{invoice['id']}/pdf"
    headers = hospitals.a.auth(Role.billing)
    first = await client.get(url, headers=headers)
    assert first.status_code == 200 and first.headers["content-type"] == "application/pdf"
    digest = hashlib.sha256(first.content).hexdigest()
    assert first.headers["x-content-sha256"] == digest
    again = await client.get(url, headers=hospitals.a.auth(Role.admin))
    assert again.content == first.content
    unchanged = await client.get(url, headers={**headers, "If-None-Match": f'"{digest}"'})
    assert unchanged.status_code == 304

    text = pdf_text(first.content, tmp_path)
    assert invoice["number"] in text and "Facture" in text
    # The payment QR code carries exactly this invoice's payment: amount and reference.
    (payload,) = qr_codes(first.content, tmp_path)
    fields = payload.split("\n")
    assert fields[:4] == ["BCD", "002", "1", "SCT"]
    assert fields[6] == "LU280019400644750000"
    assert fields[7] == f"EUR{Decimal(invoice['total'])}"
    assert invoice["reference"] in fields
    assert "Anne" not in payload and "Muller" not in payload

    events = (await client.get(f"/api/v1/audit-events?object_id={invoice['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert [e["action"] for e in events].count("invoice.render") == 1


async def test_the_patient_reads_it_in_their_language(
    client: httpx.AsyncClient, hospitals: Hospitals, tmp_path: Path
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    # The patient speaks German: the invoice is in German, the insurer's in the hospital's.
    patient_url = f"/api/v1/patients/{stay['patient_id']}"
    current = await client.get(patient_url, headers=hospitals.a.auth(Role.clerk))
    changed = await client.patch(patient_url, json={"language": "de"}, headers={
        **hospitals.a.auth(Role.clerk), "If-Match": current.headers["etag"]})
    assert changed.status_code == 200, changed.text
    insurer, patient = (await bill(client, hospitals.a, stay)).json()["invoices"]
    assert (insurer["language"], patient["language"]) == ("fr", "de")
    pdf = (await client.get(f"/api/v1/invoices/{patient['id']}/pdf",
                            headers=hospitals.a.auth(Role.billing))).content
    text = pdf_text(pdf, tmp_path)
    assert "Rechnung" in text and "Einzelzimmer" in text  # the catalogue's German label


async def test_a_reminder_for_an_overdue_invoice(
    client: httpx.AsyncClient, hospitals: Hospitals, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    invoice = await issued(client, hospitals.a)
    url = f"/api/v1/invoices/{invoice['id']}/reminders"
    headers = hospitals.a.auth(Role.billing)
    early = await client.post(url, headers=headers)
    assert early.status_code == 409 and "not overdue" in early.json()["detail"]
    monkeypatch.setattr(service, "today",
                        lambda: date.fromisoformat(invoice["due_on"]) + timedelta(days=10))
    letter = await client.post(url, headers=headers)
    assert letter.status_code == 201 and letter.headers["content-type"] == "application/pdf"
    assert letter.headers["location"].endswith("/reminders/1")
    text = pdf_text(letter.content, tmp_path)
    assert "Rappel" in text and invoice["number"] in text
    (payload,) = qr_codes(letter.content, tmp_path)
    assert invoice["reference"] in payload.split("\n")
    stored = await client.get(letter.headers["location"], headers=headers)
    assert stored.content == letter.content
    second = await client.post(url, headers=headers)
    assert second.headers["location"].endswith("/reminders/2")
    assert (await client.get(f"{url}/9", headers=headers)).status_code == 404
    insurer = (await client.get(f"/api/v1/invoices?stay_id={invoice['stay_id']}&kind=insurer",
                                headers=headers)).json()["items"][0]
    refused = await client.post(f"/api/v1/invoices/{insurer['id']}/reminders", headers=headers)
    assert refused.status_code == 409  # the insurer is claimed, not reminded
    no_paper = await client.get(f"/api/v1/invoices/{insurer['id']}/pdf", headers=headers)
    assert no_paper.status_code == 409 and "claim file" in no_paper.json()["detail"]


def _find(texts: dict, key: str) -> str:
    for name, value in texts.items():
        if name == key:
            return value
        if isinstance(value, dict):
            found = _find(value, key)
            if found:
                return found
    return ""


async def test_without_an_iban_the_invoice_is_issued_and_says_so(
    client: httpx.AsyncClient, owner_db: Database, tmp_path: Path
) -> None:
    hospital = await make_hospital(owner_db, "noiban", iban=None, bic=None)
    tenant = (await client.get("/api/v1/tenant", headers=hospital.auth(Role.admin))).json()
    assert tenant["iban"] is None
    assert any("No IBAN" in warning for warning in tenant["warnings"])
    invoice = await issued(client, hospital)
    pdf = (await client.get(f"/api/v1/invoices/{invoice['id']}/pdf",
                            headers=hospital.auth(Role.billing))).content
    assert qr_codes(pdf, tmp_path) == []
    notice = tomllib.loads((ROOT / "invoices" / "texts" / "fr.toml").read_text())
    wanted = " ".join(_find(notice, "no_bank_details").split())
    assert wanted in " ".join(pdf_text(pdf, tmp_path).split())


async def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True,
                                   text=True, timeout=120)


async def test_render_a_whole_period_from_the_command_line(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str]
) -> None:
    first = await issued(client, hospitals.a)
    await issued(client, hospitals.a)
    period = first["issued_on"][:7]
    command = [sys.executable, "-m", "luxfact.cli.main", "invoices", "render",
               "--tenant", hospitals.a.slug, "--period", period, "--workers", "1"]
    done = await _run(command, cli_env)
    assert done.returncode == 0, done.stderr
    # The patients' two invoices; the insurers' go out as claim files, never on paper.
    assert "2 document(s) rendered" in done.stdout
    again = await _run(command, cli_env)
    assert "0 document(s) rendered" in again.stdout
    # The API serves what the command archived.
    pdf = await client.get(f"/api/v1/invoices/{first['id']}/pdf",
                           headers=hospitals.a.auth(Role.billing))
    events = (await client.get(f"/api/v1/audit-events?object_id={first['id']}",
                               headers=hospitals.a.auth(Role.admin))).json()["items"]
    assert "invoice.render" not in [e["action"] for e in events]
    assert pdf.status_code == 200
    bad = await _run([*command[:-4], "--period", "2026-13"], cli_env)
    assert bad.returncode != 0 and "YYYY-MM" in bad.stdout + bad.stderr

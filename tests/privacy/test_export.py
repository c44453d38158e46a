"""`luxfact privacy export`: one patient's data, all of it and nobody else's; a whole
hospital's, streamed per table."""

import asyncio
import base64
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.db.models import metadata, tenant_owned_tables
from luxfact.kit import context
from luxfact.privacy import export
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.privacy.helpers import cli, patient_with_stay

pytestmark = pytest.mark.usefixtures("catalogue")


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


async def test_a_patients_export_holds_its_data_and_nobody_elses(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str], tmp_path: Path,
    owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    neighbour = await patient_with_stay(client, hospitals.a)
    elsewhere = await patient_with_stay(client, hospitals.b)
    # A search that showed both patients is part of each one's trail, but not the other.
    both = await client.get("/api/v1/patients?birth_date=1975-04-12",
                            headers=hospitals.a.auth(Role.clerk))
    assert {p["id"] for p in both.json()["items"]} >= {person.id, neighbour.id}
    out = tmp_path / "access.json"
    result = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                       "--patient", person.id, "--out", str(out))
    assert result.exit_code == 0, result.output
    raw = out.read_text(encoding="utf-8")
    document = json.loads(raw)
    # Stable: sorted keys, a fixed layout (two exports of the same data are the same bytes).
    assert raw == json.dumps(document, sort_keys=True, ensure_ascii=False, indent=2) + "\n"
    assert out.stat().st_mode & 0o077 == 0  # personal data: readable by its owner only

    searches = [e for e in document["audit_events"] if e["action"] == "patient.search"]
    assert searches and all(e["details"]["results"] == [person.id] for e in searches)
    assert any(e["details"]["others_shown"] >= 1 for e in searches)
    assert neighbour.id not in raw
    assert document["format"] == "luxfact-patient-export/1"
    assert document["tenant"]["slug"] == hospitals.a.slug
    patient = document["patient"]
    assert (patient["id"], patient["matricule"], patient["family_name"]) == (
        person.id, person.patient["matricule"], person.patient["family_name"])
    assert "tenant_id" not in patient
    assert [c["payer"] for c in document["coverages"]] == ["CNS"]
    (stay,) = document["stays"]
    assert stay["id"] == person.stay["id"]
    assert [m["type"] for m in stay["movements"]] == ["admit", "discharge"]
    assert sorted(a["id"] for a in stay["acts"]) == sorted(person.stay["act_ids"])
    invoices = {i["number"]: i for i in document["invoices"]}
    assert set(invoices) == {i["number"] for i in person.invoices}
    own = invoices[person.invoices[-1]["number"]]
    assert own["lines"] and all(isinstance(line["amount_cents"], int) for line in own["lines"])
    assert [p["amount_cents"] for p in own["payments"]] == [1000]
    (pdf,) = own["documents"]
    content = base64.b64decode(pdf["content"])
    assert content.startswith(b"%PDF") and hashlib.sha256(content).hexdigest() == pdf["sha256"]
    (message,) = document["hl7_messages"]
    assert person.patient["matricule"] in message["raw"] and message["raw_encoding"] == "utf-8"
    actions = {e["action"] for e in document["audit_events"]}
    assert {"patient.create", "coverage.create", "stay.admit", "act.create",
            "invoice.issue", "invoice.payment"} <= actions

    for other in (neighbour, elsewhere):
        for needle in other.needles():
            assert needle not in raw, needle

    # The export is itself recorded, by id only.
    events = (await client.get(f"/api/v1/audit-events?action=patient.export&object_id="
                               f"{person.id}", headers=hospitals.a.auth(Role.admin))).json()
    assert len(events["items"]) == 1 and events["items"][0]["actor"] == "cli"


async def test_export_refuses_an_existing_file_and_another_hospitals_patient(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str], tmp_path: Path
) -> None:
    person = await patient_with_stay(client, hospitals.b, bill_it=False)
    out = tmp_path / "access.json"
    foreign = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                        "--patient", person.id, "--out", str(out))
    assert foreign.exit_code == 1
    assert f"No patient {person.id} in this hospital" in foreign.output
    assert not out.exists() and names(tmp_path) == []
    out.write_text("keep me")
    existing = await cli(cli_env, "privacy", "export", "--tenant", hospitals.b.slug,
                         "--patient", person.id, "--out", str(out))
    assert existing.exit_code == 1 and "already exists" in existing.output
    assert out.read_text() == "keep me"
    unknown = await cli(cli_env, "privacy", "export", "--tenant", hospitals.b.slug,
                        "--patient", str(uuid.uuid4()), "--out", str(tmp_path / "x.json"))
    assert unknown.exit_code == 1 and "No patient" in unknown.output


async def test_a_whole_hospitals_export_is_one_json_lines_file_per_table(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str], tmp_path: Path,
    owner_db: Database
) -> None:
    first = await patient_with_stay(client, hospitals.a)
    second = await patient_with_stay(client, hospitals.a, bill_it=False)
    elsewhere = await patient_with_stay(client, hospitals.b)
    out = tmp_path / "leaving"
    result = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                       "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tenant"]["slug"] == hospitals.a.slug
    assert set(manifest["tables"]) == set(tenant_owned_tables())
    assert names(out) == sorted(
        ["manifest.json", "tenant.json", *(f"{t}.jsonl" for t in tenant_owned_tables())])
    for name, facts in manifest["tables"].items():
        data = (out / facts["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == facts["sha256"], name
        assert len(data.splitlines()) == facts["rows"], name
        # Exactly the hospital's rows, as many as the database holds.
        table = metadata.tables[name]
        with context.tenant_scope(hospitals.a.id):
            async with owner_db.transaction() as session:
                held = len((await session.execute(
                    select(table.c.tenant_id).where(table.c.tenant_id == hospitals.a.id))).all())
        # The export itself is recorded after it: one audit event more than it holds.
        assert facts["rows"] == held - (name == "audit_events"), name
    patients = [json.loads(line) for line in (out / "patients.jsonl").read_text().splitlines()]
    assert sorted(p["id"] for p in patients) == sorted([first.id, second.id])
    everything = "\n".join(p.read_text(encoding="utf-8") for p in out.glob("*"))
    for needle in elsewhere.needles():
        assert needle not in everything, needle
    users = (out / "api_keys.jsonl").read_text()
    assert users and "key_hash" not in users  # credentials never leave
    documents = [json.loads(line)
                 for line in (out / "invoice_documents.jsonl").read_text().splitlines()]
    assert base64.b64decode(documents[0]["content"]).startswith(b"%PDF")
    again = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                      "--out", str(out))
    assert again.exit_code == 1 and "already exists" in again.output
    assert names(tmp_path) == ["leaving"]  # no .partial left behind


@pytest.mark.postgres
async def test_the_export_snapshot_reads_as_the_hospital_under_row_level_security(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings
) -> None:
    """The whole-hospital export reads in a snapshot of its own: the engine's hook must still
    set the tenant there, or a role without BYPASSRLS (an owner that is no superuser, here the
    application role) would export empty tables."""
    person = await patient_with_stay(client, hospitals.a, bill_it=False)
    patients = metadata.tables["patients"]
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        with context.tenant_scope(hospitals.a.id):
            async with export.snapshot(db) as session:
                level = (await session.execute(text("SHOW transaction_isolation"))).scalar_one()
                ids = (await session.execute(select(patients.c.id))).scalars().all()
    finally:
        await db.dispose()
    assert level == "repeatable read"
    assert str(person.id) in {str(i) for i in ids}


async def test_a_full_export_disk_is_named_and_leaves_nothing(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # A real full disk: a 64 KiB tmpfs, smaller than one invoice PDF.
    disk = tmp_path / "small"
    disk.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not mount or not umount:
        pytest.skip("FULL-DISK EXPORT TEST NOT RUN: mounting a tmpfs needs root and mount(8)")
    mounted = await asyncio.to_thread(
        subprocess.run, [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"FULL-DISK EXPORT TEST NOT RUN: cannot mount a tmpfs here "
                    f"({mounted.stderr.decode().strip()})")
    try:
        await patient_with_stay(client, hospitals.a)
        result = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                           "--out", str(disk / "export"))
        assert result.exit_code == 1, result.output
        assert "cannot write" in result.output and "No space left" in result.output
        assert "cannot reach the database" not in result.output
        assert list(disk.iterdir()) == []  # no half export, no staging directory
    finally:
        await asyncio.to_thread(subprocess.run, [umount, "-l", str(disk)], check=False)

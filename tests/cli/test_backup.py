"""`luxfact backup` and `luxfact restore`, run as real processes: everything comes back."""

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from luxfact.auth.roles import Role
from luxfact.settings import Settings
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import BACKEND, POSTGRES_URL, Hospital, Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")


def luxfact(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "luxfact.cli.main", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300, check=False)


async def arrange(client: httpx.AsyncClient, hospital: Hospital, settings: Settings) -> str:
    """A stay billed (two invoices), the patient's PDF archived, audit events, and a file in
    the documents directory. Returns the document's relative path."""
    stay = await stay_with_acts(client, hospital)
    response = await bill(client, hospital, stay)
    assert response.status_code == 201, response.text
    patient = response.json()["invoices"][1]
    pdf = await client.get(f"/api/v1/invoices/{patient['id']}/pdf",
                           headers=hospital.auth(Role.billing))
    assert pdf.status_code == 200
    name = f"claims/backup-test-{uuid.uuid4().hex[:8]}.xml"
    path = settings.documents_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"<claim>" + os.urandom(16).hex().encode() + b"</claim>")
    return name


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def pg_facts(url: str, tenant: uuid.UUID) -> dict[str, set]:
    """As a superuser (row-level security does not apply): what the hospital has."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        return {
            "numbers": {r[0] for r in await conn.fetch(
                "SELECT number FROM invoices WHERE tenant_id = $1", tenant)},
            "documents": {(str(r[0]), r[1], r[2], r[3]) for r in await conn.fetch(
                "SELECT invoice_id, kind, sha256, encode(sha256(content), 'hex') "
                "FROM invoice_documents WHERE tenant_id = $1", tenant)},
            "audit": {str(r[0]) for r in await conn.fetch(
                "SELECT id FROM audit_events WHERE tenant_id = $1", tenant)},
        }
    finally:
        await conn.close()


def sqlite_facts(path: Path, tenant: uuid.UUID) -> dict[str, set]:
    conn = sqlite3.connect(path)
    try:
        def rows(sql: str) -> list[tuple]:
            return conn.execute(sql, (tenant.hex,)).fetchall()

        return {
            "numbers": {r[0] for r in rows("SELECT number FROM invoices WHERE tenant_id = ?")},
            "documents": {(r[0], r[1], r[2], hashlib.sha256(r[3]).hexdigest()) for r in rows(
                "SELECT invoice_id, kind, sha256, content FROM invoice_documents "
                "WHERE tenant_id = ?")},
            "audit": {r[0] for r in rows("SELECT id FROM audit_events WHERE tenant_id = ?")},
        }
    finally:
        conn.close()


def assert_complete(facts: dict[str, set]) -> None:
    assert len(facts["numbers"]) == 2 and None not in facts["numbers"]
    assert len(facts["documents"]) == 1
    assert all(stored == actual for _, _, stored, actual in facts["documents"])
    assert facts["audit"]


@pytest.mark.postgres
async def test_postgres_backup_restores_everything_into_a_new_database(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings,
    cli_env: dict[str, str], tmp_path: Path,
) -> None:
    hospital = hospitals.a
    document = await arrange(client, hospital, settings)
    original = await pg_facts(settings.database_url, hospital.id)
    assert_complete(original)

    out = tmp_path / "backup.tar"
    made = luxfact(cli_env, "backup", str(out))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().splitlines()[-1] == str(out)

    name = f"luxfact_restore_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(POSTGRES_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        target = make_url(POSTGRES_URL).set(database=name).render_as_string(
            hide_password=False)
        docs = tmp_path / "restored-documents"
        restored = luxfact(cli_env, "restore", str(out), "--database-url", target,
                           "--documents-dir", str(docs))
        assert restored.returncode == 0, restored.stderr
        assert "checked: counts" in restored.stdout
        again = await pg_facts(target, hospital.id)
        assert again == original
        assert (docs / document).read_bytes() == (settings.documents_dir / document).read_bytes()
        # The application role can work in the restored database (grants re-made).
        conn = await asyncpg.connect(_dsn(target))
        try:
            granted = await conn.fetchval(
                "SELECT has_table_privilege($1, 'invoices', 'SELECT')", settings.app_role)
        finally:
            await conn.close()
        assert granted
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.skipif(BACKEND == "postgres", reason="the SQLite variant")
async def test_sqlite_backup_restores_everything_into_a_new_file(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings,
    cli_env: dict[str, str], tmp_path: Path,
) -> None:
    hospital = hospitals.a
    document = await arrange(client, hospital, settings)
    source = Path(make_url(settings.database_url).database or "")
    original = sqlite_facts(source, hospital.id)
    assert_complete(original)

    out = tmp_path / "backup"
    made = luxfact(cli_env, "backup", str(out))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["database"] == "sqlite"
    assert manifest["counts"]["invoices"] >= 2
    assert f"documents/{document}" in manifest["files"]

    target = tmp_path / "restored.db"
    docs = tmp_path / "restored-documents"
    restored = luxfact(cli_env, "restore", str(out), "--database-url", f"sqlite:///{target}",
                       "--documents-dir", str(docs))
    assert restored.returncode == 0, restored.stderr
    assert sqlite_facts(target, hospital.id) == original
    assert (docs / document).read_bytes() == (settings.documents_dir / document).read_bytes()


async def test_restore_refuses_a_database_that_is_not_empty(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings,
    cli_env: dict[str, str], tmp_path: Path,
) -> None:
    await arrange(client, hospitals.a, settings)
    out = tmp_path / "backup"
    assert luxfact(cli_env, "backup", str(out)).returncode == 0
    if BACKEND == "postgres":
        before = await pg_facts(settings.database_url, hospitals.a.id)
    else:
        before = sqlite_facts(Path(make_url(settings.database_url).database or ""),
                              hospitals.a.id)
    docs = tmp_path / "docs"
    refused = luxfact(cli_env, "restore", str(out), "--database-url", settings.database_url,
                      "--documents-dir", str(docs))
    assert refused.returncode == 1
    assert "refusing to restore" in refused.stderr and "not empty" in refused.stderr
    after = (await pg_facts(settings.database_url, hospitals.a.id) if BACKEND == "postgres"
             else sqlite_facts(Path(make_url(settings.database_url).database or ""),
                               hospitals.a.id))
    assert after == before
    assert not docs.exists()


async def test_a_damaged_backup_is_refused_before_anything_changes(
    settings: Settings, cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "backup"
    assert luxfact(cli_env, "backup", str(out)).returncode == 0
    manifest = json.loads((out / "manifest.json").read_text())
    database_file = out / manifest["database_file"]
    database_file.write_bytes(database_file.read_bytes() + b"x")
    target = (f"sqlite:///{tmp_path / 'new.db'}" if BACKEND != "postgres"
              else settings.database_url)
    refused = luxfact(cli_env, "restore", str(out), "--database-url", target,
                      "--documents-dir", str(tmp_path / "docs"))
    assert refused.returncode == 1
    if BACKEND != "postgres":
        assert "damaged" in refused.stderr and "SHA-256 differs" in refused.stderr
        assert not (tmp_path / "new.db").exists()

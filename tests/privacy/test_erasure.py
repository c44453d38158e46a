"""`luxfact privacy erase`: refused while the law keeps the data, complete when it may go."""

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.db.models import metadata
from luxfact.kit import context
from luxfact.privacy import erasure
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.privacy.helpers import (
    as_superuser,
    backdate,
    cli,
    naming,
    patient_with_stay,
    table_rows,
)

pytestmark = pytest.mark.usefixtures("catalogue")


def test_every_tenant_table_is_either_erased_or_kept_on_purpose() -> None:
    assert erasure.unaccounted_tables() == set()
    assert not set(erasure.TENANT_TABLES) & set(erasure.TENANT_KEPT)


async def _events(db: Database, tenant_id: uuid.UUID, action: str) -> list:  # type: ignore[type-arg]
    audit = metadata.tables["audit_events"]
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            return list((await session.execute(select(audit).where(
                audit.c.tenant_id == tenant_id, audit.c.action == action))).all())


async def test_refused_while_invoices_are_within_retention_and_they_are_named(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    year = datetime.now(UTC).year
    result = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                       "--patient", person.id, "--yes")
    assert result.exit_code == 1, result.output
    assert "within legal retention" in result.output
    for invoice in person.invoices:
        assert f"invoice {invoice['number']}" in result.output
    assert f"kept until {year + 10}-12-31" in result.output
    # Nothing went: the patient is still there, and no erasure was recorded.
    read = await client.get(f"/api/v1/patients/{person.id}", headers=hospitals.a.auth(Role.clerk))
    assert read.status_code == 200
    assert await _events(owner_db, hospitals.a.id, "patient.erased") == []

    # Ten years on, still one year short: 2016's invoices are kept until the end of 2026.
    await backdate(owner_db, hospitals.a.id, person, year - 10)
    again = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                      "--patient", person.id, "--yes")
    assert again.exit_code == 1 and f"kept until {year}-12-31" in again.output
    assert f"stay(s) within the medical file's retention: stay {person.stay['id']} of " \
        f"{year - 10}-03-05 (kept until {year}-12-31)" in again.output

    # All of it twelve years old, but a payment received six years ago keeps it.
    await backdate(owner_db, hospitals.a.id, person, year - 12, payments_in=year - 6)
    paid = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                     "--patient", person.id, "--yes")
    assert paid.exit_code == 1, paid.output
    assert "payment(s) within legal retention: payment on " in paid.output
    assert f"kept until {year + 4}-12-31" in paid.output
    assert "invoice(s) within legal retention" not in paid.output
    whole = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug, "--yes")
    assert whole.exit_code == 1 and "payment(s) within legal retention" in whole.output


async def test_refused_for_a_patient_in_house_with_acts_not_invoiced(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str]
) -> None:
    person = await patient_with_stay(client, hospitals.a, bill_it=False, discharge=False)
    result = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                       "--patient", person.id, "--yes")
    assert result.exit_code == 1
    assert f"not yet discharged: {person.stay['id']} (admitted)" in result.output
    assert "2 act(s) not yet invoiced" in result.output


async def test_erasure_past_retention_leaves_no_row_of_the_patient(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    neighbour = await patient_with_stay(client, hospitals.a)
    elsewhere = await patient_with_stay(client, hospitals.b)
    for someone, tenant in ((person, hospitals.a), (neighbour, hospitals.a),
                            (elsewhere, hospitals.b)):
        await backdate(owner_db, tenant.id, someone, 2014)
    before_a = await table_rows(owner_db, hospitals.a.id)
    before_b = await table_rows(owner_db, hospitals.b.id)
    assert naming(before_a, person.needles()).keys() >= {
        "patients", "patient_name_keys", "coverages", "stays", "movements", "acts",
        "invoices", "invoice_lines", "payments", "invoice_documents", "hl7_messages",
        "idempotency_keys"}

    # Asked, and answered no: nothing happens.
    declined = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                         "--patient", person.id, answer="n\n")
    assert declined.exit_code == 1 and "Erase?" in declined.output
    assert await table_rows(owner_db, hospitals.a.id) == before_a

    done = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                     "--patient", person.id, answer="y\n")
    assert done.exit_code == 0, done.output
    assert f"erased patient {person.id} of {hospitals.a.slug}: " in done.output
    assert "1 patients" in done.output and "2 invoices" in done.output

    after_a = await table_rows(owner_db, hospitals.a.id)
    # Every tenant-owned table: no row names the patient, but the append-only audit trail,
    # which names it by id only (never by name or matricule).
    assert naming(after_a, person.needles()).keys() <= {"audit_events"}
    audit = "\n".join(after_a["audit_events"])
    assert person.patient["matricule"] not in audit
    assert person.patient["family_name"] not in audit
    # The neighbour and the other hospital are untouched, row for row.
    for name, rows in before_a.items():
        kept = [r for r in rows if any(n in r for n in neighbour.needles())]
        assert [r for r in after_a[name] if any(n in r for n in neighbour.needles())] == kept
    assert await table_rows(owner_db, hospitals.b.id) == before_b
    assert (await client.get(f"/api/v1/patients/{neighbour.id}",
                             headers=hospitals.a.auth(Role.clerk))).status_code == 200
    gone = await client.get(f"/api/v1/patients/{person.id}", headers=hospitals.a.auth(Role.clerk))
    assert gone.status_code == 404

    (event,) = await _events(owner_db, hospitals.a.id, "patient.erased")
    assert event.object_type == "patient" and event.object_id == person.id
    assert event.actor == "cli"
    assert set(event.details) == {"counts"}
    assert event.details["counts"]["patients"] == 1
    assert event.details["counts"]["invoices"] == 2


async def test_a_claim_file_naming_the_patient_goes_once_reconciled_and_past_retention(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    period = datetime.now(UTC).strftime("%Y-%m")
    headers = hospitals.a.auth(Role.billing)
    built = await client.post("/api/v1/claim-batches", json={"payer": "CNS", "period": period},
                              headers=headers)
    assert built.status_code == 201, built.text
    batch = built.json()
    frozen = await client.post(f"/api/v1/claim-batches/{batch['id']}/freeze", headers=headers)
    assert frozen.status_code == 200, frozen.text
    file = await client.get(f"/api/v1/claim-batches/{batch['id']}/file", headers=headers)
    assert person.patient["matricule"].encode() in file.content
    await backdate(owner_db, hospitals.a.id, person, 2014)
    batches = metadata.tables["claim_batches"]
    this_batch = update(batches).where(batches.c.tenant_id == hospitals.a.id,
                                       batches.c.id == uuid.UUID(batch["id"]))
    refused = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                        "--patient", person.id, "--yes")
    assert refused.exit_code == 1
    assert f"claim batch(es) not yet reconciled: {batch['file_reference']} (frozen)" \
        in refused.output

    # Reconciled, but the file (an accounting document of its own) was frozen this year.
    await as_superuser(owner_db, hospitals.a.id, this_batch.values(state="reconciled"))
    kept = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                     "--patient", person.id, "--yes")
    assert kept.exit_code == 1
    assert f"claim file(s) within legal retention: claim file {batch['file_reference']}" \
        in kept.output and "not yet reconciled" not in kept.output

    await as_superuser(owner_db, hospitals.a.id,
                       this_batch.values(frozen_at=datetime(2014, 4, 2, tzinfo=UTC)))
    done = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                     "--patient", person.id, "--yes")
    assert done.exit_code == 0, done.output
    assert f"claim files removed (past retention, they named the patient): " \
        f"{batch['file_reference']}" in done.output
    rows = await table_rows(owner_db, hospitals.a.id)
    assert naming(rows, person.needles()).keys() <= {"audit_events"}
    assert rows["claim_file_chunks"] == []
    after = await client.get(f"/api/v1/claim-batches/{batch['id']}", headers=headers)
    # The batch stays, a record of what was claimed (no one's data), without its file.
    assert after.status_code == 200 and after.json()["sha256"] is None
    assert (await client.get(f"/api/v1/claim-batches/{batch['id']}/file",
                             headers=headers)).status_code == 409


async def test_whole_hospital_erasure_is_refused_with_recent_invoices_then_empties_it(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    other = await patient_with_stay(client, hospitals.b)
    year = datetime.now(UTC).year
    refused = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug, "--yes")
    assert refused.exit_code == 1
    assert f"Erasure of hospital {hospitals.a.slug} refused: 2 invoice(s) within legal " \
        "retention" in refused.output
    for invoice in person.invoices:
        assert f"{invoice['number']} of " in refused.output
    assert f"kept until {year + 10}-12-31" in refused.output

    await backdate(owner_db, hospitals.a.id, person, 2014)
    before_b = await table_rows(owner_db, hospitals.b.id)
    audit_before = len((await table_rows(owner_db, hospitals.a.id))["audit_events"])
    done = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug, "--yes")
    assert done.exit_code == 0, done.output
    rows = await table_rows(owner_db, hospitals.a.id)
    assert {name for name, found in rows.items() if found} <= set(erasure.TENANT_KEPT)
    # The audit trail stays whole, plus the erasure's own event.
    assert len(rows["audit_events"]) == audit_before + 1
    (event,) = await _events(owner_db, hospitals.a.id, "tenant.erased")
    assert event.details["counts"]["patients"] == 1
    assert event.details["counts"]["api_keys"] == len(Role)
    # The hospital's keys went with it; the other hospital is untouched and still served.
    assert (await client.get("/api/v1/patients?q=x",
                             headers=hospitals.a.auth(Role.clerk))).status_code == 401
    assert await table_rows(owner_db, hospitals.b.id) == before_b
    assert (await client.get(f"/api/v1/patients/{other.id}",
                             headers=hospitals.b.auth(Role.clerk))).status_code == 200


@pytest.mark.postgres
async def test_only_the_owner_asking_for_it_may_delete_an_issued_invoice(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings, owner_db: Database
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    invoice = uuid.UUID(person.invoices[0]["id"])
    tenant = str(hospitals.a.id)
    url = make_url(settings.effective_app_database_url).set(drivername="postgresql")
    app_conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        # The application role, even asking for the erasure path, deletes no issued invoice.
        for statement in ("DELETE FROM invoice_lines WHERE invoice_id = $1",
                          "DELETE FROM invoices WHERE id = $1"):
            with pytest.raises(asyncpg.PostgresError, match=r"cannot be deleted|not allowed"):
                async with app_conn.transaction():
                    await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
                    await app_conn.execute("SELECT set_config('luxfact.erasure', 'on', true)")
                    await app_conn.execute(statement, invoice)
    finally:
        await app_conn.close()
    with context.tenant_scope(hospitals.a.id):
        # The owner without asking: refused too.
        with pytest.raises(Exception, match=r"cannot be deleted|not allowed"):
            async with owner_db.transaction() as session:
                await session.execute(text("DELETE FROM invoice_lines WHERE invoice_id = :i"),
                                      {"i": invoice})
        # The owner asking: its deletes go through, in that transaction only; an UPDATE
        # never does (and here rolls the whole transaction back, the deletes with it).
        with pytest.raises(Exception, match="immutable"):
            async with owner_db.transaction() as session:
                await session.execute(text("SELECT set_config('luxfact.erasure', 'on', true)"))
                lines = await session.execute(
                    text("DELETE FROM invoice_lines WHERE invoice_id = :i"), {"i": invoice})
                assert lines.rowcount > 0
                await session.execute(text("UPDATE invoices SET total_cents = 0 WHERE id = :i"),
                                      {"i": invoice})
        async with owner_db.transaction() as session:
            assert (await session.execute(text(
                "SELECT current_setting('luxfact.erasure', true)"))).scalar_one() in ("", None)
            count = await session.execute(text(
                "SELECT count(*) FROM invoice_lines WHERE invoice_id = :i"), {"i": invoice})
            assert count.scalar_one() > 0


async def test_a_record_merged_into_the_patient_is_exported_and_erased_with_it(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database, tmp_path: Path
) -> None:
    person = await patient_with_stay(client, hospitals.a)
    # The same person registered again without a matricule, billed, then merged: its stay
    # moves to the survivor, its invoices keep its own id.
    duplicate = await patient_with_stay(client, hospitals.a, matricule=None,
                                        no_matricule_reason="unidentified")
    merged = await client.post(f"/api/v1/patients/{person.id}/merge",
                               json={"duplicate_id": duplicate.id},
                               headers=hospitals.a.auth(Role.clerk))
    assert merged.status_code == 200, merged.text

    refused = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                        "--patient", duplicate.id, "--yes")
    assert refused.exit_code == 1
    assert f"was merged into patient {person.id}" in refused.output
    out = tmp_path / "access.json"
    exported = await cli(cli_env, "privacy", "export", "--tenant", hospitals.a.slug,
                         "--patient", person.id, "--out", str(out))
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in document["merged_records"]] == [duplicate.id]
    assert {s["id"] for s in document["stays"]} == {person.stay["id"], duplicate.stay["id"]}
    assert {i["id"] for i in document["invoices"]} == {
        i["id"] for i in (*person.invoices, *duplicate.invoices)}

    # Both stays are the survivor's now; the duplicate's invoices are back-dated by its id.
    for someone in (person, duplicate):
        await backdate(owner_db, hospitals.a.id, someone, 2014)
    done = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                     "--patient", person.id, "--yes")
    assert done.exit_code == 0, done.output
    assert "2 patients" in done.output and "4 invoices" in done.output
    rows = await table_rows(owner_db, hospitals.a.id)
    assert naming(rows, [*person.needles(), *duplicate.needles()]).keys() <= {"audit_events"}


@pytest.mark.postgres
async def test_without_the_erasure_path_the_trigger_refuses_and_nothing_changes(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str],
    owner_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on a database not yet migrated to 0010: the trigger refuses the invoices' deletion,
    the command says so clearly, and the transaction leaves every row in place."""
    person = await patient_with_stay(client, hospitals.a)
    await backdate(owner_db, hospitals.a.id, person, 2014)
    before = await table_rows(owner_db, hospitals.a.id)

    async def not_asked(session: object) -> None:
        return None

    monkeypatch.setattr(erasure, "allow_invoice_deletion", not_asked)
    result = await cli(cli_env, "privacy", "erase", "--tenant", hospitals.a.slug,
                       "--patient", person.id, "--yes")
    assert result.exit_code == 1
    assert "The database refused the erasure; nothing was changed" in result.output
    assert "issued documents are immutable" in result.output
    assert await table_rows(owner_db, hospitals.a.id) == before


@pytest.mark.postgres
async def test_a_role_shadowing_pg_has_role_still_cannot_delete_an_issued_invoice(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings
) -> None:
    # Where the application role may create objects (PostgreSQL 14 and older let everyone
    # create in `public`), its own pg_has_role first in its search_path must not open the
    # erasure path: the check runs with its search_path pinned to pg_catalog.
    person = await patient_with_stay(client, hospitals.a)
    invoice = uuid.UUID(person.invoices[0]["id"])
    owner = make_url(settings.database_url).set(drivername="postgresql")
    admin = await asyncpg.connect(owner.render_as_string(hide_password=False))
    app_url = make_url(settings.effective_app_database_url).set(drivername="postgresql")
    schema = f"shadow_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{settings.app_role}"')
    app_conn = await asyncpg.connect(app_url.render_as_string(hide_password=False))
    try:
        await app_conn.execute(
            f'CREATE FUNCTION "{schema}".pg_has_role(name, oid, text) RETURNS boolean '
            "LANGUAGE sql AS 'SELECT true'")
        with pytest.raises(asyncpg.PostgresError, match=r"cannot be deleted|not allowed"):
            async with app_conn.transaction():
                await app_conn.execute(f'SET LOCAL search_path = "{schema}", pg_catalog, public')
                await app_conn.execute("SELECT set_config('app.tenant_id', $1, true)",
                                       str(hospitals.a.id))
                await app_conn.execute("SELECT set_config('luxfact.erasure', 'on', true)")
                await app_conn.execute("DELETE FROM invoice_lines WHERE invoice_id = $1",
                                       invoice)
    finally:
        await app_conn.close()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()

"""`luxfact privacy`: a patient's (or a whole hospital's) data exported, or erased once the
law no longer requires it to be kept. See docs/privacy.md.

Run as the database owner like every administrative command, acting as the hospital named by
`--tenant` (PostgreSQL's row-level security then shows that hospital's rows only).
"""

import errno
import shutil
import tempfile
import uuid
from datetime import date
from pathlib import Path

import typer
from rich.progress import Progress, TextColumn
from sqlalchemy.exc import IntegrityError

from luxfact.audit.service import record
from luxfact.cli.common import (
    as_tenant,
    console,
    describe_db_error,
    err,
    fail,
    owner_db,
    run,
    settings,
)
from luxfact.db.migrate import current_revision
from luxfact.kit import context
from luxfact.kit.errors import Conflict, LuxfactError
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.privacy import erasure, export
from luxfact.settings import Settings
from luxfact.tenancy.service import get_tenant

FILE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
               errno.EFBIG}

app = typer.Typer(help="Data protection (GDPR): export or erase personal data.",
                  no_args_is_help=True)

TENANT_OPTION = typer.Option(..., "--tenant", help="The hospital's slug.")


def _today() -> date:
    """The hospital's day: retention periods end on Luxembourg calendar days."""
    return utcnow().astimezone(LUXEMBOURG).date()


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{n} {table}" for table, n in counts.items() if n]
    return ", ".join(shown) or "nothing"


# ---------------------------------------------------------------------------- export


@app.command("export")
def export_command(
    tenant: str = TENANT_OPTION,
    patient: uuid.UUID | None = typer.Option(
        None, "--patient", help="The patient's id. Without it: the whole hospital's data."),
    out: Path = typer.Option(..., "--out", help="With --patient: a new JSON file. Without: "
                             "a new (or empty) directory."),
) -> None:
    """Export everything the hospital holds about one patient as one JSON document (the right
    of access), or, without --patient, the whole hospital's data as JSON Lines per table."""
    config = settings()
    if patient is not None:
        if out.exists():
            fail(f"{out} already exists: an export never overwrites a file")
        content = run(_export_patient(config, tenant, patient))
        try:
            export.write_atomically(out, content)
        except OSError as exc:
            fail(f"cannot write {exc.filename or out}: {exc.strerror}; nothing was exported")
        console.print(f"patient {patient} of {tenant}: {len(content.encode())} bytes "
                      f"written to {out}")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"{out} already exists and is not an empty directory: an export never "
             "overwrites one")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target, then renamed: the directory appears whole or not at all.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        manifest = run(_export_tenant(config, tenant, staging))
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    rows = sum(t["rows"] for t in manifest["tables"].values())
    console.print(f"hospital {tenant}: {rows} rows in {len(manifest['tables'])} tables "
                  f"written to {out} (manifest.json lists them with their SHA-256)")


async def _export_patient(config: Settings, slug: str, patient_id: uuid.UUID) -> str:
    async with owner_db(config) as db, as_tenant(db, slug) as (session, tenant):
        return await export.export_patient(session, tenant, patient_id, utcnow())


async def _export_tenant(config: Settings, slug: str, directory: Path) -> dict:  # type: ignore[type-arg]
    async with owner_db(config) as db:
        async with db.transaction() as session:
            tenant = await get_tenant(session, slug)
            revision = await current_revision(await session.connection())
        with context.tenant_scope(tenant.id, actor="cli"):
            with Progress(TextColumn("{task.description}"), console=err,
                          transient=True) as progress:
                task = progress.add_task("exporting")
                seen: dict[str, int] = {}

                def advance(table: str, n: int) -> None:
                    seen[table] = seen.get(table, 0) + n
                    progress.update(task, description=f"exporting {table}: {seen[table]} rows")

                async with export.snapshot(db) as session:
                    try:
                        manifest = await export.export_tenant(session, tenant, directory,
                                                              utcnow(), revision, advance)
                    except OSError as exc:
                        # A full or unwritable export disk, not an unreachable database
                        # (whose errors are the sockets'; a write() names no file).
                        if exc.filename is None and exc.errno not in FILE_ERRORS:
                            raise
                        raise LuxfactError(f"cannot write {exc.filename or directory}: "
                                           f"{exc.strerror}; nothing was exported") from None
            async with db.transaction() as session:
                await record(session, "tenant.export", "tenant", tenant.id, {"rows": {
                    name: t["rows"] for name, t in manifest["tables"].items() if t["rows"]}},
                    tenant_id=tenant.id)
    return manifest


# ---------------------------------------------------------------------------- erase


@app.command("erase")
def erase_command(
    tenant: str = TENANT_OPTION,
    patient: uuid.UUID | None = typer.Option(
        None, "--patient", help="The patient's id. Without it: the whole hospital's data."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase a patient's data (the right to erasure), or without --patient every patient's
    data of the hospital, its staff accounts and logs. Refused while the law requires any of
    it to be kept (invoices: 10 years after the end of their year of issue), while a stay is
    not discharged, an act not invoiced or a claim batch not reconciled."""
    config = settings()
    today = _today()
    subject = f"patient {patient} of {tenant}" if patient else f"the whole hospital {tenant}"
    plan = run(_plan(config, tenant, patient, today))
    console.print(f"Erasing {subject} deletes: {_counts(plan)}.")
    if not yes:
        typer.confirm("This cannot be undone. Erase?", abort=True)
    erased = run(_erase(config, tenant, patient, today))
    for reference in erased.claim_files:
        # The copy `luxfact claims build` wrote; the stored file went with the transaction.
        copy = config.documents_dir / "claims" / f"{reference}.xml"
        if Path(reference).name == reference:
            copy.unlink(missing_ok=True)
    console.print(f"erased {subject}: {_counts(erased.counts)}.")
    if erased.claim_files:
        whom = "the patient" if patient else "its patients"
        console.print(f"claim files removed (past retention, they named {whom}): "
                      f"{', '.join(erased.claim_files)}")
    event = "patient.erased" if patient else "tenant.erased"
    console.print(f"audit event {event} recorded (ids and counts only).")


async def _plan(config: Settings, slug: str, patient: uuid.UUID | None,
                today: date) -> dict[str, int]:
    async with owner_db(config) as db, as_tenant(db, slug) as (session, tenant):
        if patient is not None:
            return await erasure.plan_patient(session, tenant.id, patient, today)
        return await erasure.plan_tenant(session, tenant.id, slug, today)


async def _erase(config: Settings, slug: str, patient: uuid.UUID | None,
                 today: date) -> erasure.Erased:
    # One transaction: every check again (things may have changed since the plan), then
    # every delete and the audit event; all or nothing.
    try:
        async with owner_db(config) as db, as_tenant(db, slug) as (session, tenant):
            if patient is not None:
                return await erasure.erase_patient(session, tenant.id, patient, today)
            return await erasure.erase_tenant(session, tenant.id, slug, today)
    except IntegrityError as exc:
        # A trigger or a foreign key said no: most likely a database not migrated to 0010,
        # whose triggers still refuse every deletion of an issued invoice.
        raise Conflict(f"The database refused the erasure; nothing was changed "
                       f"({describe_db_error(exc)}). Is it at the latest revision "
                       "(`luxfact db upgrade`)?") from None

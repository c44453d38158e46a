"""`luxfact backup` and `luxfact restore`: the database and the documents, checked.

A backup is a directory (or the same directory in a `.tar`):

    manifest.json   when, the database kind, the schema revision, row counts, file hashes
    database.dump   PostgreSQL: `pg_dump --format=custom` of the owner's database
    database.sqlite SQLite: a copy made with SQLite's online backup API
    documents/      LUXFACT_DOCUMENTS_DIR (claim files and the like)

Invoice PDFs live in the database (`invoice_documents`, with their SHA-256) and travel with
the dump. On PostgreSQL the counts are taken in the very snapshot pg_dump exports
(`--snapshot`), so the manifest describes exactly what the dump holds, even while the service
writes. Every table is under row-level security (FORCE, the owner included): the counts are
taken tenant by tenant, and pg_dump / pg_restore need a role that bypasses it (a superuser or
a role with BYPASSRLS), see docs/backups.md.
"""

import asyncio
import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from sqlalchemy.engine import make_url

from luxfact.cli.common import console, err, fail, settings
from luxfact.db import rls
from luxfact.db.engine import asyncpg_dsn, make_engine
from luxfact.settings import SettingsError, load_settings

FORMAT = 1
MANIFEST = "manifest.json"
DOCUMENTS = "documents"
PG_DUMP = "database.dump"
SQLITE_COPY = "database.sqlite"
COUNTED = ("invoices", "invoice_documents", "audit_events", "claim_batches")


# ---------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file())


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL (no password: that goes to PGPASSWORD, never on a command line) and the
    environment for pg_dump / pg_restore."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    clean = parsed.set(drivername="postgresql", password=None)
    return clean.render_as_string(hide_password=False), env


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        fail(f"{url}: not a SQLite database file")
    return Path(database)


def _normalise(url: str) -> str:
    try:
        return load_settings(database_url=url).database_url
    except SettingsError as exc:
        fail(f"--database-url: {exc}", 2)


def _docs_digest(rows: list[tuple[Any, str, str]]) -> str:
    lines = sorted(f"{invoice_id}:{kind}:{sha}" for invoice_id, kind, sha in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=err, transient=True)


# ----------------------------------------------------------------- counts, per database


async def _pg_facts(conn: asyncpg.Connection) -> dict[str, Any]:
    """Counts and the documents' digest, tenant by tenant (row-level security is forced on
    every tenant table; the explicit tenant_id condition keeps the sums right for a role that
    bypasses it too). Runs in the caller's transaction."""
    revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    tenants = [row[0] for row in await conn.fetch("SELECT id FROM tenants ORDER BY id")]
    counts = dict.fromkeys(COUNTED, 0)
    documents: list[tuple[Any, str, str]] = []
    bad_documents = 0
    for tenant in tenants:
        await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(tenant))
        for table in COUNTED:
            counts[table] += await conn.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE tenant_id = $1', tenant)  # noqa: S608
        rows = await conn.fetch(
            "SELECT invoice_id, kind, sha256, encode(sha256(content), 'hex') = sha256 AS ok "
            "FROM invoice_documents WHERE tenant_id = $1", tenant)
        documents += [(r["invoice_id"], r["kind"], r["sha256"]) for r in rows]
        bad_documents += sum(1 for r in rows if not r["ok"])
    await conn.execute("SELECT set_config('app.tenant_id', '', true)")
    return {"alembic_revision": revision, "tenants": len(tenants), "counts": counts,
            "invoice_documents_digest": _docs_digest(documents),
            "invoice_documents_corrupt": bad_documents}


def _sqlite_facts(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        tenants = conn.execute("SELECT count(*) FROM tenants").fetchone()[0]
        counts = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # noqa: S608
                  for table in COUNTED}
        documents = []
        bad_documents = 0
        for invoice_id, kind, sha, content in conn.execute(
                "SELECT invoice_id, kind, sha256, content FROM invoice_documents"):
            documents.append((invoice_id, kind, sha))
            bad_documents += hashlib.sha256(content).hexdigest() != sha
    finally:
        conn.close()
    return {"alembic_revision": revision, "tenants": tenants, "counts": counts,
            "invoice_documents_digest": _docs_digest(documents),
            "invoice_documents_corrupt": bad_documents}


# ---------------------------------------------------------------------------- backup


async def _pg_backup(url: str, target: Path) -> dict[str, Any]:
    """pg_dump in a snapshot exported by a transaction that counts the same rows."""
    libpq, env = _libpq(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
            facts = await _pg_facts(conn)
            process = await asyncio.create_subprocess_exec(
                "pg_dump", "--format=custom", f"--snapshot={snapshot}",
                f"--file={target}", f"--dbname={libpq}",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, stderr = await process.communicate()
            if process.returncode != 0:
                fail(f"pg_dump failed: {stderr.decode(errors='replace').strip()}")
    finally:
        await conn.close()
    return facts


def _sqlite_backup(url: str, target: Path) -> dict[str, Any]:
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        fail(f"{source_path}: no such database file")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    dest = sqlite3.connect(target)
    try:
        source.backup(dest)  # a consistent copy, even while the service writes
    finally:
        dest.close()
        source.close()
    return _sqlite_facts(target)


def backup(out: Path = typer.Argument(..., help="A new directory, or a file ending in .tar.")
           ) -> None:
    """Back up the database (pg_dump, or SQLite's online backup) and LUXFACT_DOCUMENTS_DIR,
    with a manifest of counts and SHA-256 hashes that `luxfact restore` checks."""
    config = settings()
    as_tar = out.name.endswith(".tar")
    if out.exists() and (as_tar or not out.is_dir() or any(out.iterdir())):
        fail(f"{out} already exists: a backup never overwrites another")
    if as_tar:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".luxfact-backup-", dir=out.parent))
    else:
        out.mkdir(parents=True, exist_ok=True)
        staging = out
    try:
        manifest = _make_backup(config.database_url, config.documents_dir, staging)
        if as_tar:
            with tarfile.open(out, "w") as tar:
                for path in sorted(staging.rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(staging)), recursive=False)
    except BaseException:
        shutil.rmtree(staging if as_tar else out, ignore_errors=True)
        raise
    finally:
        if as_tar:
            shutil.rmtree(staging, ignore_errors=True)
    counts = ", ".join(f"{n} {table}" for table, n in manifest["counts"].items())
    console.print(f"backup of the {manifest['database']} database at revision "
                  f"{manifest['alembic_revision']}: {counts}, "
                  f"{len(manifest['files']) - 1} document file(s)")
    print(out)


def _make_backup(url: str, documents_dir: Path, staging: Path) -> dict[str, Any]:
    kind = "postgresql" if url.startswith("postgresql") else "sqlite"
    database_file = PG_DUMP if kind == "postgresql" else SQLITE_COPY
    taken_at = datetime.now(UTC)
    with err.status(f"dumping the {kind} database"):
        facts = (asyncio.run(_pg_backup(url, staging / database_file)) if kind == "postgresql"
                 else _sqlite_backup(url, staging / database_file))
    sources = _files(documents_dir)
    with _progress() as progress:
        task = progress.add_task("copying documents", total=len(sources))
        for source in sources:
            target = staging / DOCUMENTS / source.relative_to(documents_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            progress.advance(task)
    files = {}
    for path in _files(staging):
        if path.name != MANIFEST:
            files[path.relative_to(staging).as_posix()] = {
                "sha256": _sha256(path), "size": path.stat().st_size}
    manifest = {"format": FORMAT, "created_at": taken_at.isoformat(), "database": kind,
                "database_file": database_file, **facts, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------------- restore


@contextmanager
def _opened(path: Path) -> Iterator[Path]:
    """The backup as a directory (a .tar is unpacked into a temporary one)."""
    if path.is_dir():
        yield path
        return
    if not path.is_file() or not tarfile.is_tarfile(path):
        fail(f"{path}: not a backup (a directory or a .tar written by `luxfact backup`)")
    with tempfile.TemporaryDirectory(prefix="luxfact-restore-") as tmp:
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")  # no absolute paths, no links out
        yield Path(tmp)


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"{root / MANIFEST}: unreadable manifest ({exc})")
    if manifest.get("format") != FORMAT:
        fail(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    return manifest


def _check_files(root: Path, files: dict[str, dict[str, Any]], what: str,
                 prefix_map: Callable[[str], Path]) -> list[str]:
    problems = []
    with _progress() as progress:
        task = progress.add_task(what, total=len(files))
        for name, expected in files.items():
            path = prefix_map(name)
            if not path.is_file():
                problems.append(f"{name}: missing")
            elif _sha256(path) != expected["sha256"]:
                problems.append(f"{name}: SHA-256 differs")
            progress.advance(task)
    return problems


async def _pg_tables(url: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')")
    finally:
        await conn.close()


async def _pg_restore(url: str, dump: Path, app_role: str, app_role_password: str) -> None:
    libpq, env = _libpq(url)
    # No owner, no ACL: the objects belong to whoever restores (the owner of the new
    # database), and the application role is granted afresh below, as `db upgrade` does.
    process = await asyncio.create_subprocess_exec(
        "pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
        f"--dbname={libpq}", str(dump),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        fail(f"pg_restore failed (nothing was restored): "
             f"{stderr.decode(errors='replace').strip()}")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: rls.ensure_app_role(c, app_role, app_role_password))
    finally:
        await engine.dispose()


async def _pg_restored_facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            return await _pg_facts(conn)
    finally:
        await conn.close()


def restore(
    backup_path: Path = typer.Argument(..., metavar="BACKUP",
                                       help="A backup directory or .tar."),
    database_url: str = typer.Option(
        ..., "--database-url",
        help="The new, empty database: postgresql://… (it must exist) or sqlite:///file."),
    documents_dir: Path | None = typer.Option(
        None, "--documents-dir", help="Default: LUXFACT_DOCUMENTS_DIR."),
) -> None:
    """Restore a backup into a new, empty database (a database that is not empty is always
    refused: restore never merges nor overwrites), restore the documents, then check the
    counts and hashes of the manifest against what was restored."""
    config = settings()
    url = _normalise(database_url)
    docs_target = documents_dir or config.documents_dir
    with _opened(backup_path) as root:
        manifest = _read_manifest(root)
        kind = "postgresql" if url.startswith("postgresql") else "sqlite"
        if manifest["database"] != kind:
            fail(f"the backup is of a {manifest['database']} database, the target is {kind}")
        # Refusals first: nothing is changed unless everything can be restored.
        if kind == "postgresql":
            try:
                tables = asyncio.run(_pg_tables(url))
            except (OSError, asyncpg.PostgresError) as exc:
                fail(f"cannot reach the target database (create it first, empty): {exc}")
            if tables:
                fail(f"refusing to restore: the target database is not empty ({tables} "
                     "relations); restore into a new, empty database")
        else:
            target_file = _sqlite_path(url)
            if target_file.exists() and target_file.stat().st_size > 0:
                fail(f"refusing to restore: {target_file} exists and is not empty; "
                     "restore into a new file")
        existing = _files(docs_target)
        if existing:
            fail(f"refusing to restore: the documents directory {docs_target} is not empty "
                 f"({len(existing)} files); give an empty one with --documents-dir")
        backup_files = manifest["files"]
        problems = _check_files(root, backup_files, "checking the backup's files",
                                lambda name: root / name)
        if problems:
            fail("the backup is damaged, nothing was restored: " + "; ".join(problems))

        with err.status(f"restoring the {kind} database"):
            if kind == "postgresql":
                asyncio.run(_pg_restore(url, root / manifest["database_file"],
                                        config.app_role, config.app_role_password))
            else:
                _sqlite_restore(root / manifest["database_file"], target_file)
        documents = {name: meta for name, meta in backup_files.items()
                     if name.startswith(f"{DOCUMENTS}/")}
        with _progress() as progress:
            task = progress.add_task("restoring documents", total=len(documents))
            for name in documents:
                target = docs_target / name.removeprefix(f"{DOCUMENTS}/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / name, target)
                progress.advance(task)

    with err.status("checking the restored data"):
        facts = (asyncio.run(_pg_restored_facts(url)) if kind == "postgresql"
                 else _sqlite_facts(target_file))
    problems = _check_files(docs_target, documents, "checking the restored documents",
                            lambda name: docs_target / name.removeprefix(f"{DOCUMENTS}/"))
    for table, expected in manifest["counts"].items():
        if facts["counts"].get(table) != expected:
            problems.append(f"{table}: {facts['counts'].get(table)} rows, "
                            f"the manifest says {expected}")
    if facts["alembic_revision"] != manifest["alembic_revision"]:
        problems.append(f"revision {facts['alembic_revision']}, "
                        f"the manifest says {manifest['alembic_revision']}")
    if facts["invoice_documents_digest"] != manifest["invoice_documents_digest"]:
        problems.append("invoice_documents: the PDFs' hashes differ from the manifest's")
    if facts["invoice_documents_corrupt"]:
        problems.append(f"invoice_documents: {facts['invoice_documents_corrupt']} PDF(s) "
                        "whose content does not match their SHA-256")
    counts = ", ".join(f"{facts['counts'][table]} {table}" for table in COUNTED)
    console.print(f"restored the {kind} backup of {manifest['created_at']} "
                  f"(revision {facts['alembic_revision']}): {counts}, "
                  f"{len(documents)} document file(s) in {docs_target}")
    if problems:
        fail("the restored data does not match the manifest: " + "; ".join(problems))
    console.print("checked: counts, invoice PDFs' SHA-256 and document files match the "
                  "manifest")


def _sqlite_restore(source_path: Path, target_path: Path) -> None:
    target_path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    dest = sqlite3.connect(target_path)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()

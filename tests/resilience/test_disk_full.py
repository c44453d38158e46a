"""Disk full while the database writes: the request fails whole, answered 503 with
`Retry-After`, and succeeds when sent again once space is freed.

The disks are real and really full, nothing is mocked: a small tmpfs holds the database's
storage and a filler file written as root takes every byte left on it. On SQLite the tmpfs
holds the database file and its WAL, so the commit fails with SQLite's own "database or disk
is full". On PostgreSQL a tablespace on it holds the invoices, their lines and their
documents (with their TOAST tables and indexes), so the insert that needs a new page fails
with PostgreSQL's own disk_full (SQLSTATE 53100); the counters, acts and stays stay on the
main disk, so an issue draws its number and locks its acts before it fails, and the rollback
has to undo them. Each test works in a scratch database of its own, migrated from scratch as
the suite's is, so the suite's database is never moved or filled.

Why 503 and not 507 Insufficient Storage: nothing is wrong with the request, and the very
same request succeeds once an operator frees space. Clients and proxies retry a 503 that
carries Retry-After; 507 is WebDAV's "this will not fit", which no client retries, and would
be odd on a GET of a PDF. The problem type `storage-full` tells the operator what to do.
"""

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from luxfact.app import create_app
from luxfact.auth.roles import Role
from luxfact.billing.service import today
from luxfact.cli.tariffs import DEMO_PACKAGE
from luxfact.db import migrate
from luxfact.db.engine import Database
from luxfact.db.errors import storage_full
from luxfact.db.models import AuditEvent, InvoiceDocument, NumberCounter, metadata
from luxfact.settings import Settings, load_settings
from luxfact.stays.models import Act, Stay
from luxfact.tariffs import service as tariffs
from luxfact.tariffs.package import read_package
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import (
    BACKEND,
    POSTGRES_URL,
    REPO,
    TEST_ROLE,
    Hospital,
    _asyncpg_dsn,
    make_hospital,
)
from tests.web.desk import signed_in

NOT_RUN = "DISK-FULL TEST NOT RUN: "
# The tables a PostgreSQL issue or PDF writes last: on the small tablespace.
ON_SMALL_DISK = ("invoices", "invoice_lines", "invoice_documents")


class SmallDisk:
    """A mounted tmpfs: filled to its last byte by a file of root's, then freed again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        chunk = bytes(64 * 1024)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, chunk)  # the last write is short: it takes the last bytes
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.path).free == 0  # not one block left to grow a file

    def free(self) -> None:
        self.filler.unlink()
        assert shutil.disk_usage(self.path).free > 1 << 20


@contextmanager
def small_disk(size: str, uid: int = 0, gid: int = 0) -> Iterator[SmallDisk]:
    """A tmpfs of `size` owned by uid:gid, unmounted however the test ends. Not under
    pytest's tmp_path: that one is root's alone, and PostgreSQL must reach the mount."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or not mount or not umount:
        pytest.skip(NOT_RUN + "mounting a tmpfs needs root and mount(8)")
    path = Path(tempfile.mkdtemp(prefix="luxfact-disk-full-", dir="/tmp"))
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0700,uid={uid},gid={gid}", "tmpfs",
         str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        path.rmdir()
        pytest.skip(NOT_RUN + f"mounting a tmpfs was refused ({mounted.stderr.strip()}); "
                    "it needs root with CAP_SYS_ADMIN")
    try:
        yield SmallDisk(path)
    finally:
        # A file still open (a connection not closed after a failure) makes umount refuse:
        # detach lazily then, the mount must not outlive the test.
        if subprocess.run([umount, str(path)], capture_output=True).returncode != 0:
            subprocess.run([umount, "-l", str(path)], check=True)
        path.rmdir()


def settings_for(url: str, tmp_path: Path, **extra: Any) -> Settings:
    return load_settings(
        database_url=url, environment="test", secret_key="test-secret-key-0123456789",
        documents_dir=tmp_path / "documents", tenants_dir=REPO / "tenants",
        max_body_bytes=64 * 1024, **extra)


async def on_sqlite(stack: AsyncExitStack, tmp_path: Path) -> tuple[Settings, SmallDisk,
                                                                     Callable[[], None]]:
    disk = stack.enter_context(small_disk("16m"))
    path = disk.path / "luxfact.db"
    settings = settings_for(f"sqlite+aiosqlite:///{path}", tmp_path)
    await migrate.upgrade(settings)

    def empty_the_wal() -> None:
        # A commit appends to the -wal file, which SQLite reuses from its start after a
        # checkpoint: a commit written into space the WAL already holds needs no new block and
        # succeeds even on a full disk (rightly: it is durable). Emptied, the WAL has to grow
        # for the next commit, as it does when a busy day fills the disk.
        with closing(sqlite3.connect(path)) as conn:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        wal = path.with_name(path.name + "-wal")
        assert busy == 0 and (not wal.exists() or wal.stat().st_size == 0)

    return settings, disk, empty_the_wal


def server_owner(data_directory: str) -> tuple[int, int]:
    """The user PostgreSQL runs as, who must own a tablespace's directory."""
    path = Path(data_directory)
    if not path.is_dir():
        pytest.skip(NOT_RUN + f"PostgreSQL's data directory {path} is not on this machine, "
                    "so a tmpfs mounted here cannot hold a tablespace of it")
    return path.stat().st_uid, path.stat().st_gid


async def on_postgres(stack: AsyncExitStack, tmp_path: Path) -> tuple[Settings, SmallDisk,
                                                                       Callable[[], None]]:
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    stack.push_async_callback(admin.close)
    uid, gid = server_owner(await admin.fetchval("SHOW data_directory"))
    disk = stack.enter_context(small_disk("8m", uid, gid))
    name = f"luxfact_disk_full_{uuid.uuid4().hex[:12]}"
    # Dropped in reverse: the database (its files on the tablespace) before the tablespace,
    # the tablespace before the unmount.
    await admin.execute(f"CREATE TABLESPACE \"{name}\" LOCATION '{disk.path}'")
    stack.push_async_callback(admin.execute, f'DROP TABLESPACE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    stack.push_async_callback(admin.execute, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    owner_url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    settings = settings_for(owner_url, tmp_path, app_role=TEST_ROLE)
    await migrate.upgrade(settings)

    scratch = await asyncpg.connect(_asyncpg_dsn(owner_url))
    try:
        moved = set(ON_SMALL_DISK)
        for table in ON_SMALL_DISK:
            # Moves the table with its TOAST table; its indexes move one by one.
            await scratch.execute(f'ALTER TABLE "{table}" SET TABLESPACE "{name}"')
            for (index,) in await scratch.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = $1", table):
                await scratch.execute(f'ALTER INDEX "{index}" SET TABLESPACE "{name}"')
                moved.add(index)
        moved.add(await scratch.fetchval(
            "SELECT t.relname FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid "
            "WHERE c.relname = 'invoice_documents'"))
        placed = {row[0] for row in await scratch.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace "
            "WHERE t.spcname = $1", name)}
    finally:
        await scratch.close()
    assert len(moved) > 2 * len(ON_SMALL_DISK) and moved <= placed
    return settings, disk, lambda: None


@dataclass
class Service:
    app: object
    client: httpx.AsyncClient
    hospital: Hospital
    db: Database  # the owner's connection: what is really stored
    disk: SmallDisk
    settle: Callable[[], None]  # run before filling: SQLite empties its WAL (see on_sqlite)

    def fill_the_disk(self) -> None:
        self.settle()
        self.disk.fill()


@pytest.fixture(params=[
    pytest.param("sqlite", marks=pytest.mark.skipif(
        BACKEND == "postgres", reason="the SQLite variant: it runs in the SQLite pass")),
    pytest.param("postgres", marks=pytest.mark.postgres),
])
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Service]:
    """The service on a scratch database whose storage can be filled up."""
    async with AsyncExitStack() as stack:
        arrange = on_sqlite if request.param == "sqlite" else on_postgres
        settings, disk, settle = await arrange(stack, tmp_path)
        db = Database(settings.database_url, pool_size=2)
        stack.push_async_callback(db.dispose)
        await load_the_demo_catalogue(db)
        hospital = await make_hospital(db, "full")
        manager = await stack.enter_async_context(LifespanManager(create_app(settings)))
        client = await stack.enter_async_context(httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"))
        yield Service(manager.app, client, hospital, db, disk, settle)


async def load_the_demo_catalogue(db: Database) -> None:
    package = read_package(DEMO_PACKAGE)
    async with db.transaction() as session:
        await tariffs.apply(session, package, await tariffs.diff(session, package))


async def stored(service: Service, stay_id: str) -> dict[str, Any]:
    """Everything of the hospital's in the database: rows per table, the counters, the stay
    and its acts, the documents and the audit trail. Equal before and after a failed request
    means the request left nothing behind."""
    tenant_id = service.hospital.id
    facts: dict[str, Any] = {}
    async with service.db.transaction() as session:
        for table in metadata.sorted_tables:
            if "tenant_id" in table.c:
                facts[table.name] = (await session.execute(select(func.count()).select_from(
                    table).where(table.c.tenant_id == tenant_id))).scalar_one()
        facts["counters"] = sorted(tuple(row) for row in await session.execute(
            select(NumberCounter.series, NumberCounter.year, NumberCounter.last).where(
                NumberCounter.tenant_id == tenant_id)))
        facts["stay"] = (await session.execute(select(Stay.state).where(
            Stay.tenant_id == tenant_id, Stay.id == uuid.UUID(stay_id)))).scalar_one()
        facts["acts"] = sorted((await session.execute(select(Act.state).where(
            Act.tenant_id == tenant_id, Act.stay_id == uuid.UUID(stay_id)))).scalars())
        facts["documents"] = sorted(tuple(row) for row in await session.execute(select(
            InvoiceDocument.invoice_id, InvoiceDocument.kind, InvoiceDocument.sha256).where(
                InvoiceDocument.tenant_id == tenant_id)))
        facts["audit"] = sorted((await session.execute(select(AuditEvent.action).where(
            AuditEvent.tenant_id == tenant_id))).scalars())
    return facts


async def test_other_database_errors_are_not_taken_for_a_full_disk(tmp_path: Path) -> None:
    """A storage-full answer tells the operator to free space: it must not be given for a
    bug. asyncpg's other errors reach us as the same bare DBAPIError as disk_full, SQLite's
    as the same OperationalError: only the SQLSTATE or SQLite's code tells them apart."""
    postgres = BACKEND == "postgres"
    url = (settings_for(POSTGRES_URL, tmp_path).database_url if postgres
           else f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}")
    statements = ["SELECT * FROM no_such_table"] + (["SELECT 1 / 0"] if postgres else [])
    db = Database(url, pool_size=1)
    try:
        for statement in statements:
            async with db.engine.connect() as conn:
                with pytest.raises(sa_exc.DBAPIError) as raised:
                    await conn.exec_driver_sql(statement)
            assert not storage_full(raised.value), statement
    finally:
        await db.dispose()


def assert_storage_full(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    problem = response.json()
    assert problem["type"].endswith("/storage-full") and problem["status"] == 503
    assert "disk" in problem["detail"] and "nothing was changed" in problem["detail"]


async def test_an_issue_on_a_full_disk_fails_whole_and_succeeds_when_retried(
    service: Service
) -> None:
    client, hospital = service.client, service.hospital
    stay = await stay_with_acts(client, hospital)
    before = await stored(service, stay["id"])
    assert before["invoices"] == 0 and set(before["acts"]) == {"recorded"}
    url = f"/api/v1/stays/{stay['id']}/invoices"
    headers = {**hospital.auth(Role.billing), "Idempotency-Key": uuid.uuid4().hex}

    service.fill_the_disk()
    refused = await client.post(url, json={"kind": "final"}, headers=headers)
    assert_storage_full(refused)
    service.disk.free()
    # No number drawn, no invoice or line, the acts not locked, the stay not closed, no
    # audit event, no webhook, no idempotency record (which would replay the 503).
    assert await stored(service, stay["id"]) == before

    issued = await client.post(url, json={"kind": "final"}, headers=headers)
    assert issued.status_code == 201, issued.text
    year = today().year
    assert [i["number"] for i in issued.json()["invoices"]] == [
        f"T-{year}-000001", f"T-{year}-000002"]  # the failed issue kept no number
    after = await stored(service, stay["id"])
    assert after["invoices"] == 2 and after["stay"] == "closed"
    assert set(after["acts"]) == {"invoiced"}
    assert after["counters"] == [("invoice", year, 2)]
    # The same key again is the same issue, answered from its record: issued once.
    again = await client.post(url, json={"kind": "final"}, headers=headers)
    assert again.status_code == 201 and again.json() == issued.json()
    assert (await stored(service, stay["id"]))["invoices"] == 2


async def test_a_pdf_on_a_full_disk_is_refused_then_archived_once_space_is_freed(
    service: Service
) -> None:
    client, hospital = service.client, service.hospital
    stay = await stay_with_acts(client, hospital)
    response = await bill(client, hospital, stay)
    assert response.status_code == 201, response.text
    invoice = response.json()["invoices"][1]  # the patient's: the one printed
    headers = hospital.auth(Role.billing)
    url = f"/api/v1/invoices/{invoice['id']}/pdf"
    desk_url = f"/desk/invoices/{invoice['id']}/pdf"
    async with signed_in(service.app, service.db, hospital, Role.billing) as desk:
        before = await stored(service, stay["id"])
        assert before["documents"] == [] and "invoice.render" not in before["audit"]

        service.fill_the_disk()
        assert_storage_full(await client.get(url, headers=headers))
        assert_storage_full(await desk.get(desk_url))  # the billing office's page alike
        # What needs no new space still works: the invoice reads as issued (the key was
        # used within the minute, so authenticating it writes nothing either).
        read = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=headers)
        assert read.status_code == 200 and read.json()["number"] == invoice["number"]
        service.disk.free()
        # No document row, no render in the audit trail, the numbering and the invoice as
        # they were: the invoice is issued once and still reads as issued.
        assert await stored(service, stay["id"]) == before
        now = await client.get(f"/api/v1/invoices/{invoice['id']}", headers=headers)
        assert now.status_code == 200
        assert {k: now.json()[k] for k in ("number", "total", "status", "lines")} == {
            k: invoice[k] for k in ("number", "total", "status", "lines")}
        from_desk = await desk.get(desk_url)  # the retry, from the desk
    assert from_desk.status_code == 200 and from_desk.content.startswith(b"%PDF-")
    digest = hashlib.sha256(from_desk.content).hexdigest()
    assert from_desk.headers["x-content-sha256"] == digest

    # Served as archived, byte for byte: the same hash on every later request.
    for _ in range(2):
        again = await client.get(url, headers=headers)
        assert again.status_code == 200 and again.content == from_desk.content
        assert again.headers["x-content-sha256"] == digest
    after = await stored(service, stay["id"])
    assert after["documents"] == [(uuid.UUID(invoice["id"]), "invoice", digest)]
    assert after["audit"].count("invoice.render") == 1
    assert after["counters"] == before["counters"]

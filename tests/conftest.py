"""Test harness: one fresh database per run, on SQLite or PostgreSQL.

`LUXFACT_TEST_DB=postgres` runs the suite on a new PostgreSQL database created from
`LUXFACT_TEST_POSTGRES_URL` and dropped at the end; otherwise a new SQLite file. Migrations
run once, exactly as `luxfact db upgrade` runs them, and the app connects as the application
role (row-level security applies to it on PostgreSQL).

Tests stay independent by working in hospitals of their own: every `hospitals` fixture makes
two new tenants with fresh keys. The tests therefore run against real commits, which the
concurrency, locking and crash tests need anyway, instead of a transaction rolled back.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from luxfact.app import create_app
from luxfact.auth import service as auth_service
from luxfact.auth.roles import Role
from luxfact.db import migrate
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.settings import Settings, load_settings
from luxfact.tenancy.config import TenantConfig, TenantFile
from luxfact.tenancy.repository import TenantRepository
from luxfact.tenancy.service import sync_tenants
from luxfact.webhooks import addresses as webhook_addresses
from tests import suite_logs

BACKEND = os.environ.get("LUXFACT_TEST_DB", "sqlite")
POSTGRES_URL = os.environ.get(
    "LUXFACT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_ROLE = "luxfact_test_app"
REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    suite_logs.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    suite_logs.remove(keep=exitstatus != 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The scan of the suite's logs reads what every other test wrote: it goes last.
    items.sort(key=lambda item: "runs_last" in item.keywords)
    if BACKEND == "postgres":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (LUXFACT_TEST_DB=postgres)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# The tests' webhook receivers listen on loopback.
WEBHOOK_NETWORKS = "127.0.0.0/8, ::1/128"


@pytest.fixture(autouse=True)
def _webhook_networks() -> None:
    """What the app's lifespan and `luxfact worker` set from the settings, set before each
    test: tests run workers without an app, and an app or command started by an earlier
    test with other settings would have left its own."""
    webhook_addresses.configure(WEBHOOK_NETWORKS)


@pytest.fixture(scope="session")
async def settings(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    tmp = tmp_path_factory.mktemp("luxfact")
    common = {
        "environment": "test",
        "secret_key": "test-secret-key-0123456789",
        "documents_dir": tmp / "documents",
        "tenants_dir": REPO / "tenants",
        "max_body_bytes": 64 * 1024,
        # Over the 10 MB HL7 message (answered AR), small enough to send past it.
        "max_hl7_body_bytes": 12 * 1024 * 1024,
        "webhook_networks": WEBHOOK_NETWORKS,
    }
    if BACKEND != "postgres":
        config = load_settings(database_url=f"sqlite+aiosqlite:///{tmp / 'test.db'}", **common)
        await migrate.upgrade(config)
        yield config
        return
    name = f"luxfact_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    owner_url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    config = load_settings(database_url=owner_url, app_role=TEST_ROLE, **common)
    await migrate.upgrade(config)
    yield config
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def catalogue(owner_db: "Database") -> None:
    """The demo tariff package, loaded once (the catalogue is national: shared by all)."""
    from luxfact.cli.tariffs import DEMO_PACKAGE
    from luxfact.tariffs import service as tariffs
    from luxfact.tariffs.package import read_package

    package = read_package(DEMO_PACKAGE)
    async with owner_db.transaction() as session:
        changes = await tariffs.diff(session, package)
        if not changes.empty:
            await tariffs.apply(session, package, changes)


@pytest.fixture(autouse=True)
def _no_remembered_keys() -> Iterator[None]:
    """Each test starts with no API key remembered as valid (luxfact/auth/key_cache.py):
    a key a test revokes or edits in the database is then looked up afresh."""
    from luxfact.auth.service import recent_keys

    recent_keys.clear()
    yield


@pytest.fixture(scope="session")
async def owner_db(settings: Settings) -> AsyncIterator[Database]:
    """The owner's connection, for arranging data the way the CLI would."""
    db = Database(settings.database_url, pool_size=4)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with LifespanManager(application) as manager:
        yield manager.app


@pytest.fixture(scope="session")
async def client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def tenant_file(slug: str, **overrides: object) -> TenantConfig:
    data: dict[str, object] = {
        "legal_name": f"Hôpital {slug}",
        "cns_provider_code": "90000017",
        "iban": "LU280019400644750000",
        "bic": "BCEELULL",
        "address": {"street": "1, rue Test", "postal_code": "L-1000", "city": "Luxembourg"},
        "invoices": {"number_pattern": "T-{year}-{seq:06}",
                     "credit_note_pattern": "TC-{year}-{seq:06}"},
    }
    data.update(overrides)
    return TenantConfig(slug, Path(f"{slug}.toml"), TenantFile.model_validate(data))


@dataclass
class Hospital:
    slug: str
    id: uuid.UUID
    keys: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role | str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[Role(role)]}"}


@dataclass
class Hospitals:
    a: Hospital
    b: Hospital


async def make_hospital(db: Database, prefix: str = "h", **overrides: object) -> Hospital:
    slug = f"{prefix}-{uuid.uuid4().hex[:10]}"
    async with db.transaction() as session:
        await sync_tenants(session, [tenant_file(slug, **overrides)])
        tenant = await TenantRepository(session).by_slug(slug)
    assert tenant is not None
    hospital = Hospital(slug, tenant.id)
    with context.tenant_scope(tenant.id, actor="test"):
        async with db.transaction() as session:
            for role in Role:
                _, clear = await auth_service.create_api_key(
                    session, tenant.id, name=f"test {role.value}", role=role)
                hospital.keys[role] = clear
    return hospital


@pytest.fixture
async def hospitals(owner_db: Database) -> Hospitals:
    """Two hospitals, each with a key per role: the personas of every endpoint test."""
    return Hospitals(await make_hospital(owner_db, "a"), await make_hospital(owner_db, "b"))


@pytest.fixture
def cli_env(settings: Settings) -> Iterator[dict[str, str]]:
    yield {
        "LUXFACT_DATABASE_URL": settings.database_url,
        "LUXFACT_APP_ROLE": settings.app_role,
        "LUXFACT_SECRET_KEY": settings.secret_key,
        "LUXFACT_DOCUMENTS_DIR": str(settings.documents_dir),
    }

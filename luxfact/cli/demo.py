"""`luxfact demo`: the demo logins and keys that `make run` prints, created idempotently."""

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.auth import credentials, service
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.cli.common import as_tenant, owner_db
from luxfact.db.engine import Database
from luxfact.settings import Settings
from luxfact.tenancy.repository import TenantRepository

DEMO_PREFIX = "demo-"


def demo_password(slug: str, role: Role) -> str:
    return f"{slug}-{role.value}"


def demo_email(slug: str, role: Role) -> str:
    return f"{role.value}@{slug}.lu"


async def seed_demo(config: Settings) -> list[dict[str, str]]:
    """Demo users and keys, one per role, for every tenant whose slug starts with `demo-`.

    Keys are derived from the secret key, so a second run shows the same keys without
    storing them anywhere in clear.
    """
    rows: list[dict[str, str]] = []
    async with owner_db(config) as db:
        async with db.transaction() as session:
            slugs = [t.slug for t in await TenantRepository(session).all()
                     if t.slug.startswith(DEMO_PREFIX)]
        for slug in slugs:
            rows.extend(await _seed_tenant(db, config, slug))
    return rows


async def _seed_tenant(db: Database, config: Settings, slug: str) -> list[dict[str, str]]:
    rows = []
    async with as_tenant(db, slug) as (session, tenant):
        repo = AuthRepository(session, tenant.id)
        for role in Role:
            email = demo_email(slug, role)
            if await repo.user_by_email(email) is None:
                await service.create_user(session, tenant.id, email=email, role=role,
                                          password=demo_password(slug, role),
                                          display_name=f"Demo {role.value}")
            secret = credentials.derived_secret(config.secret_key, f"demo-key:{slug}:{role}")
            clear = credentials.new_api_key(tenant.id, secret)
            if await repo.key_by_hash(credentials.hash_api_key(clear)) is None:
                await service.create_api_key(session, tenant.id, name=f"demo {role.value}",
                                             role=role, created_by="demo", secret=secret)
            rows.append({"tenant": slug, "role": role.value, "email": email,
                         "password": demo_password(slug, role), "api_key": clear})
        await _seed_prices(session, config, tenant.id, slug)
    return rows


async def _seed_prices(
    session: AsyncSession, config: Settings, tenant_id: uuid.UUID, slug: str
) -> None:
    """`tenants/<slug>-prices.csv`, when the hospital has no price list yet."""
    from luxfact.tariffs.package import read_hospital_prices
    from luxfact.tariffs.repository import TariffRepository
    from luxfact.tariffs.service import replace_hospital_prices

    path = config.tenants_dir / f"{slug}-prices.csv"
    if not path.is_file() or await TariffRepository(session).tenant_prices(tenant_id):
        return
    rows, problems = read_hospital_prices(path)
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    await replace_hospital_prices(session, tenant_id, rows)


async def seed_demo_tariffs(config: Settings) -> str:
    """The demo tariff package, only on a catalogue never imported (a real one is kept)."""
    from luxfact.cli.tariffs import DEMO_PACKAGE, import_package
    from luxfact.tariffs.package import read_package
    from luxfact.tariffs.repository import TariffRepository

    async with owner_db(config) as db, db.transaction() as session:
        if await TariffRepository(session).version():
            return "tariffs: catalogue already loaded, kept as it is"
    package = read_package(DEMO_PACKAGE)
    assert not package.problems, package.problems
    return "tariffs: " + await import_package(config, package, dry_run=False, yes=True,
                                             show_diff=False)

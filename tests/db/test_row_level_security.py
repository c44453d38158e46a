"""Row-level security on PostgreSQL, proven with raw SQL on the application role."""

import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from luxfact.db.engine import tenant_setting_sql
from luxfact.db.models import tenant_owned_tables
from luxfact.settings import Settings
from tests.conftest import Hospitals

pytestmark = pytest.mark.postgres


async def _app_connection(settings: Settings) -> asyncpg.Connection:
    url = make_url(settings.effective_app_database_url).set(drivername="postgresql")
    return await asyncpg.connect(url.render_as_string(hide_password=False))


async def test_app_role_owns_nothing_and_cannot_bypass(settings: Settings) -> None:
    conn = await _app_connection(settings)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert role["rolsuper"] is False and role["rolbypassrls"] is False
        owned = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
            "AND tableowner = current_user")
        assert owned == 0
    finally:
        await conn.close()


async def test_only_the_set_tenants_rows_are_visible(
    settings: Settings, hospitals: Hospitals
) -> None:
    conn = await _app_connection(settings)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", str(hospitals.a.id))
            tenants = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM api_keys")}
            assert tenants == {hospitals.a.id}
            audit = {r["tenant_id"] for r in await conn.fetch("SELECT tenant_id FROM audit_events")}
            assert audit == {hospitals.a.id}
        # set_config(..., true) lasts for the transaction only: afterwards nothing is visible.
        assert await conn.fetchval("SELECT count(*) FROM api_keys") == 0
        assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") == ""
    finally:
        await conn.close()


async def test_no_tenant_set_means_no_rows(settings: Settings, hospitals: Hospitals) -> None:
    conn = await _app_connection(settings)
    try:
        for table in tenant_owned_tables():
            assert await conn.fetchval(f'SELECT count(*) FROM "{table}"') == 0, table
    finally:
        await conn.close()


async def test_writing_another_tenants_row_fails(
    settings: Settings, hospitals: Hospitals
) -> None:
    conn = await _app_connection(settings)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)",
                                   str(hospitals.a.id))
                await conn.execute(
                    "INSERT INTO users (tenant_id, id, email, display_name, role, password_hash,"
                    " language, disabled, created_at) VALUES ($1, $2, 'x@y.lu', '', 'clerk',"
                    " 'h', 'fr', false, now())", hospitals.b.id, uuid.uuid4())
        # Moving one of A's rows to B is refused as well.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)",
                                   str(hospitals.a.id))
                await conn.execute("UPDATE api_keys SET tenant_id = $1", hospitals.b.id)
    finally:
        await conn.close()


async def test_app_role_cannot_change_the_audit_trail(
    settings: Settings, hospitals: Hospitals
) -> None:
    conn = await _app_connection(settings)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.tenant_id', $1, true)",
                                   str(hospitals.a.id))
                await conn.execute("DELETE FROM audit_events")
    finally:
        await conn.close()


async def test_every_tenant_owned_table_has_forced_rls(settings: Settings) -> None:
    """Lists the tables in the database itself, so a new table cannot slip through."""
    conn = await _app_connection(settings)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND EXISTS ("
            "  SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid"
            "  AND a.attname = 'tenant_id' AND NOT a.attisdropped)")
        assert {r["relname"] for r in rows} == set(tenant_owned_tables())
        for row in rows:
            assert row["relrowsecurity"] and row["relforcerowsecurity"], row["relname"]
            assert row["policies"] >= 1, row["relname"]
    finally:
        await conn.close()


def test_citus_mode_emits_set_local_with_a_validated_literal() -> None:
    tenant = uuid.UUID("2f1a8154-808f-4f93-a6bb-7725ee8c96fa")
    assert tenant_setting_sql(tenant, "citus") == [
        ("SET LOCAL citus.propagate_set_commands = 'local'", {}),
        ("SET LOCAL app.tenant_id = '2f1a8154-808f-4f93-a6bb-7725ee8c96fa'", {}),
    ]
    assert tenant_setting_sql(None, "citus")[1][0] == "SET LOCAL app.tenant_id = ''"
    assert tenant_setting_sql(tenant, "set_config") == [
        ("SELECT set_config('app.tenant_id', :tenant, true)", {"tenant": str(tenant)})]

"""The tenant goes to PostgreSQL with the transaction's BEGIN, in one round trip, and never
outlives its transaction on a pooled connection."""

import uuid

import asyncpg
import pytest
from sqlalchemy import text

from luxfact.db.engine import Database, tenant_literal
from luxfact.kit.context import tenant_scope
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.wire import driver_of, socket_writes

pytestmark = pytest.mark.postgres

SETTING = text("SELECT current_setting('app.tenant_id', true)")
KEYS = text("SELECT DISTINCT tenant_id FROM api_keys")


async def test_one_message_begins_and_sets_the_tenant(settings: Settings,
                                                      hospitals: Hospitals) -> None:
    """Counted on the socket up to the COMMIT: BEGIN with the tenant, then two statements;
    three writes. Setting the tenant on its own would be a fourth."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        for _attempt in range(2):  # the first prepares the statements (a round trip each)
            with tenant_scope(hospitals.a.id):
                async with db.transaction() as session:
                    driver = await driver_of(session)
                    with socket_writes(driver) as writes:
                        setting = (await session.execute(SETTING)).scalar_one()
                        tenants = {row[0] for row in await session.execute(KEYS)}
            assert setting == str(hospitals.a.id)
            assert tenants == {hospitals.a.id}  # row-level security saw the tenant
        assert b"BEGIN; SELECT set_config('app.tenant_id'" in writes[0]
        assert len(writes) == 3, writes
    finally:
        await db.dispose()


async def test_every_transaction_gets_its_own_tenant(settings: Settings,
                                                     hospitals: Hospitals) -> None:
    db = Database(settings.effective_app_database_url, pool_size=1)  # one connection, reused
    try:
        for tenant in (hospitals.a.id, hospitals.b.id, None, hospitals.a.id):
            with tenant_scope(tenant):
                async with db.transaction() as session:
                    seen = {row[0] for row in await session.execute(KEYS)}
            assert seen == ({tenant} if tenant else set())
    finally:
        await db.dispose()


async def test_a_transaction_that_ran_nothing_leaves_no_tenant(settings: Settings,
                                                              hospitals: Hospitals) -> None:
    """Its BEGIN was never sent; the tenant left for it must not reach the next user of the
    connection, such as a Core connection that sets no tenant of its own."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        with tenant_scope(hospitals.a.id):
            async with db.transaction() as session:
                driver = await driver_of(session)
                assert driver._tenant_for_begin == str(hospitals.a.id)
        async with db.engine.connect() as conn:
            assert (await conn.execute(KEYS)).all() == []
            assert (await conn.execute(SETTING)).scalar_one() in ("", None)
    finally:
        await db.dispose()


async def test_a_savepoint_keeps_the_tenant_without_setting_it_again(
        settings: Settings, hospitals: Hospitals) -> None:
    """As an HL7 message is applied: a savepoint in the transaction costs no tenant statement;
    one under another tenant (never done, but possible) still gets its own."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        for _attempt in range(2):  # the first prepares the statements
            with tenant_scope(hospitals.a.id):
                async with db.transaction() as session:
                    await session.execute(KEYS)
                    driver = await driver_of(session)
                    with socket_writes(driver) as writes:
                        async with session.begin_nested():
                            tenants = {row[0] for row in await session.execute(KEYS)}
                    assert tenants == {hospitals.a.id}
                    with tenant_scope(hospitals.b.id):
                        async with session.begin_nested():
                            other = {row[0] for row in await session.execute(KEYS)}
                    assert other == {hospitals.b.id}
        # SAVEPOINT, the statement, RELEASE: no set_config among them.
        assert len(writes) == 3, writes
        assert not any(b"set_config" in w for w in writes)
    finally:
        await db.dispose()


async def test_after_a_savepoint_of_another_tenant_rolled_back(settings: Settings,
                                                               hospitals: Hospitals) -> None:
    """Rolling back a savepoint restores the outer tenant on the server: a later savepoint
    of the other tenant must set it again, and one of the outer tenant must see its own."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        with tenant_scope(hospitals.a.id):
            async with db.transaction() as session:
                await session.execute(KEYS)
                with tenant_scope(hospitals.b.id):
                    nested = await session.begin_nested()
                    await session.execute(KEYS)
                    await nested.rollback()
                    async with session.begin_nested():
                        again = {row[0] for row in await session.execute(KEYS)}
                async with session.begin_nested():
                    own = {row[0] for row in await session.execute(KEYS)}
        assert again == {hospitals.b.id}
        assert own == {hospitals.a.id}
    finally:
        await db.dispose()


async def test_a_connection_left_in_a_transaction_is_replaced(settings: Settings,
                                                              hospitals: Hospitals) -> None:
    """A BEGIN carrying a tenant that fails closes its connection; a pooled connection found
    inside a transaction at checkout is replaced. Either way the next transaction begins
    afresh with its own tenant, never as a savepoint inside another hospital's."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    try:
        with tenant_scope(hospitals.a.id):
            async with db.transaction() as session:
                await session.execute(KEYS)
                driver = await driver_of(session)
        driver.send_tenant_with_begin(str(hospitals.a.id))
        with pytest.raises(asyncpg.PostgresError):
            await driver.execute("BEGIN ISOLATION LEVEL NONSENSE")
        assert driver.is_closed()
        with tenant_scope(hospitals.b.id):
            async with db.transaction() as session:
                seen = {row[0] for row in await session.execute(KEYS)}
                second = await driver_of(session)
        assert seen == {hospitals.b.id} and second is not driver

        await second.execute(f"BEGIN; SELECT set_config('app.tenant_id', '{hospitals.a.id}', "
                             "true)")  # as if a BEGIN had timed out after reaching the server
        with tenant_scope(hospitals.b.id):
            async with db.transaction() as session:
                seen = {row[0] for row in await session.execute(KEYS)}
                third = await driver_of(session)
        assert seen == {hospitals.b.id} and third is not second
    finally:
        await db.dispose()


@pytest.mark.parametrize("bad", ["x' ; DROP TABLE acts; --", "not-a-uuid"])
def test_only_a_uuid_reaches_the_literal(bad: str) -> None:
    with pytest.raises(ValueError):
        tenant_literal(bad)
    tenant = str(uuid.uuid4())
    assert tenant_literal(tenant) == tenant
    assert tenant_literal("") == ""  # no tenant: sees nothing

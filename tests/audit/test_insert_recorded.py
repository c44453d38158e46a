"""A row and its audit event written together: both there, and on PostgreSQL one statement."""

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from luxfact.audit.models import AuditEvent
from luxfact.audit.service import event_values, insert_recorded
from luxfact.db.engine import Database
from luxfact.kit.context import tenant_scope
from luxfact.kit.text import fold
from luxfact.kit.time import utcnow
from luxfact.patients.models import Patient
from luxfact.patients.schemas import PatientIn
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.patients.test_api import patient_body
from tests.wire import driver_of, socket_writes

P = Patient.__table__  # type: ignore[attr-defined]
E = AuditEvent.__table__  # type: ignore[attr-defined]


def _patient_values(tenant_id: uuid.UUID) -> dict[str, Any]:
    data = PatientIn.model_validate(patient_body())
    now = utcnow()
    return {**data.model_dump(), "tenant_id": tenant_id, "id": uuid.uuid4(),
            "family_folded": fold(data.family_name), "given_folded": fold(data.given_name),
            "created_at": now, "updated_at": now, "version": 1}


async def test_the_row_and_its_event_are_both_written(settings: Settings,
                                                      hospitals: Hospitals) -> None:
    db = Database(settings.effective_app_database_url)
    tenant = hospitals.a.id
    try:
        with tenant_scope(tenant, actor="key:test"):
            values = _patient_values(tenant)
            async with db.transaction() as session:
                await insert_recorded(session, P, values, event_values(
                    "patient.create", "patient", values["id"], {"why": "test"}))
            async with db.transaction() as session:
                name = (await session.execute(select(P.c.family_name).where(
                    P.c.tenant_id == tenant, P.c.id == values["id"]))).scalar_one()
                event = (await session.execute(select(E).where(
                    E.c.tenant_id == tenant, E.c.object_id == str(values["id"])))).one()
        assert name == values["family_name"]
        assert (event.action, event.actor, event.details) == ("patient.create", "key:test",
                                                               {"why": "test"})
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_one_write_on_postgresql(settings: Settings, hospitals: Hospitals) -> None:
    """Counted on the socket, once the statement is prepared: one message for the row and
    its event, where an insert and then the event's would be two."""
    db = Database(settings.effective_app_database_url, pool_size=1)
    tenant = hospitals.a.id
    try:
        with tenant_scope(tenant, actor="key:test"):
            for _attempt in range(2):  # the first prepares the statement
                values = _patient_values(tenant)
                async with db.transaction() as session:
                    driver = await driver_of(session)
                    with socket_writes(driver) as writes:
                        await insert_recorded(session, P, values, event_values(
                            "patient.create", "patient", values["id"]))
        # The BEGIN (with the tenant), then the one statement.
        assert len(writes) == 2, writes
        assert writes[0].startswith(b"Q") and b"BEGIN" in writes[0]
        assert b"audit_events" not in writes[1]  # a prepared statement goes by its name

    finally:
        await db.dispose()

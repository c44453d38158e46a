"""Writing the audit trail, inside the transaction of what it records."""

import uuid
from functools import lru_cache
from typing import Any

from sqlalchemy import Insert, Table, Update, bindparam, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.models import AuditEvent
from luxfact.kit import context
from luxfact.kit.time import utcnow

T = AuditEvent.__table__  # type: ignore[attr-defined]
INSERT = insert(T)  # one prebuilt statement, values as parameters (its compilation is cached)


def event_values(action: str, object_type: str, object_id: uuid.UUID | str,
                 details: dict[str, Any] | None = None, *,
                 tenant_id: uuid.UUID | None = None) -> dict[str, Any]:
    """The audit row of an event, attributed to the request's actor and tenant."""
    info = context.current()
    tenant = tenant_id or info.tenant_id
    if tenant is None:
        raise RuntimeError("audit event outside any tenant")
    return {"tenant_id": tenant, "id": uuid.uuid4(), "at": utcnow(),
            "actor": info.actor or "system", "action": action, "object_type": object_type,
            "object_id": str(object_id), "request_id": info.request_id,
            "details": details or {}}


async def record(
    session: AsyncSession,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
    *,
    tenant_id: uuid.UUID | None = None,
) -> None:
    # A Core insert: no ORM unit of work to flush for a row nobody reads back here.
    await session.execute(INSERT, event_values(action, object_type, object_id, details,
                                               tenant_id=tenant_id))


async def insert_recorded(session: AsyncSession, table: Table, values: dict[str, Any],
                          event: dict[str, Any], *,
                          also: tuple[Update, dict[str, Any]] | None = None) -> None:
    """Insert a row and its audit event (`event_values`): on PostgreSQL as one statement,
    the row in a data-modifying CTE, so a creation costs one round trip, not two (the
    API's hot path: docs/performance.md). Both or neither, as two statements would be in
    their transaction; SQLite, in-process, runs the two. `also`: a prebuilt UPDATE (its
    parameters named apart from `r_` and `e_`) and its values, a CTE of the same
    statement on PostgreSQL (a movement's stay)."""
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(_insert(table), values)
        await session.execute(INSERT, event)
        if also is not None:
            await session.execute(*also)
        return
    statement = _insert_with_event(table, tuple(values), also[0] if also else None)
    params = {f"r_{name}": value for name, value in values.items()}
    params.update({f"e_{name}": value for name, value in event.items()})
    if also is not None:
        params.update(also[1])
    await session.execute(statement, params)


@lru_cache(maxsize=64)
def _insert(table: Table) -> Insert:
    """One prebuilt insert per table, values as parameters: its compiled form is reused."""
    return insert(table)


@lru_cache(maxsize=64)
def _insert_with_event(table: Table, columns: tuple[str, ...],
                       also: Update | None = None) -> Insert:
    """Built once per table, set of columns and UPDATE (itself prebuilt and cached by its
    maker): its compiled form is then cached."""
    row = insert(table).values({name: bindparam(f"r_{name}", type_=table.c[name].type)
                                for name in columns}).cte(f"new_{table.name}")
    statement = insert(T).values({c.name: bindparam(f"e_{c.name}", type_=c.type)
                                  for c in T.columns}).add_cte(row)
    if also is not None:
        statement = statement.add_cte(also.cte(f"changed_{also.table.name}"))  # type: ignore[attr-defined]
    return statement


async def record_many(session: AsyncSession, events: list[tuple[str, str, uuid.UUID | str,
                                                                 dict[str, Any]]],
                      *, tenant_id: uuid.UUID) -> None:
    """Several events of one request as one statement: (action, type, id, details) each."""
    info = context.current()
    at = utcnow()
    await session.execute(INSERT, [
        {"tenant_id": tenant_id, "id": uuid.uuid4(), "at": at, "actor": info.actor or "system",
         "action": action, "object_type": object_type, "object_id": str(object_id),
         "request_id": info.request_id, "details": details}
        for action, object_type, object_id, details in events])

"""Writing the audit trail, inside the transaction of what it records."""

import uuid
from typing import Any

from sqlalchemy import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.models import AuditEvent
from luxfact.kit import context
from luxfact.kit.time import utcnow

T = AuditEvent.__table__  # type: ignore[attr-defined]
INSERT = insert(T)  # one prebuilt statement, values as parameters (its compilation is cached)


async def record(
    session: AsyncSession,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
    *,
    tenant_id: uuid.UUID | None = None,
) -> None:
    info = context.current()
    tenant = tenant_id or info.tenant_id
    if tenant is None:
        raise RuntimeError("audit event outside any tenant")
    # A Core insert: no ORM unit of work to flush for a row nobody reads back here.
    await session.execute(INSERT, {
        "tenant_id": tenant, "id": uuid.uuid4(), "at": utcnow(), "actor": info.actor or "system",
        "action": action, "object_type": object_type, "object_id": str(object_id),
        "request_id": info.request_id, "details": details or {}})


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

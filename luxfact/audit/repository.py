"""Queries of the audit trail, within the current tenant, newest first."""

import uuid
from datetime import datetime

from sqlalchemy import or_
from sqlmodel import and_, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.models import AuditEvent


class AuditRepository:
    def __init__(self, session: AsyncSession, tenant_id: uuid.UUID) -> None:
        self.session = session
        self.tenant_id = tenant_id

    async def page(
        self,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None = None,
        action: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.tenant_id == self.tenant_id)
        if action:
            # "patient." lists every patient action.
            query = query.where(col(AuditEvent.action).startswith(action)
                                if action.endswith(".") else AuditEvent.action == action)
        if object_type:
            query = query.where(AuditEvent.object_type == object_type)
        if object_id:
            query = query.where(AuditEvent.object_id == object_id)
        if actor:
            query = query.where(AuditEvent.actor == actor)
        if since:
            query = query.where(AuditEvent.at >= since)
        if until:
            query = query.where(AuditEvent.at < until)
        if after:
            at, last_id = after
            query = query.where(or_(AuditEvent.at < at,
                                    and_(AuditEvent.at == at, AuditEvent.id < last_id)))
        query = query.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit)
        return list((await self.session.exec(query)).all())

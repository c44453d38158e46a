"""Queries of the tenant registry."""

import uuid

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.tenancy.models import Tenant


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_slug(self, slug: str) -> Tenant | None:
        return (await self.session.exec(select(Tenant).where(Tenant.slug == slug))).first()

    async def by_id(self, tenant_id: uuid.UUID) -> Tenant | None:
        return await self.session.get(Tenant, tenant_id)

    async def all(self) -> list[Tenant]:
        return list((await self.session.exec(select(Tenant).order_by(Tenant.slug))).all())

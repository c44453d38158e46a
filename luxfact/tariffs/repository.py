"""Queries of the tariff catalogue: whole tables (it is small) and the tenant's price list."""

import uuid

from sqlalchemy import Row, func, select
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.tariffs.models import (
    TariffAct,
    TariffCote,
    TariffImport,
    TariffKeyLetter,
    TariffModifier,
    TariffNomenclature,
    TariffParameter,
    TariffRule,
    TenantPrice,
)

# Catalogue table -> (model, primary-key columns), in the order they are applied.
CATALOGUE: dict[str, tuple[type[SQLModel], tuple[str, ...]]] = {
    "tariff_nomenclatures": (TariffNomenclature, ("code",)),
    "tariff_key_letters": (TariffKeyLetter, ("key_letter", "valid_from")),
    "tariff_cotes": (TariffCote, ("valid_from",)),
    "tariff_acts": (TariffAct, ("code", "valid_from")),
    "tariff_rules": (TariffRule, ("rule", "target", "valid_from")),
    "tariff_modifiers": (TariffModifier, ("code", "valid_from")),
    "tariff_parameters": (TariffParameter, ("name", "valid_from")),
}


class TariffRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def table(self, name: str) -> list[SQLModel]:
        model, _ = CATALOGUE[name]
        return list((await self.session.exec(select(model))).scalars().all())  # type: ignore[call-overload]

    async def rows(self, name: str) -> list[Row]:
        """A whole table as plain rows: what a cache may keep beyond this transaction (an
        ORM instance is expired by its session's rollback and then fails when read)."""
        model, _ = CATALOGUE[name]
        table = model.__table__  # type: ignore[attr-defined]
        return list((await self.session.execute(select(table))).all())

    async def version(self) -> int:
        """The newest applied import's id: changes whenever the catalogue does."""
        return (await self.session.exec(select(func.max(TariffImport.id)))).scalar() or 0  # type: ignore[call-overload]

    async def tenant_prices(self, tenant_id: uuid.UUID) -> list[TenantPrice]:
        query = select(TenantPrice).where(TenantPrice.tenant_id == tenant_id)  # type: ignore[arg-type]
        return list((await self.session.exec(query)).scalars().all())  # type: ignore[call-overload]

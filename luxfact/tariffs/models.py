"""The tariff catalogue in the database.

National reference data (nomenclatures, acts, key letters, cotes, rules, modifiers,
patient-share parameters) is shared by every tenant and read-only for the application role:
only `luxfact tariffs import` changes it. What a hospital sells itself (comfort items, the
single-room supplement) is tenant-owned: `tenant_prices`.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, json_field, tenant_id_field
from luxfact.db.types import DecimalText


def decimal_field(nullable: bool = False) -> Decimal:
    return Field(sa_column=Column(DecimalText, nullable=nullable))


class TariffNomenclature(SQLModel, table=True):
    __tablename__ = "tariff_nomenclatures"
    code: str = Field(primary_key=True, max_length=20)
    label_fr: str = Field(max_length=200)
    label_de: str = Field(max_length=200)
    category: str = Field(max_length=20)


class TariffAct(SQLModel, table=True):
    __tablename__ = "tariff_acts"
    code: str = Field(primary_key=True, max_length=20)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    nomenclature: str = Field(max_length=20, index=True)
    label_fr: str = Field(max_length=300)
    label_de: str = Field(max_length=300)
    coefficient: Decimal = decimal_field()
    key_letter: str = Field(max_length=10)


class TariffKeyLetter(SQLModel, table=True):
    __tablename__ = "tariff_key_letters"
    key_letter: str = Field(primary_key=True, max_length=10)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    basis: str = Field(max_length=10)
    value: Decimal = decimal_field()


class TariffCote(SQLModel, table=True):
    __tablename__ = "tariff_cotes"
    valid_from: date = Field(primary_key=True)
    cote: Decimal = decimal_field()


class TariffRule(SQLModel, table=True):
    __tablename__ = "tariff_rules"
    rule: str = Field(primary_key=True, max_length=30)
    target: str = Field(primary_key=True, max_length=30)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    others: str = Field(default="", max_length=1000)  # "|"-separated
    value: Decimal | None = decimal_field(nullable=True)


class TariffModifier(SQLModel, table=True):
    __tablename__ = "tariff_modifiers"
    code: str = Field(primary_key=True, max_length=10)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    label_fr: str = Field(max_length=200)
    label_de: str = Field(max_length=200)
    percent: Decimal = decimal_field()
    applies_to: str = Field(max_length=1000)  # "|"-separated codes, @NOMENCLATUREs, or "*"
    patient_only: bool = False


class TariffParameter(SQLModel, table=True):
    __tablename__ = "tariff_parameters"
    name: str = Field(primary_key=True, max_length=60)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    value: Decimal = decimal_field()


class TariffImport(SQLModel, table=True):
    """Each applied import; the newest id is the catalogue's version (snapshot cache key)."""

    __tablename__ = "tariff_imports"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = created_at_field()
    source: str = Field(max_length=500)
    package_sha256: str = Field(max_length=64)
    summary: dict[str, Any] = json_field()


class TenantPrice(SQLModel, table=True):
    """A hospital's own priced item: always paid by the patient."""

    __tablename__ = "tenant_prices"
    tenant_id: uuid.UUID = tenant_id_field()
    code: str = Field(primary_key=True, max_length=20)
    valid_from: date = Field(primary_key=True)
    valid_to: date | None = None
    label_fr: str = Field(max_length=300)
    label_de: str = Field(max_length=300)
    label_en: str = Field(default="", max_length=300)
    amount_cents: int = Field(ge=0)

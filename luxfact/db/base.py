"""What every table shares: the metadata, naming convention, and the tenant-owned registry.

The naming convention gives constraints stable names on both databases, so migrations can
refer to them. `TENANT_TABLES` is filled by the models of tenant-owned tables; the migration
helpers and the row-level-security test read it.
"""

import uuid
from datetime import datetime

from sqlalchemy import Column, MetaData
from sqlmodel import Field, SQLModel

from luxfact.db.types import UTCDateTime, json_type
from luxfact.kit.time import utcnow

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


def utc_column(nullable: bool = False, **kwargs: object) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime, nullable=nullable, **kwargs)  # type: ignore[arg-type]


def created_at_field() -> datetime:
    return Field(default_factory=utcnow, sa_column=utc_column())


def tenant_id_field() -> uuid.UUID:
    """`tenant_id`, first column of the primary key of every tenant-owned table."""
    return Field(primary_key=True, foreign_key="tenants.id", ondelete="RESTRICT")


def id_field() -> uuid.UUID:
    return Field(default_factory=uuid.uuid4, primary_key=True)


def json_field() -> dict:  # type: ignore[type-arg]
    """A JSON object column (JSONB on PostgreSQL). Replace the value, never mutate it."""
    return Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))

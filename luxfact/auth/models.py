"""Users (people who log in) and API keys (hospital systems), each of exactly one tenant."""

import uuid
from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column


class User(SQLModel, table=True):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    email: str = Field(max_length=254)
    display_name: str = Field(default="", max_length=200)
    role: str = Field(max_length=20)
    password_hash: str = Field(max_length=200)
    language: str = Field(default="fr", max_length=2)
    disabled: bool = False
    created_at: datetime = created_at_field()
    last_login_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key_hash"),)

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    name: str = Field(max_length=100)
    role: str = Field(max_length=20)
    # SHA-256 of the whole key: keys carry 256 random bits, so a slow hash adds nothing.
    key_hash: str = Field(max_length=64)
    # The first characters of the secret, shown in lists so a key can be recognised.
    prefix: str = Field(max_length=16)
    created_at: datetime = created_at_field()
    created_by: str | None = Field(default=None, max_length=60)
    last_used_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    revoked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

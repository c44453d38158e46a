"""Users and API keys over the API."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from luxfact.auth.roles import Role


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    role: Role


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    name: str
    role: Role
    prefix: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself, shown this once only.")


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=254)
    role: Role
    password: str = Field(min_length=1, max_length=200)
    display_name: str = Field(default="", max_length=200)
    language: Literal["fr", "de", "en"] = "fr"


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    language: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


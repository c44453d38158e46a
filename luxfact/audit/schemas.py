"""The audit trail over the API."""

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from luxfact.http.pagination import PageQuery
from luxfact.kit.types import IsoDateTime


class AuditQuery(PageQuery):
    action: str | None = Field(default=None, max_length=60)
    object_type: str | None = Field(default=None, max_length=40)
    object_id: str | None = Field(default=None, max_length=64)
    actor: str | None = Field(default=None, max_length=60)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None


class AuditEventOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    request_id: str
    details: dict[str, Any]

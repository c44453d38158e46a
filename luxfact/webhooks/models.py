"""Webhook endpoints (where a hospital wants its events) and deliveries (one event to one
endpoint, delivered by a `webhook.deliver` job)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKeyConstraint, Index, Text
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column
from luxfact.db.types import json_type


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    url: str = Field(max_length=2000)
    # Kept as it is: every delivery is signed with it (HMAC-SHA256). Shown once, at creation.
    secret: str = Field(max_length=100)
    events: list[str] = Field(default_factory=list,
                              sa_column=Column(json_type(), nullable=False))
    description: str = Field(default="", max_length=500)
    active: bool = True
    created_at: datetime = created_at_field()
    created_by: str | None = Field(default=None, max_length=60)
    disabled_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The delivery log of an endpoint, newest first.
        Index("ix_webhook_deliveries_endpoint", "tenant_id", "endpoint_id", "created_at"),
        ForeignKeyConstraint(["tenant_id", "endpoint_id"],
                             ["webhook_endpoints.tenant_id", "webhook_endpoints.id"]),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    endpoint_id: uuid.UUID
    # The event's id: the same for every endpoint and every attempt (receivers de-duplicate).
    event_id: uuid.UUID
    event_type: str = Field(max_length=60)
    # The event as sent, minus the tenant's slug (added when sent).
    payload: dict[str, Any] = Field(default_factory=dict,
                                    sa_column=Column(json_type(), nullable=False))
    # The job that delivers it: attempts, errors and death are the job's (see the API).
    job_id: uuid.UUID
    # pending, delivered (a 2xx answer); failed is the job dead (read from the job).
    state: str = Field(default="pending", max_length=10)
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = created_at_field()
    delivered_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

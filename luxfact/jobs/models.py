"""Jobs: work done after a request, by a worker, in the same database."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text
from sqlmodel import Field, SQLModel

from luxfact.db.base import created_at_field, id_field, tenant_id_field, utc_column
from luxfact.db.types import json_type


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        # What a worker claims: the queued jobs of a tenant whose time has come.
        Index("ix_jobs_claim", "tenant_id", "state", "run_at"),
    )

    tenant_id: uuid.UUID = tenant_id_field()
    id: uuid.UUID = id_field()
    kind: str = Field(max_length=60)
    payload: dict[str, Any] = Field(default_factory=dict,
                                    sa_column=Column(json_type(), nullable=False))
    # queued, running, done, dead (failed max_attempts times: kept for an administrator)
    state: str = Field(max_length=10)
    attempts: int = 0
    max_attempts: int = 8
    run_at: datetime = Field(sa_column=utc_column())
    locked_by: str | None = Field(default=None, max_length=80)
    locked_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # The request that enqueued it: its id goes into the job's log lines.
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_at_field()
    finished_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

"""Webhook endpoints and deliveries over the API."""

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from luxfact.kit.types import PlainText
from luxfact.webhooks.service import EventType

# A secret the administrator gives (the receiver has one already): long enough not to be
# guessed, printable, no spaces (it is pasted between systems).
SECRET = Field(default=None, min_length=32, max_length=200, pattern=r"^[!-~]+$",
               description="The signing secret, when the receiver has one already: 32 to "
               "200 printable ASCII characters, no spaces. Left out, one is made (`whsec_…`).")


class _Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl = Field(description="Where the events are POSTed (https in production)")
    events: list[EventType] = Field(min_length=1, max_length=20)
    description: PlainText = Field(default="", max_length=500)

    @field_validator("url")
    @classmethod
    def _short(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is None:  # a patch that leaves the URL alone (or sets it null: refused)
            return value
        text = str(value)
        if len(text) > 2000:
            raise ValueError("at most 2000 characters")
        if any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
            raise ValueError("control characters are not allowed")
        if value.username or value.password:
            # They would be shown back in the list, kept in the audit trail and logged; the
            # signature is what tells the receiver the event is ours.
            raise ValueError("a user name or password in the URL is not allowed")
        return value


class WebhookIn(_Endpoint):
    secret: str | None = SECRET


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = SECRET


class WebhookPatch(_Endpoint):
    """What may change of an endpoint: its URL, its events, its description (each left as
    it is when not given). Its secret changes by rotation (`.../rotate-secret`)."""

    url: AnyHttpUrl | None = None  # type: ignore[assignment]
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)  # type: ignore[assignment]
    description: PlainText | None = Field(default=None, max_length=500)  # type: ignore[assignment]


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime
    created_by: str | None
    disabled_at: datetime | None


class WebhookCreated(WebhookOut):
    secret: str = Field(description="The signing secret, shown this once only.")


class DeliveryOut(BaseModel):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    state: Literal["pending", "delivered", "failed", "cancelled"] = Field(
        description="pending: queued or being retried; failed: every attempt failed")
    attempts: int
    last_status_code: int | None = Field(description="The receiver's last HTTP status")
    last_error: str | None = Field(description="Why the last attempt failed")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried "
                                                         "next")
    created_at: datetime
    delivered_at: datetime | None

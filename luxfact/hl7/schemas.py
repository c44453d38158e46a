"""The HL7 message log over the API."""

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from luxfact.http.pagination import PageQuery

MessageStatus = Literal["accepted", "error", "rejected"]


class MessageQuery(PageQuery):
    status: MessageStatus | None = None


class MessageOut(BaseModel):
    id: uuid.UUID
    channel: str = Field(description="mllp or http")
    sending_application: str = Field(description="MSH-3")
    sending_facility: str = Field(description="MSH-4")
    control_id: str | None = Field(description="MSH-10")
    message_type: str = Field(description="MSH-9, e.g. ADT^A01")
    version: str = Field(description="MSH-12")
    status: str = Field(description="accepted (AA), error (AE: refused, nothing applied; "
                        "may be replayed) or rejected (AR: could not be processed)")
    ack_code: str
    reason: str
    ack: str = Field(description="The acknowledgement sent, segments separated by CR.")
    raw: str | None = Field(default=None, description="The message as received (decoded "
                            "text); administrators only, it holds patient data.")
    size: int
    patient_ids: list[uuid.UUID]
    stay_ids: list[uuid.UUID]
    act_ids: list[uuid.UUID]
    attempts: int
    received_at: dt.datetime
    processed_at: dt.datetime


class ReplayQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(default=False, description=(
        "Apply it even though other messages of its visit were applied since it came (a "
        "409 lists them otherwise): after checking it is neither out of order nor a "
        "duplicate of one of them."))


class ReplayOut(BaseModel):
    applied: bool = Field(description="False when the message had been applied already: "
                          "nothing was done again.")
    message: MessageOut

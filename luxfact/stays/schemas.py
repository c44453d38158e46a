"""Stays, movements and acts over the API."""

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from luxfact.http.pagination import PageQuery
from luxfact.kit.types import IsoDateTime, PlainText

StayKind = Literal["inpatient", "day_hospital", "outpatient", "emergency"]
StayState = Literal["planned", "admitted", "discharged", "cancelled", "closed"]
RoomClass = Literal["first", "second"]
MovementType = Literal["admit", "transfer", "discharge", "cancel_admit", "cancel_transfer",
                       "cancel_discharge"]
ProviderCode = str
PROVIDER = r"^[1-9][0-9]{7}$"
Place = Field(default="", max_length=40, pattern=r"^[\w .\-/]*$")


class StayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    patient_id: uuid.UUID
    kind: StayKind
    admitted_at: IsoDateTime = Field(description="Admission (or planned admission) time.")
    planned: bool = Field(default=False, description="A pre-admission: admitted later by an "
                          "`admit` movement.")
    unit: str = Place
    room: str = Field(default="", max_length=20, pattern=r"^[\w .\-/]*$")
    bed: str = Field(default="", max_length=20, pattern=r"^[\w .\-/]*$")
    room_class: RoomClass = "second"
    admitting_doctor: str | None = Field(default=None, pattern=PROVIDER)
    attending_doctor: str | None = Field(default=None, pattern=PROVIDER)
    external_id: str | None = Field(default=None, max_length=40, pattern=r"^[\w.\-/]+$")
    childbirth: bool = False
    psychiatric: bool = False


class StayPatch(BaseModel):
    """What may be corrected on a stay once admitted (its movements have their own
    endpoint): its kind, and its doctors (null removes one)."""
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: StayKind | None = Field(default=None, description=(
        "A new kind prices the stay's acts not yet invoiced again under it; refused once "
        "any part of the stay is invoiced."))
    admitting_doctor: str | None = Field(default=None, pattern=PROVIDER)
    attending_doctor: str | None = Field(default=None, pattern=PROVIDER)


class StayQuery(PageQuery):
    patient_id: uuid.UUID | None = None
    state: StayState | None = None


class MovementIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    type: MovementType
    at: IsoDateTime
    unit: str = Place
    room: str = Field(default="", max_length=20, pattern=r"^[\w .\-/]*$")
    bed: str = Field(default="", max_length=20, pattern=r"^[\w .\-/]*$")
    room_class: RoomClass | None = None
    cancels: uuid.UUID | None = Field(default=None, description="The movement a cancel_* undoes.")


class MovementOut(BaseModel):
    id: uuid.UUID
    seq: int
    type: str
    at: dt.datetime
    unit: str
    room: str
    bed: str
    room_class: str
    cancels: uuid.UUID | None
    cancelled_by: uuid.UUID | None


class CoverageGap(BaseModel):
    start: dt.date
    end: dt.date


class StayOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    kind: str
    state: str
    external_id: str | None
    admitted_at: dt.datetime
    discharged_at: dt.datetime | None
    unit: str
    room: str
    bed: str
    room_class: str
    admitting_doctor: str | None
    attending_doctor: str | None
    childbirth: bool
    psychiatric: bool
    version: int
    movements: list[MovementOut] = Field(default_factory=list)
    coverage_gaps: list[CoverageGap] = Field(default_factory=list)


class ActIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9_.\-]+$")
    performed_at: IsoDateTime
    performer: str | None = Field(default=None, pattern=PROVIDER)
    specialty: str | None = Field(default=None, max_length=40, pattern=r"^[a-z_]+$")
    quantity: int = Field(default=1, ge=1, le=999)
    modifiers: list[str] = Field(default_factory=list, max_length=5)
    note: PlainText = Field(default="", max_length=500)


class ActPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    code: str | None = Field(default=None, min_length=1, max_length=20,
                             pattern=r"^[A-Za-z0-9_.\-]+$")
    performed_at: IsoDateTime | None = None
    performer: str | None = Field(default=None, pattern=PROVIDER)
    specialty: str | None = Field(default=None, max_length=40, pattern=r"^[a-z_]+$")
    quantity: int | None = Field(default=None, ge=1, le=999)
    modifiers: list[str] | None = Field(default=None, max_length=5)
    note: PlainText | None = Field(default=None, max_length=500)
    reprice: bool = Field(default=False, description=(
        "Price the act again with today's catalogue even though nothing that prices it "
        "changed (after a tariff correction: billing refuses acts whose tariff changed "
        "since they were priced, and lists them). Otherwise an act keeps its price unless "
        "its code, date, quantity, modifiers, performer or specialty change."))


class ActOut(BaseModel):
    id: uuid.UUID
    stay_id: uuid.UUID
    code: str
    performed_at: dt.datetime
    performer: str | None
    specialty: str | None
    quantity: int
    modifiers: list[str]
    note: str
    state: str
    invoice_id: uuid.UUID | None
    tariff_version: str
    gross: str
    insurer: str
    patient: str
    currency: str = "EUR"
    pricing: dict[str, Any]
    explanation: str
    version: int


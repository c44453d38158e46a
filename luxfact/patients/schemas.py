"""Patients over the API: what comes in is validated and normalised here."""

import datetime as dt
import re
import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from luxfact.http.pagination import PageQuery
from luxfact.kit.text import nfc
from luxfact.kit.time import LUXEMBOURG
from luxfact.kit.types import IsoDate, PlainText
from luxfact.patients import matricule as mat


def _name(value: str) -> str:
    value = nfc(" ".join(value.split()))
    if not value:
        raise ValueError("must not be empty")
    if any(ord(c) < 32 or ord(c) == 127 or c in "<>{}[]\\|;=@#$%^*_~`" for c in value):
        raise ValueError("contains characters a name does not have")
    return value


def _matricule(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return mat.parse(value, today=dt.datetime.now(LUXEMBOURG).date()).number
    except mat.InvalidMatricule as exc:
        raise ValueError(str(exc)) from None


def _legacy(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    digits = value.replace(" ", "")
    if not mat.is_legacy(digits):
        raise ValueError("not a valid 11-digit number of the old form (mod-11 check digit)")
    return digits


def _past(value: dt.date) -> dt.date:
    if value > dt.datetime.now(LUXEMBOURG).date():
        raise ValueError("is in the future")
    if value.year < 1850:
        raise ValueError("is not plausible")
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_name)]
MatriculeIn = Annotated[str | None, Field(default=None, max_length=20),
                        AfterValidator(_matricule)]
LegacyIn = Annotated[str | None, Field(default=None, max_length=20,
                                       description="The pre-2014 11-digit number, kept to "
                                       "find the patient; never billed."),
                     AfterValidator(_legacy)]
PastDate = Annotated[IsoDate, AfterValidator(_past)]
Sex = Literal["F", "M", "X"]
Language = Literal["fr", "de", "en"]
NoMatriculeReason = Literal["foreign", "unidentified", "newborn", "other"]
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,40}$")


def check_identity(matricule: str | None, no_matricule_reason: str | None,
                   birth_date: dt.date) -> None:
    """A patient has a matricule or says why not, and the matricule agrees with the birth
    date as far as it encodes it (year always; month and day unless `00`)."""
    if matricule is None and no_matricule_reason is None:
        raise ValueError("give a matricule, or no_matricule_reason (foreign, unidentified, "
                         "newborn, other) for a patient without one")
    if matricule is None:
        return
    year, month, day = int(matricule[:4]), int(matricule[4:6]), int(matricule[6:8])
    if (year != birth_date.year or (month and month != birth_date.month)
            or (day and day != birth_date.day)):
        raise ValueError(f"the matricule encodes another birth date ({matricule[:8]})")


class PatientFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    street: PlainText = Field(default="", max_length=200)
    postal_code: PlainText = Field(default="", max_length=20)
    city: PlainText = Field(default="", max_length=100)
    country: str = Field(default="LU", pattern=r"^[A-Z]{2}$")
    phone: str = Field(default="", max_length=40)
    email: PlainText = Field(default="", max_length=254)

    @model_validator(mode="after")
    def _contact(self) -> "PatientFields":
        if self.phone and not _PHONE.match(self.phone):
            raise ValueError("phone: not a telephone number")
        if self.email and ("@" not in self.email or " " in self.email):
            raise ValueError("email: not an e-mail address")
        return self


class PatientIn(PatientFields):
    matricule: MatriculeIn = None
    legacy_matricule: LegacyIn = None
    no_matricule_reason: NoMatriculeReason | None = None
    family_name: Name
    given_name: Name
    birth_date: PastDate
    sex: Sex
    language: Language = "fr"

    @model_validator(mode="after")
    def _identity(self) -> "PatientIn":
        check_identity(self.matricule, self.no_matricule_reason, self.birth_date)
        if self.matricule is not None:
            self.no_matricule_reason = None
        return self


class PatientPatch(PatientFields):
    """Every field optional; only those given change."""

    street: PlainText | None = Field(default=None, max_length=200)  # type: ignore[assignment]
    postal_code: PlainText | None = Field(default=None, max_length=20)  # type: ignore[assignment]
    city: PlainText | None = Field(default=None, max_length=100)  # type: ignore[assignment]
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")  # type: ignore[assignment]
    phone: str | None = Field(default=None, max_length=40)  # type: ignore[assignment]
    email: PlainText | None = Field(default=None, max_length=254)  # type: ignore[assignment]
    matricule: MatriculeIn = None
    no_matricule_reason: NoMatriculeReason | None = None
    legacy_matricule: LegacyIn = None
    family_name: Name | None = None
    given_name: Name | None = None
    birth_date: PastDate | None = None
    death_date: PastDate | None = None
    sex: Sex | None = None
    language: Language | None = None


class PatientOut(BaseModel):
    id: uuid.UUID
    matricule: str | None
    legacy_matricule: str | None
    no_matricule_reason: str | None
    family_name: str
    given_name: str
    birth_date: dt.date
    death_date: dt.date | None
    sex: str
    language: str
    street: str
    postal_code: str
    city: str
    country: str
    phone: str
    email: str
    merged_into: uuid.UUID | None
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


class PatientQuery(PageQuery):
    q: str | None = Field(default=None, max_length=100)
    birth_date: IsoDate | None = None
    matricule: str | None = Field(default=None, max_length=20)


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duplicate_id: uuid.UUID = Field(description="The patient merged into this one (removed).")


CoverageKind = Literal["statutory", "other_fund", "accident", "foreign", "complementary",
                       "social_tiers_payant"]


class CoverageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    kind: CoverageKind
    payer: str = Field(min_length=1, max_length=60)
    member_number: str = Field(default="", max_length=40)
    accident_number: str | None = Field(default=None, pattern=r"^[UL][0-9]{9}$")
    first_class: bool = False
    valid_from: IsoDate
    valid_to: IsoDate | None = None

    @model_validator(mode="after")
    def _period(self) -> "CoverageIn":
        if self.valid_to and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        if self.kind == "accident" and not self.accident_number:
            raise ValueError("accident_number: an accident coverage needs the work-accident "
                             "number ([UL] and 9 digits)")
        if self.kind == "social_tiers_payant":
            if self.valid_to is None:
                raise ValueError("valid_to: an attestation has an end date")
            if (self.valid_to - self.valid_from).days > 186:
                raise ValueError("valid_to: an attestation is valid 6 months at most")
        return self


class CoverageOut(CoverageIn):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    patient_id: uuid.UUID


"""The tenant file `tenants/<slug>.toml`: its schema and its validation.

A file is read whole and checked whole; every problem is reported with the file, the field
and the reason, so an operator can fix them all in one pass.
"""

import hashlib
import json
import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as StdnumError

from luxfact.kit.problems import reason

Language = Literal["fr", "de", "en"]
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
PROVIDER_CODE = re.compile(r"^[1-9][0-9]{7}$")


def check_number_pattern(pattern: str) -> str:
    """A numbering pattern uses `{year}` and `{seq}` (optionally `{seq:06}`) and nothing else."""
    fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    unknown = fields - {"year", "seq"}
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}: use {{year}} and {{seq}}")
    if "seq" not in fields or "year" not in fields:
        raise ValueError("must contain {year} and {seq}, e.g. 'NORD-{year}-{seq:06}'")
    try:
        pattern.format(year=2026, seq=1)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"cannot be formatted: {exc}") from None
    return pattern


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    street: str = Field(min_length=1, max_length=200)
    postal_code: str = Field(min_length=1, max_length=20)
    city: str = Field(min_length=1, max_length=100)
    country: str = Field(default="LU", pattern=r"^[A-Z]{2}$")


class InvoiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number_pattern: str
    credit_note_pattern: str
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    allow_overpayment: bool = False
    footer: str = Field(default="", max_length=500)

    _check = field_validator("number_pattern", "credit_note_pattern")(check_number_pattern)

    @model_validator(mode="after")
    def _distinct(self) -> "InvoiceSettings":
        if self.number_pattern == self.credit_note_pattern:
            raise ValueError("credit notes need a pattern of their own (a separate series)")
        return self


class Languages(BaseModel):
    model_config = ConfigDict(extra="forbid")
    default: Language = "fr"
    offered: list[Language] = Field(default_factory=lambda: ["fr", "de", "en"], min_length=1)

    @model_validator(mode="after")
    def _default_offered(self) -> "Languages":
        if self.default not in self.offered:
            raise ValueError(f"default language {self.default!r} is not among the offered ones")
        return self


class Integration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # HL7 MSH-4 sending facilities whose messages belong to this hospital.
    hl7_facilities: list[str] = Field(default_factory=list)


class TenantFile(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    legal_name: str = Field(min_length=1, max_length=200)
    cns_provider_code: str
    iban: str | None = None
    bic: str | None = None
    timezone: str = "Europe/Luxembourg"
    logo: str | None = None
    address: Address
    invoices: InvoiceSettings
    languages: Languages = Field(default_factory=Languages)
    integration: Integration = Field(default_factory=Integration)

    @field_validator("cns_provider_code")
    @classmethod
    def _provider_code(cls, value: str) -> str:
        if not PROVIDER_CODE.match(value):
            raise ValueError("must be 8 digits between 10000000 and 99999999")
        return value

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return stdnum_iban.validate(value)
        except StdnumError as exc:
            raise ValueError(f"not a valid IBAN ({exc.message})") from None

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return stdnum_bic.validate(value)
        except StdnumError as exc:
            raise ValueError(f"not a valid BIC ({exc.message})") from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _bic_with_iban(self) -> "TenantFile":
        if self.bic and not self.iban:
            raise ValueError("a BIC is given without an IBAN")
        return self


@dataclass(frozen=True)
class TenantConfig:
    slug: str
    path: Path
    data: TenantFile

    def stored_config(self) -> dict[str, Any]:
        return self.data.model_dump(mode="json")

    def config_hash(self) -> str:
        canonical = json.dumps(self.stored_config(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ConfigProblem:
    path: Path
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.field}: {self.reason}"


def read_tenant_file(path: Path) -> tuple[TenantConfig | None, list[ConfigProblem]]:
    slug = path.stem
    problems: list[ConfigProblem] = []
    if not SLUG.match(slug):
        problems.append(ConfigProblem(path, "(file name)",
                                      "the slug must be 2-40 lower-case letters, digits or '-'"))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, [*problems, ConfigProblem(path, "(file)", "not UTF-8 text")]
    except tomllib.TOMLDecodeError as exc:
        return None, [*problems, ConfigProblem(path, "(syntax)", str(exc))]
    try:
        data = TenantFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(p) for p in err["loc"]) or "(file)"
            problems.append(ConfigProblem(path, field, reason(err["msg"])))
        return None, problems
    if data.logo and not (path.parent / data.logo).is_file():
        problems.append(ConfigProblem(path, "logo", f"file {data.logo!r} not found beside it"))
    if problems:
        return None, problems
    return TenantConfig(slug, path, data), []


def read_tenant_dir(directory: Path) -> tuple[list[TenantConfig], list[ConfigProblem]]:
    if not directory.is_dir():
        return [], [ConfigProblem(directory, "(directory)", "not a directory")]
    configs: list[TenantConfig] = []
    problems: list[ConfigProblem] = []
    for path in sorted(directory.glob("*.toml")):
        config, found = read_tenant_file(path)
        problems.extend(found)
        if config:
            configs.append(config)
    facilities: dict[str, str] = {}
    for config in configs:
        for facility in config.data.integration.hl7_facilities:
            if facility in facilities:
                problems.append(ConfigProblem(
                    config.path, "integration.hl7_facilities",
                    f"{facility!r} is already mapped to tenant {facilities[facility]!r}"))
            facilities[facility] = config.slug
    return configs, problems

"""The tariff catalogue in memory: pure data and dated look-ups, no I/O.

A `TariffSnapshot` holds every dated row the pricing engine needs (act versions, key-letter
values, cotes d'application, rules, modifiers, patient-share parameters). It is built from
the database (or from a tariff package, or by tests) and then only read. Every look-up takes
the date of the act: a tariff change is a new dated row, never an edit.

Validity is inclusive on both ends: a row applies from `valid_from` to `valid_to` (None =
open-ended). A missing row is an error naming the date: a price is never guessed.
"""

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
FOUR_PLACES = Decimal("0.0001")
HUNDRED = Decimal(100)


class CatalogueError(Exception):
    """A look-up that cannot be answered; `field` names what was asked for."""

    field = "code"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.details = details


class UnknownCode(CatalogueError):
    pass


class CodeNotValidOnDate(CatalogueError):
    field = "performed_at"


class MissingKeyLetterValue(CatalogueError):
    field = "performed_at"


class MissingCote(CatalogueError):
    field = "performed_at"


class MissingParameter(CatalogueError):
    field = "performed_at"


class UnknownModifier(CatalogueError):
    field = "modifiers"


@dataclass(frozen=True, slots=True)
class Dated:
    valid_from: date
    valid_to: date | None

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Nomenclature:
    code: str
    label_fr: str
    label_de: str
    # doctor: doctors' fees (outpatient rates, first-class surcharge apply)
    # nursing, hospital: the hospital's own services
    # supplement: always paid by the patient (CP1-CP7, comfort items)
    category: str


@dataclass(frozen=True, slots=True)
class ActVersion(Dated):
    nomenclature: str
    code: str
    label_fr: str
    label_de: str
    coefficient: Decimal
    key_letter: str

    @property
    def version_id(self) -> str:
        return f"{self.code}@{self.valid_from.isoformat()}"


@dataclass(frozen=True, slots=True)
class KeyLetterValue(Dated):
    key_letter: str
    basis: str  # "eur": value in euros; "index100": value at index 100, scaled by the cote
    value: Decimal


@dataclass(frozen=True, slots=True)
class Cote:
    valid_from: date
    cote: Decimal


@dataclass(frozen=True, slots=True)
class Rule(Dated):
    """A nomenclature rule as data.

    rule: non_cumulable (target with each of `others`, same day), max_per_day, max_per_stay
    (`value` = count), secondary_percent (`value` = % paid for every technical act of the
    target nomenclature after the dearest one of the same day), min_age, max_age (`value` in
    years, judged on the act's date), specialties (`others` = specialties allowed).
    target: an act code, or `@NOMENCLATURE` for every act of a nomenclature.
    """

    rule: str
    target: str
    others: tuple[str, ...]
    value: Decimal | None


@dataclass(frozen=True, slots=True)
class Modifier(Dated):
    """A percentage modifier (CNS `complementTarif`): surcharge (+) or reduction (-).

    applies_to: codes and `@NOMENCLATURE`s it may be used with, or `*`.
    patient_only: the amount it adds is the patient's (first-class surcharge).
    """

    code: str
    label_fr: str
    label_de: str
    percent: Decimal
    applies_to: tuple[str, ...]
    patient_only: bool


@dataclass(frozen=True, slots=True)
class Parameter(Dated):
    name: str
    value: Decimal


PARAMETERS = {
    "daily_participation_inpatient": "patient's participation per started inpatient day (EUR)",
    "daily_participation_day_hospital": "patient's daily participation per day-hospital day (EUR)",
    "annual_day_cap": "days of participation per patient, hospital and calendar year at most",
    "exemption_age": "patients younger than this pay no statutory share",
    "childbirth_exempt_days": "first days of a childbirth stay without participation",
    "outpatient_rate_adult": "% of outpatient doctors' fees the insurer pays for adults",
    "outpatient_rate_minor": "% of outpatient doctors' fees paid under the exemption age",
    "inpatient_rate": "% of doctors' fees the insurer pays during an inpatient stay",
    "first_class_surcharge_percent": "% doctors may add in first class, paid by the patient",
}


# (value in euros that day, the cote used or None, the row it comes from)
LetterValue = tuple[Decimal, Decimal | None, KeyLetterValue]


def _by_start(rows: Iterable[Dated]) -> tuple[list[date], list[Dated]]:
    ordered = sorted(rows, key=lambda r: r.valid_from)
    return [r.valid_from for r in ordered], ordered


@dataclass
class TariffSnapshot:
    nomenclatures: dict[str, Nomenclature] = field(default_factory=dict)
    acts: dict[str, list[ActVersion]] = field(default_factory=dict)
    key_letters: dict[str, list[KeyLetterValue]] = field(default_factory=dict)
    cotes: list[Cote] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    modifiers: dict[str, list[Modifier]] = field(default_factory=dict)
    parameters: dict[str, list[Parameter]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._act_index = {code: _by_start(v) for code, v in self.acts.items()}
        self._letter_index = {k: _by_start(v) for k, v in self.key_letters.items()}
        self._param_index = {k: _by_start(v) for k, v in self.parameters.items()}
        self.cotes.sort(key=lambda c: c.valid_from)
        self._cote_starts = [c.valid_from for c in self.cotes]
        self._value_cache: dict[tuple[str, date], LetterValue] = {}
        self._derived: dict[str, Any] = {}

    @staticmethod
    def _find(index: tuple[list[date], list[Dated]], day: date) -> Dated | None:
        starts, rows = index
        i = bisect_right(starts, day) - 1
        if i >= 0 and rows[i].covers(day):
            return rows[i]
        return None

    def act(self, code: str, day: date) -> ActVersion:
        index = self._act_index.get(code)
        if index is None:
            raise UnknownCode(f"unknown act code {code!r}", code=code)
        found = self._find(index, day)
        if found is None:
            versions = [f"{v.valid_from}..{v.valid_to or ''}" for v in index[1]]
            raise CodeNotValidOnDate(
                f"{code} is not valid on {day.isoformat()}; its versions: {', '.join(versions)}",
                code=code, date=day.isoformat(), versions=versions)
        return found  # type: ignore[return-value]

    def cote(self, day: date) -> Decimal:
        i = bisect_right(self._cote_starts, day) - 1
        if i < 0:
            raise MissingCote(f"no cote d'application in force on {day.isoformat()}",
                              date=day.isoformat())
        return self.cotes[i].cote

    def key_letter_value(self, letter: str, day: date) -> "LetterValue":
        """(value in euros on that day, the cote used or None, the row it comes from).

        An index-100 value is scaled by the cote and rounded to 4 decimals, half up, as the
        published key-letter values are.
        """
        cached = self._value_cache.get((letter, day))
        if cached is not None:
            return cached
        index = self._letter_index.get(letter)
        row = self._find(index, day) if index else None
        if row is None:
            raise MissingKeyLetterValue(
                f"no value of key letter {letter!r} in force on {day.isoformat()}",
                key_letter=letter, date=day.isoformat())
        assert isinstance(row, KeyLetterValue)
        if row.basis == "index100":
            cote = self.cote(day)
            value = (row.value * cote / HUNDRED).quantize(FOUR_PLACES, ROUND_HALF_UP)
            result = (value, cote, row)
        else:
            result = (row.value, None, row)
        self._value_cache[(letter, day)] = result
        return result

    def parameter(self, name: str, day: date) -> Decimal:
        index = self._param_index.get(name)
        row = self._find(index, day) if index else None
        if row is None:
            raise MissingParameter(f"parameter {name!r} has no value on {day.isoformat()}",
                                   parameter=name, date=day.isoformat())
        return row.value  # type: ignore[attr-defined]

    def modifier(self, code: str, day: date) -> Modifier:
        rows = self.modifiers.get(code)
        if not rows:
            raise UnknownModifier(f"unknown modifier {code!r}", modifier=code)
        for row in rows:
            if row.covers(day):
                return row
        raise UnknownModifier(f"modifier {code!r} is not valid on {day.isoformat()}",
                              modifier=code, date=day.isoformat())

    def derived(self, name: str, build: Callable[["TariffSnapshot"], Any]) -> Any:
        """Data derived from this snapshot (an index, a cache), built once on first use.

        A snapshot is only read once built, so what is derived from it stays true.
        """
        found = self._derived.get(name)
        if found is None:
            found = self._derived[name] = build(self)
        return found

    def category(self, act: ActVersion) -> str:
        nomenclature = self.nomenclatures.get(act.nomenclature)
        return nomenclature.category if nomenclature else "hospital"

    def search(self, query: str, day: date | None = None, limit: int = 20) -> list[ActVersion]:
        """Codes starting with the query first, then labels containing it (accents ignored)."""
        from luxfact.kit.text import fold

        needle = fold(query)
        by_code, by_label = [], []
        for code, versions in self.acts.items():
            version = versions[-1]
            if day is not None:
                found = self._find(self._act_index[code], day)
                if found is None:
                    continue
                version = found  # type: ignore[assignment]
            if fold(code).startswith(needle):
                by_code.append(version)
            elif needle in fold(version.label_fr) or needle in fold(version.label_de):
                by_label.append(version)
        by_code.sort(key=lambda v: (len(v.code), v.code))
        by_label.sort(key=lambda v: v.code)
        return (by_code + by_label)[:limit]


def unit_price(coefficient: Decimal, key_letter_value: Decimal) -> Decimal:
    """Coefficient × key-letter value, in euros rounded half up to the cent."""
    return (coefficient * key_letter_value).quantize(CENT, ROUND_HALF_UP)

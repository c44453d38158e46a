"""The pricing engine: what an act costs and who pays it. Pure: no database, no I/O, no clock.

Inputs are plain values (the act, the stay, the patient) and a `TariffSnapshot`; outputs are
immutable lines that carry their own explanation. Every rate and amount comes from the
snapshot's dated rows and parameters, looked up on the day of the act: nothing here is a
tariff constant, and a missing row raises the catalogue's error naming the date.

Money is Decimal, rounded half up to the cent at each published step (unit price, base,
each surcharge, the insurer's share); the patient's share is what remains, so on every line
insurer + patient == gross exactly.

Speed: pricing a stay runs once per act on hot paths (imports, re-pricing reports). What can
be derived once per snapshot is (`_Index`): the priced tariff of every code as a list of
periods, the periods of every code in force in each epoch (the days between two changes of
anything that prices a code), the rules by target, and the amounts of a line, which depend on
a handful of values shared by many acts. Per act, `price_stay` then does one dictionary
look-up for the period and one for the amounts, and keeps three references (act, tariff,
amounts) in parallel lists; secondary acts are reduced in the same pass, and the daily
participation is counted in stretches of days, not day by day.
"""

from __future__ import annotations

import calendar
import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, NoReturn

from luxfact.tariffs.catalogue import (
    CENT,
    HUNDRED,
    ActVersion,
    CatalogueError,
    KeyLetterValue,
    Modifier,
    Rule,
    TariffSnapshot,
    unit_price,
)

ZERO = Decimal("0.00")
ONE_DAY = timedelta(days=1)

STAY_KINDS = ("inpatient", "day_hospital", "outpatient", "emergency")
HOSPITAL_KINDS = ("inpatient", "day_hospital")  # doctors at the inpatient rate, participation
CATEGORIES = ("doctor", "nursing", "hospital", "supplement")
# Rules that check_rules enforces; secondary_percent is applied by price_stay.
CHECKED_RULES = ("min_age", "max_age", "specialties", "non_cumulable", "max_per_day",
                 "max_per_stay")
# stay_kinds is checked against the stay itself (in check_rules), not against other acts.
KNOWN_RULES = (*CHECKED_RULES, "secondary_percent", "stay_kinds")


# --------------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class ActInput:
    line_id: str                    # caller's reference, echoed on the output line
    code: str
    day: date                       # the act's date (Luxembourg local day)
    quantity: int = 1
    modifiers: tuple[str, ...] = ()  # modifier codes (catalogue Modifier rows)
    performer: str | None = None    # 8-digit provider code of the doctor
    specialty: str | None = None    # performer's specialty, for specialty restrictions
    first_class: bool = False       # patient was in first class at that time


@dataclass(frozen=True, slots=True)
class PatientInfo:
    birth_date: date
    death_date: date | None = None


@dataclass(frozen=True)
class StayInfo:
    kind: str                       # "inpatient", "day_hospital", "outpatient", "emergency"
    admitted: date
    discharged: date | None = None  # None: still in; participation counted up to `until`
    childbirth: bool = False
    psychiatric: bool = False
    # attestation validity periods, both ends inclusive
    social_tiers_payant: tuple[tuple[date, date], ...] = ()
    # year -> days already charged to this patient in other stays at this hospital that year
    prior_participation_days: Mapping[int, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------- errors


class RuleViolation(CatalogueError):
    """An act that breaks a rule; `rule` names it, `field` is the input to correct."""

    def __init__(self, message: str, *, rule: str, field: str,
                 other_line_id: str | None = None, **details: object) -> None:
        super().__init__(message, rule=rule, other_line_id=other_line_id, **details)
        self.rule = rule
        self.field = field
        self.other_line_id = other_line_id


class ParameterOutOfRange(CatalogueError):
    """A parameter whose value would make an amount negative (a rate above 100 %...)."""

    field = "performed_at"


# -------------------------------------------------------------------------------- outputs


class AppliedTariff(NamedTuple):
    """The tariff an act is priced with: its act version and the key-letter value of its day.

    This module's output values are named tuples, not dataclasses: one is built for every
    period of every code and every distinct line, and a named tuple costs a quarter of a
    frozen dataclass to build (measured: 0.33 against 1.38 µs for `Amounts`).
    """

    version: ActVersion
    category: str
    key_letter_value: Decimal       # euros, as published (4 decimals for index-100 values)
    cote: Decimal | None            # the cote d'application used, None for a euro value
    key_letter_row: KeyLetterValue
    unit_price: Decimal


class ModifierPart(NamedTuple):
    code: str
    percent: Decimal
    amount: Decimal
    patient_only: bool


class Amounts(NamedTuple):
    """Who pays what for one line, with the parts the explanation needs.

    It depends only on the unit price, quantity, percent, modifiers, first-class surcharge
    and the statutory terms of the day, so identical acts share one computation. The engine
    keeps it as a plain tuple of these fields (`_Row`) and names it when a line is read:
    the garbage collector never stops tracking an instance of a tuple's subclass, and the
    220,000 a new snapshot made for the million acts of `benchmarks/pricing.py` cost it a
    full collection (about a second here), where it stops tracking a plain tuple of
    numbers and strings in its first passes (one level of nesting a pass).
    """

    # The two shares again in integer cents: a stay's totals add integers, which costs a
    # fifth of adding Decimals (a tenth of the engine's time went there).
    insurer_cents: int
    patient_cents: int
    percent: Decimal                # 100, or the secondary-act percentage
    base: Decimal                   # unit price × quantity × percent, to the cent
    gross: Decimal
    insurer: Decimal
    patient: Decimal
    reasons: tuple[str, ...]
    rate: Decimal                   # the insurer's statutory % of the base (0: patient only)
    modifier_parts: tuple[ModifierPart, ...] = ()
    first_class_percent: Decimal | None = None
    first_class_amount: Decimal = ZERO
    tiers_payant_amount: Decimal = ZERO  # patient's statutory share moved to the insurer


# An `Amounts` as the engine holds it: the same fields in a plain tuple, its modifier parts
# plain tuples too (see `Amounts`).
_Row = tuple[Any, ...]
_MODIFIER_PARTS = Amounts._fields.index("modifier_parts")  # its position in a row


def _named(row: _Row) -> Amounts:
    """A row as the `Amounts` it holds."""
    amounts = Amounts._make(row)
    if row[_MODIFIER_PARTS]:
        return amounts._replace(modifier_parts=tuple(map(ModifierPart._make,
                                                         row[_MODIFIER_PARTS])))
    return amounts


def _via(path: str, doc: str) -> Any:
    """A read-only attribute of a priced line, read from the part that holds it."""
    return property(attrgetter(path), doc=doc)


@dataclass(frozen=True, slots=True)
class PricedLine:
    """One priced act: the act as recorded, the tariff applied and the amounts.

    Every field of the computation reads flat (`line.gross`, `line.version_id`...); the three
    parts are kept as references so that pricing a million acts does not copy them.
    """

    act: ActInput
    tariff: AppliedTariff
    amounts: Amounts

    line_id = _via("act.line_id", "the caller's reference")
    code = _via("act.code", "act code")
    day = _via("act.day", "date of the act")
    quantity = _via("act.quantity", "number of acts")
    modifiers = _via("act.modifiers", "modifier codes")
    version_id = _via("tariff.version.version_id", "tariff version, code@valid_from")
    nomenclature = _via("tariff.version.nomenclature", "nomenclature code")
    label_fr = _via("tariff.version.label_fr", "label in French")
    label_de = _via("tariff.version.label_de", "label in German")
    key_letter = _via("tariff.version.key_letter", "key letter")
    coefficient = _via("tariff.version.coefficient", "coefficient")
    category = _via("tariff.category", "doctor, nursing, hospital or supplement")
    key_letter_value = _via("tariff.key_letter_value", "key-letter value in euros that day")
    cote = _via("tariff.cote", "cote d'application used, None for a value in euros")
    unit_price = _via("tariff.unit_price", "coefficient × key-letter value, to the cent")
    percent = _via("amounts.percent", "100, or the secondary-act percentage")
    gross = _via("amounts.gross", "total of the line")
    insurer = _via("amounts.insurer", "the insurer's share")
    patient = _via("amounts.patient", "the patient's share")
    reasons = _via("amounts.reasons", "machine codes of the rules applied")

    def as_record(self) -> dict[str, Any]:
        """The line as flat values, for storage."""
        return {name: getattr(self, name) for name in LINE_RECORD_FIELDS}

    def explain(self) -> str:
        return _explain_line(self)


LINE_RECORD_FIELDS = (
    "line_id", "code", "version_id", "nomenclature", "category", "label_fr", "label_de",
    "day", "quantity", "modifiers", "key_letter", "key_letter_value", "cote", "coefficient",
    "unit_price", "percent", "gross", "insurer", "patient", "reasons",
)


class ExemptPeriod(NamedTuple):
    first_day: date
    last_day: date
    reasons: tuple[str, ...]

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


class ParticipationLine(NamedTuple):
    """The patient's daily participation for consecutive days of one year at one amount."""

    year: int
    kind: str                       # "inpatient" or "day_hospital"
    first_day: date
    last_day: date
    days: int                       # days charged
    daily_amount: Decimal
    amount: Decimal
    reasons: tuple[str, ...]        # why days were not charged, if any
    days_exempt: int
    exempt_periods: tuple[ExemptPeriod, ...] = ()

    def explain(self) -> str:
        return _explain_participation(self)


class PricedLines(Sequence[PricedLine]):
    """A stay's priced lines, held as three parallel lists: acts, tariffs and amounts.

    Pricing fills the lists and a `PricedLine` (three references) is made when a line is
    read, so that totalling a month of stays builds no line objects at all. Everything a
    line says is computed by then: reading it groups the three parts and names the
    amounts (`Amounts`, from the plain tuple the engine keeps).
    """

    __slots__ = ("_acts", "_amounts", "_tariffs")

    def __init__(self, acts: list[ActInput], tariffs: list[AppliedTariff],
                 amounts: list[_Row]) -> None:
        self._acts, self._tariffs, self._amounts = acts, tariffs, amounts

    def __len__(self) -> int:
        return len(self._acts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(map(PricedLine, self._acts[index], self._tariffs[index],
                             map(_named, self._amounts[index])))
        return PricedLine(self._acts[index], self._tariffs[index],
                          _named(self._amounts[index]))

    def __iter__(self) -> Iterator[PricedLine]:
        return map(PricedLine, self._acts, self._tariffs, map(_named, self._amounts))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PricedLines):
            return (self._acts == other._acts and self._tariffs == other._tariffs
                    and self._amounts == other._amounts)
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # compared by value, like a list

    def __repr__(self) -> str:
        return f"PricedLines({list(self)!r})"


@dataclass(frozen=True, slots=True)
class StayPricing:
    lines: PricedLines
    participation: tuple[ParticipationLine, ...]
    gross: Decimal                  # acts and participation
    insurer: Decimal
    patient: Decimal                # acts' patient shares and participation


# ----------------------------------------------------------------------------- public API


def price_act(snapshot: TariffSnapshot, stay: StayInfo, patient: PatientInfo,
              act: ActInput) -> PricedLine:
    """Price one act on its own (no secondary-act reduction): see `check_rules` for the rest."""
    _check_stay(stay)
    _check_own_data(stay, patient, act)
    index = _index(snapshot)
    period = index.period(act.code, act.day)
    terms = _terms(index, stay, patient, act.day, period.tariff.category)
    return index.line(act, period, HUNDRED, terms)


def check_rules(snapshot: TariffSnapshot, stay: StayInfo, patient: PatientInfo,
                act: ActInput, others: Sequence[ActInput]) -> None:
    """Raise `RuleViolation` for the first rule the act breaks, given the stay's other acts.

    `others` may include the act itself (same line_id): it is not counted twice.
    """
    index = _index(snapshot)
    _check_own_data(stay, patient, act)
    version = snapshot.act(act.code, act.day)
    index.modifiers(act, version.nomenclature)
    others = sorted((o for o in others if o.line_id != act.line_id), key=_ORDER)
    rules = index.rules_for(act.code, version.nomenclature, act.day)
    for rule in rules:
        if rule.rule == "stay_kinds" and stay.kind not in rule.others:
            raise RuleViolation(
                f"stay_kinds: {act.code} is billed on {', '.join(rule.others)} stays only, "
                f"not on a {stay.kind} stay", rule="stay_kinds", field="code",
                allowed=list(rule.others))
    for kind in CHECKED_RULES:
        for rule in rules:
            if rule.rule == kind:
                _CHECKS[kind](index, patient, act, rule, others)


def check_stay(snapshot: TariffSnapshot, stay: StayInfo, patient: PatientInfo,
               acts: Sequence[ActInput]) -> list[CatalogueError]:
    """Every act's first error, in line order: what a billing officer works through."""
    errors: list[CatalogueError] = []
    for act in sorted(acts, key=_ORDER):
        try:
            check_rules(snapshot, stay, patient, act, acts)
        except CatalogueError as error:
            errors.append(error)
    return errors


def price_stay(snapshot: TariffSnapshot, stay: StayInfo, patient: PatientInfo,
               acts: Iterable[ActInput], until: date | None = None) -> StayPricing:
    """Price every act of a stay and its daily participation.

    Lines come out in (day, line_id) order whatever the input order, secondary acts
    reduced; participation is counted up to the day before discharge, or up to `until`.
    """
    _check_stay(stay)
    index = _index(snapshot)
    # Two stable sorts give the (day, line_id) order without building a key tuple per act,
    # which cost ten times the sorting itself (the tuples wake the garbage collector).
    ordered = sorted(acts, key=_LINE_ID)
    ordered.sort(key=_DAY)
    _require_unique_ids(ordered)

    try:
        tariffs, amounts = _price_acts(index, stay, patient, ordered)
    except CatalogueError:
        # The fast pass stops at the first error it meets. The rules say which error comes
        # first (every act's tariff, then each act in line order at its final percentage),
        # and a secondary act may be priceable only once reduced: go again the plain way,
        # which raises that error, or prices what the fast pass could not.
        tariffs, amounts = _price_acts_plainly(index, stay, patient, ordered)
    if ordered:
        # Checked once every act is priced (a tariff's error comes first): the earliest and
        # the latest act say whether any falls outside the patient's life or the stay, and
        # a price for an act after death is no price (see `_check_own_data`).
        _check_own_data(stay, patient, ordered[0])
        _check_own_data(stay, patient, ordered[-1])

    insurer = _euros(sum(map(_INSURER_CENTS, amounts)))
    patient_share = _euros(sum(map(_PATIENT_CENTS, amounts)))
    participation = _participation(index, stay, patient, until)
    for item in participation:
        patient_share += item.amount
    return StayPricing(PricedLines(ordered, tariffs, amounts), participation,
                       insurer + patient_share, insurer, patient_share)


def _price_acts(index: _Index, stay: StayInfo, patient: PatientInfo,
                ordered: list[ActInput]) -> tuple[list[AppliedTariff], list[_Row]]:
    """The tariff and amounts of every act, in order: the hot loop of the engine.

    Written out flat: per act, a dictionary look-up finds its period, and most acts (one
    unit, no modifier, not in first class) find their amounts already computed for the
    period and the day's terms.
    """
    tariffs: list[AppliedTariff] = []
    amounts: list[_Row] = []
    # Most stays' terms are the same on each of their days: then they are worked out once
    # per category for the stay, not again for each day (11 % of the loop's profile).
    steady = not ordered or _steady_terms(index, stay, patient, ordered[0].day,
                                          ordered[-1].day)
    today, codes, terms_today, dearest = None, {}, {}, {}
    for act in ordered:
        day = act.day
        if day != today:  # acts come in day order: periods change with the day
            today, codes, dearest = day, index.codes_on(day), {}
            if not steady:
                terms_today = {}
        period = codes.get(act.code)
        if period is None:
            period = codes[act.code] = index.period(act.code, day)
        tariff = period.tariff
        terms = terms_today.get(tariff.category)
        if terms is None:
            terms = terms_today[tariff.category] = _terms(index, stay, patient, day,
                                                          tariff.category)
        percent = HUNDRED
        if period.secondary is not None and act.performer is not None:
            # Secondary acts: of the acts under one rule, on one day, by one performer, the
            # dearest is paid in full and the others at the rule's percentage (acts without
            # a performer are never grouped: nothing says one doctor did them). In line_id
            # order within the day, an act displaces the group's dearest only if dearer.
            key = (id(period.secondary), act.performer)
            first = dearest.get(key)
            if first is None:
                dearest[key] = (len(amounts), act, period, terms)
            elif tariff.unit_price > first[2].tariff.unit_price:
                position, other, other_period, other_terms = first
                amounts[position] = index.amounts(other, other_period,
                                                  other_period.secondary.value, other_terms)
                dearest[key] = (len(amounts), act, period, terms)
            else:
                percent = period.secondary.value
        # `is`: the percent set just above, left alone unless the act is secondary.
        if percent is HUNDRED and act.quantity == 1 and not act.modifiers and (
                not act.first_class):
            found = period.amounts.get(terms.number)
            if found is None:
                found = period.remember(terms.number, _plain_amounts(tariff.unit_price, terms))
        else:
            found = index.amounts(act, period, percent, terms)
        tariffs.append(tariff)
        amounts.append(found)
    return tariffs, amounts


def _price_acts_plainly(index: _Index, stay: StayInfo, patient: PatientInfo,
                        ordered: list[ActInput]) -> tuple[list[AppliedTariff], list[_Row]]:
    """`_price_acts` step by step: every act's period first, then the secondary-act
    percentages, then each act's amounts at its final percentage."""
    periods = [index.period(act.code, act.day) for act in ordered]
    percents = _secondary_percents(ordered, periods)
    terms_of: dict[tuple[date, str], _Terms] = {}
    amounts = []
    for act, period in zip(ordered, periods, strict=True):
        key = (act.day, period.tariff.category)
        terms = terms_of.get(key)
        if terms is None:
            terms = terms_of[key] = _terms(index, stay, patient, *key)
        amounts.append(index.amounts(act, period, percents.get(act.line_id, HUNDRED), terms))
    return [period.tariff for period in periods], amounts


def _secondary_percents(acts: list[ActInput], periods: list[_Period]) -> dict[str, Decimal]:
    """line_id -> reduced percentage, for every act that is not the dearest of its group."""
    groups: dict[tuple[int, date, str], list[tuple[ActInput, _Period]]] = {}
    for act, period in zip(acts, periods, strict=True):
        if period.secondary is not None and act.performer is not None:
            key = (id(period.secondary), act.day, act.performer)
            groups.setdefault(key, []).append((act, period))
    percents: dict[str, Decimal] = {}
    for members in groups.values():
        members.sort(key=lambda member: (-member[1].tariff.unit_price, member[0].line_id))
        for act, period in members[1:]:
            percents[act.line_id] = period.secondary.value  # type: ignore[union-attr]
    return percents


_LINE_ID = attrgetter("line_id")
_DAY = attrgetter("day")
_INSURER_CENTS = itemgetter(0)  # of a row (see `Amounts`)
_PATIENT_CENTS = itemgetter(1)


def age_on(birth_date: date, day: date) -> int:
    """Age in whole years on `day` (born on 29 February: a year older on 1 March)."""
    before_birthday = (day.month, day.day) < (birth_date.month, birth_date.day)
    return day.year - birth_date.year - before_birthday


# ------------------------------------------------------------------ the per-snapshot index


def _index(snapshot: TariffSnapshot) -> _Index:
    return snapshot.derived("pricing", _Index)


class _Index:
    """What the engine derives once from a snapshot, and its caches (pure memoisation)."""

    def __init__(self, snapshot: TariffSnapshot) -> None:
        self.snapshot = snapshot
        self.periods: dict[str, _Periods] = {}
        self.rules_by_target: dict[str, list[Rule]] = {}
        self.rules_by_other: dict[str, list[Rule]] = {}
        self.secondary: dict[str, list[Rule]] = {}
        for rule in snapshot.rules:
            self.rules_by_target.setdefault(rule.target, []).append(rule)
            if rule.rule == "non_cumulable":
                for other in rule.others:
                    self.rules_by_other.setdefault(other, []).append(rule)
            if rule.rule == "secondary_percent":
                self.secondary.setdefault(rule.target, []).append(rule)
        self.parameters: dict[tuple[str, date], Decimal] = {}
        self.participation: dict[tuple[str, date], tuple[Decimal, Decimal, Decimal]] = {}
        self.terms_of_day: dict[tuple[date, str, bool, bool, bool], _Terms] = {}
        self.terms: dict[tuple[Decimal, str, bool, bool], _Terms] = {}
        self.bounds: dict[tuple[str, ...], frozenset[date]] = {}
        self.highest_exemption_age = self.highest("exemption_age")
        # Every day on which a parameter of a line's terms may change (see `_terms`).
        self.terms_bounds = sorted(self.parameter_bounds(*_TERMS_PARAMETERS))
        # Every day on which any code's price may change (see `codes_on`), as day numbers.
        self.epoch_starts = _epoch_starts(snapshot)
        self.epochs: dict[int, dict[str, _Period]] = {}
        self.epoch_of_day: dict[date, dict[str, _Period]] = {}

    # -- tariffs

    def tariff(self, code: str, day: date) -> AppliedTariff:
        return self.period(code, day).tariff

    def codes_on(self, day: date) -> dict[str, _Period]:
        """code -> period, shared by every day of the epoch that holds `day`.

        An epoch runs from one day on which something that prices a code changes (an act
        version, a key-letter value, a cote, a secondary-act rule) to the next; within it
        every code has one period. A stay's acts of one day then find their periods with
        one dictionary look-up each, without a bisect: the hot path of pricing a stay.
        The table fills as codes are met (`period`, which raises for a code without price).
        """
        table = self.epoch_of_day.get(day)
        if table is None:
            epoch = bisect_right(self.epoch_starts, day.toordinal())
            table = self.epochs.get(epoch)
            if table is None:
                table = self.epochs[epoch] = {}
            self.epoch_of_day[day] = table
        return table

    def period(self, code: str, day: date) -> _Period:
        """The code's tariff and secondary-act rule on a day."""
        periods = self.periods.get(code)
        if periods is None:
            periods = self.periods[code] = self._tariff_periods(code)
        starts, found = periods
        i = bisect_right(starts, day.toordinal()) - 1
        if i < 0 or found[i] is _NO_PERIOD:
            self.refuse(code, day)
        return found[i]

    def refuse(self, code: str, day: date) -> NoReturn:
        """Raise the error of a code without a price on a day: resolving it again on that
        day raises the catalogue's own error, naming the code and the date."""
        self._resolve(code, day)
        raise CatalogueError(f"{code} has no price on {day.isoformat()}", code=code,
                             date=day.isoformat())

    def _resolve(self, code: str, day: date) -> AppliedTariff:
        snapshot = self.snapshot
        version = snapshot.act(code, day)
        value, cote, row = snapshot.key_letter_value(version.key_letter, day)
        category = snapshot.category(version)
        if category not in CATEGORIES:
            raise CatalogueError(f"nomenclature {version.nomenclature!r} has an unknown "
                                 f"category {category!r}", code=code)
        return AppliedTariff(version, category, value, cote, row,
                             unit_price(version.coefficient, value))

    def _tariff_periods(self, code: str) -> _Periods:
        """The code's tariff as consecutive periods in which nothing it depends on changes.

        A period starts wherever an act version, a value of one of its key letters, a cote
        or a secondary-act rule starts or ends; within it one look-up answers for every day.
        Compact on purpose: pricing many codes is bound by memory access more than by
        computing, so the starts are day numbers in one array and the periods a tuple.
        """
        snapshot = self.snapshot
        versions = snapshot.acts.get(code, [])
        rows: list[Any] = list(versions)
        for letter in {v.key_letter for v in versions}:
            rows.extend(snapshot.key_letters.get(letter, []))
        for target in {code} | {"@" + v.nomenclature for v in versions}:
            rows.extend(self.secondary.get(target, []))
        bounds: set[date] = set()
        for row in rows:
            bounds.add(row.valid_from)
            if row.valid_to is not None and row.valid_to < date.max:
                bounds.add(row.valid_to + ONE_DAY)
        if any(getattr(row, "basis", None) == "index100" for row in rows):
            bounds.update(c.valid_from for c in snapshot.cotes)
        # Before its first version a code has no price: no period needs resolving there.
        first = min((v.valid_from for v in versions), default=date.max)
        bounds = {day for day in bounds if day >= first}
        starts: list[int] = []
        periods: list[_Period] = []
        for start in sorted(bounds):
            try:
                tariff = self._resolve(code, start)
            except CatalogueError:
                period = _NO_PERIOD
            else:
                rule = self.secondary_rule(code, tariff.version.nomenclature, start)
                period = _Period(tariff, rule)
            if not periods or not _same_period(periods[-1], period):
                starts.append(start.toordinal())
                periods.append(period)
        return array("l", starts), tuple(periods)

    # -- parameters

    def parameter(self, name: str, day: date) -> Decimal:
        key = (name, day)
        value = self.parameters.get(key)
        if value is None:
            value = self.parameters[key] = self.snapshot.parameter(name, day)
        return value

    def parameter_bounds(self, *names: str) -> frozenset[date]:
        """Every day on which one of the parameters takes or loses a value."""
        bounds = self.bounds.get(names)
        if bounds is None:
            days = set()
            for name in names:
                for row in self.snapshot.parameters.get(name, ()):
                    days.add(row.valid_from)
                    if row.valid_to is not None and row.valid_to < date.max:
                        days.add(row.valid_to + ONE_DAY)
            bounds = self.bounds[names] = frozenset(days)
        return bounds

    def highest(self, name: str) -> Decimal:
        """The highest value a parameter ever takes (0 if it has none)."""
        return max((row.value for row in self.snapshot.parameters.get(name, ())),
                   default=Decimal(0))

    def percentage(self, name: str, day: date, high: Decimal | None = HUNDRED) -> Decimal:
        """A parameter that is a percentage: refused outside 0..100 (or 0.. if no high)."""
        value = self.parameter(name, day)
        if value < 0 or (high is not None and value > high):
            raise ParameterOutOfRange(
                f"parameter {name!r} is {value} on {day.isoformat()}, outside 0..{high or ''}",
                parameter=name, date=day.isoformat())
        return value

    def participation_terms(self, name: str, day: date) -> tuple[Decimal, Decimal, Decimal]:
        """(daily amount, exemption age, yearly cap of days) in force on a day."""
        key = (name, day)
        terms = self.participation.get(key)
        if terms is None:
            terms = self.participation[key] = (
                self.percentage(name, day, None), self.parameter("exemption_age", day),
                self.parameter("annual_day_cap", day))
        return terms

    # -- rules and modifiers

    def rules_for(self, code: str, nomenclature: str, day: date) -> list[Rule]:
        """The rules about an act on a day: on its code or nomenclature, and the
        non-cumulable rules that name it among their `others` (a pair has two sides)."""
        found: dict[int, Rule] = {}
        for target in (code, "@" + nomenclature):
            for rule in self.rules_by_target.get(target, []) + self.rules_by_other.get(
                    target, []):
                if rule.rule not in KNOWN_RULES:
                    raise CatalogueError(f"rule {rule.rule!r} on {rule.target} is not known "
                                         "to the pricing engine", rule=rule.rule,
                                         target=rule.target)
                if rule.covers(day):
                    found.setdefault(id(rule), rule)
        return list(found.values())

    def secondary_rule(self, code: str, nomenclature: str, day: date) -> Rule | None:
        """The secondary-act rule for an act, a rule on its code first, else its nomenclature."""
        for target in (code, "@" + nomenclature):
            for rule in self.secondary.get(target, ()):
                if rule.covers(day):
                    if rule.value is None or not 0 <= rule.value <= HUNDRED:
                        raise CatalogueError(
                            f"secondary_percent rule on {rule.target} needs a value between "
                            f"0 and 100, not {rule.value}", target=rule.target)
                    return rule
        return None

    def modifiers(self, act: ActInput, nomenclature: str) -> tuple[Modifier, ...]:
        rows = []
        for code in act.modifiers:
            if act.modifiers.count(code) > 1:
                raise RuleViolation(f"duplicate_modifier: {code} is given twice on "
                                    f"{act.code}", rule="duplicate_modifier",
                                    field="modifiers", modifier=code)
            try:
                row = self.snapshot.modifier(code, act.day)
            except CatalogueError as error:
                raise RuleViolation(f"unknown_modifier: {error}", rule="unknown_modifier",
                                    field="modifiers", modifier=code) from error
            if not {"*", act.code, "@" + nomenclature} & set(row.applies_to):
                raise RuleViolation(
                    f"modifier_not_applicable: modifier {code} does not apply to {act.code}",
                    rule="modifier_not_applicable", field="modifiers", modifier=code)
            rows.append(row)
        return tuple(rows)

    # -- lines

    def line(self, act: ActInput, period: _Period, percent: Decimal,
             terms: _Terms) -> PricedLine:
        """The act priced with its period's tariff, at `percent` %, under `terms`."""
        return PricedLine(act, period.tariff,
                          _named(self.amounts(act, period, percent, terms)))

    def amounts(self, act: ActInput, period: _Period, percent: Decimal,
                terms: _Terms) -> _Row:
        """Who pays what for the act, as a row (see `Amounts`). Identical acts cost the
        same, so their amounts are computed once and kept with the period: keyed by the
        terms alone for most acts (one unit at full price, nothing added: the shortcut,
        whose row says `HUNDRED` for a percentage equal to 100 however it is written), by
        everything that changes the amounts for the others.
        """
        tariff = period.tariff
        quantity = act.quantity
        if quantity <= 0:
            raise RuleViolation(f"quantity: quantity must be at least 1, not {quantity}",
                                rule="quantity", field="quantity")
        if not act.modifiers and not (act.first_class and tariff.category == "doctor"):
            # Short keys for the common lines: nothing added to the base.
            if quantity == 1:
                key: Any = terms.number if percent == HUNDRED else (terms.number, percent)
            else:
                key = (terms.number, percent, quantity)
            amounts = period.amounts.get(key)
            if amounts is None:
                amounts = period.remember(key, _plain_amounts(tariff.unit_price, terms)
                                          if key is terms.number else
                                          _amounts(tariff.unit_price, quantity, percent, (),
                                                   None, terms))
            return amounts
        parts: tuple[tuple[str, Decimal, bool], ...] = ()
        if act.modifiers:
            rows = self.modifiers(act, tariff.version.nomenclature)
            parts = tuple((m.code, m.percent, m.patient_only) for m in rows)
        first_class = None
        if act.first_class and tariff.category == "doctor":
            first_class = self.percentage("first_class_surcharge_percent", act.day, None)
        key = (terms.number, quantity, percent, parts, first_class)
        amounts = period.amounts.get(key)
        if amounts is None:
            amounts = period.remember(key, _amounts(tariff.unit_price, quantity, percent,
                                                    parts, first_class, terms))
        return amounts


@dataclass(frozen=True, slots=True)
class _Period:
    """What prices a code during a period: its tariff and its secondary-act rule."""

    tariff: AppliedTariff
    secondary: Rule | None
    # The amounts already computed with this tariff (see `_Index.line`).
    amounts: dict[Any, _Row] = field(default_factory=dict, compare=False)

    # Bounds the cache of a long-lived snapshot; refilling it is cheap.
    CACHE_SIZE = 256

    def remember(self, key: Any, amounts: _Row) -> _Row:
        if len(self.amounts) >= self.CACHE_SIZE:
            self.amounts.clear()
        self.amounts[key] = amounts
        return amounts


def _epoch_starts(snapshot: TariffSnapshot) -> list[int]:
    """The day numbers on which any code's period may start (see `_Index.codes_on`): a
    superset of every code's period starts (`_Index._tariff_periods`)."""
    rows: list[Any] = [v for versions in snapshot.acts.values() for v in versions]
    rows.extend(r for values in snapshot.key_letters.values() for r in values)
    rows.extend(r for r in snapshot.rules if r.rule == "secondary_percent")
    days = {c.valid_from for c in snapshot.cotes}
    for row in rows:
        days.add(row.valid_from)
        if row.valid_to is not None and row.valid_to < date.max:
            days.add(row.valid_to + ONE_DAY)
    return sorted(day.toordinal() for day in days)


# A period in which the code has no price (not valid, no key-letter value, no cote).
_NO_PERIOD: Any = object()
# A code's periods: the ordinal of each one's first day, and the periods.
_Periods = tuple[array, tuple[_Period, ...]]


def _same_period(a: _Period, b: _Period) -> bool:
    if a is _NO_PERIOD or b is _NO_PERIOD:
        return a is b
    return (a.tariff.version is b.tariff.version
            and a.tariff.key_letter_row is b.tariff.key_letter_row
            and a.tariff.key_letter_value == b.tariff.key_letter_value
            and a.tariff.cote == b.tariff.cote
            and a.secondary is b.secondary)


# ----------------------------------------------------------------------- who pays what


@dataclass(frozen=True, slots=True, eq=False)
class _Terms:
    """The statutory terms of a line. One object per distinct value (see `_terms`), with
    a number that keys the amounts computed under them: an int, so that the cached keys
    hold nothing the garbage collector has to follow."""

    rate: Decimal                   # the insurer's % of the statutory part
    reason: str
    tiers: bool                     # tiers payant social: the insurer pays the patient's part
    patient_only: bool              # the whole line is the patient's
    number: int                     # its order of creation in the index
    reasons: tuple[str, ...]        # the reasons of a plain line under them
    tiers_reasons: tuple[str, ...]  # the same, its patient's share moved to the insurer


# The parameters `_terms` reads.
_TERMS_PARAMETERS = ("exemption_age", "inpatient_rate", "outpatient_rate_minor",
                     "outpatient_rate_adult")


def _terms(index: _Index, stay: StayInfo, patient: PatientInfo, day: date,
           category: str) -> _Terms:
    """The terms of a line; what they depend on is reduced to a key shared by all stays."""
    hospitalised = stay.kind in HOSPITAL_KINDS
    tiers = category != "supplement" and _covered(stay.social_tiers_payant, day)
    minor = (category == "doctor" and not hospitalised
             and age_on(patient.birth_date, day) < index.parameter("exemption_age", day))
    key = (day, category, hospitalised, minor, tiers)
    terms = index.terms_of_day.get(key)
    if terms is None:
        # One `_Terms` per distinct value, so that its amounts serve every day and stay.
        value = _statutory_terms(index, *key)
        terms = index.terms.get(value)
        if terms is None:
            terms = index.terms[value] = _Terms(*value, len(index.terms), (value[1],),
                                                (value[1], "social_tiers_payant"))
        index.terms_of_day[key] = terms
    return terms


def _steady_terms(index: _Index, stay: StayInfo, patient: PatientInfo, first: date,
                  last: date) -> bool:
    """Whether `_terms` gives the same terms on every day from `first` to `last`: no
    parameter it reads changes, no attestation starts or ends, and outside a hospital stay
    (where the exemption age counts) no birthday. A birthday answers no even when it changes
    nothing: the days are then simply taken one by one."""
    if first == last:
        return True
    bounds = index.terms_bounds
    i = bisect_right(bounds, first)
    if i < len(bounds) and bounds[i] <= last:
        return False
    for attested_from, attested_to in stay.social_tiers_payant:
        if first < attested_from <= last or first <= attested_to < last:
            return False
    return stay.kind in HOSPITAL_KINDS or (
        age_on(patient.birth_date, first) == age_on(patient.birth_date, last))


def _statutory_terms(index: _Index, day: date, category: str, hospitalised: bool,
                     minor: bool, tiers: bool) -> tuple[Decimal, str, bool, bool]:
    if category == "supplement":
        return (ZERO, "patient_only_code", False, True)
    if category != "doctor":
        return (HUNDRED, "hospital_service_100", tiers, False)
    if hospitalised:
        rate = index.percentage("inpatient_rate", day)
        return (rate, f"inpatient_{_number(rate)}", tiers, False)
    if minor:
        rate = index.percentage("outpatient_rate_minor", day)
        return (rate, f"outpatient_minor_{_number(rate)}", tiers, False)
    rate = index.percentage("outpatient_rate_adult", day)
    return (rate, f"outpatient_adult_{_number(rate)}", tiers, False)


def _amounts(unit: Decimal, quantity: int, percent: Decimal,
             modifiers: tuple[tuple[str, Decimal, bool], ...], first_class: Decimal | None,
             terms: _Terms) -> _Row:
    rate, rate_reason, tiers, patient_only = (terms.rate, terms.reason, terms.tiers,
                                              terms.patient_only)
    if quantity == 1 and percent == HUNDRED:
        base = unit
    else:
        base = _cents(unit * quantity * percent / HUNDRED)
    reasons = [rate_reason]
    if percent != HUNDRED:
        reasons.append(f"secondary_act_{_number(percent)}")

    # The statutory part (base and shared surcharges) is split at the rate; the patient-only
    # parts are added to the patient's share after the split, out of the insurer's reach.
    statutory, own = base, ZERO
    modifier_parts = []
    for code, modifier_percent, modifier_patient_only in modifiers:
        amount = _cents(base * modifier_percent / HUNDRED)
        modifier_parts.append((code, modifier_percent, amount, modifier_patient_only))
        reasons.append(f"modifier_{code}_{_number(modifier_percent)}")
        if modifier_patient_only or patient_only:
            own += amount
        else:
            statutory += amount
    first_class_amount = ZERO
    if first_class is not None:
        first_class_amount = _cents(base * first_class / HUNDRED)
        own += first_class_amount
        reasons.append(f"first_class_surcharge_{_number(first_class)}")
    if statutory < 0 or own < 0:
        raise RuleViolation("negative_amount: the modifiers reduce the line below zero",
                            rule="negative_amount", field="modifiers")

    if patient_only:
        insurer, patient = ZERO, statutory
    else:
        insurer = statutory if rate == HUNDRED else _cents(statutory * rate / HUNDRED)
        patient = statutory - insurer
    moved = ZERO
    if tiers and patient:
        moved, insurer, patient = patient, statutory, ZERO
        reasons.append("social_tiers_payant")
    patient += own
    return (int(insurer.scaleb(2)), int(patient.scaleb(2)), percent, base, statutory + own,
            insurer, patient, tuple(reasons), rate, tuple(modifier_parts), first_class,
            first_class_amount, moved)


def _plain_amounts(unit: Decimal, terms: _Terms) -> _Row:
    """`_amounts` of the commonest line (one unit at full price, nothing added) without its
    general steps: a new snapshot computes one for each period and set of terms it meets.
    The same operations on the same values as `_amounts(unit, 1, HUNDRED, (), None,
    terms)`, so the same Decimals to the last digit."""
    if unit < 0:
        return _amounts(unit, 1, HUNDRED, (), None, terms)  # which refuses it
    rate = terms.rate
    if terms.patient_only:
        insurer, patient = ZERO, unit
    else:
        insurer = unit if rate == HUNDRED else _cents(unit * rate / HUNDRED)
        patient = unit - insurer
    if terms.tiers and patient:
        moved, insurer, patient, reasons = patient, unit, ZERO, terms.tiers_reasons
    else:
        moved, reasons = ZERO, terms.reasons
    patient += ZERO
    return (int(insurer.scaleb(2)), int(patient.scaleb(2)), HUNDRED, unit, unit + ZERO,
            insurer, patient, reasons, rate, (), None, ZERO, moved)


def _cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, ROUND_HALF_UP)


def _euros(cents: int) -> Decimal:
    """Integer cents as euros, exactly (2 decimals)."""
    return Decimal(cents).scaleb(-2)


def _number(value: Decimal) -> str:
    """A percentage or count as it reads in a reason code: 88, 87.5, -20."""
    return format(value.normalize(), "f")


def _covered(periods: tuple[tuple[date, date], ...], day: date) -> bool:
    # Most stays have no attestation: skip building the generator for them.
    return bool(periods) and any(start <= day <= end for start, end in periods)


# ----------------------------------------------------------------------- rule checks


def _check_own_data(stay: StayInfo, patient: PatientInfo, act: ActInput) -> None:
    """What is wrong with the act whatever the catalogue says."""
    if act.quantity <= 0:
        raise RuleViolation(f"quantity: quantity must be at least 1, not {act.quantity}",
                            rule="quantity", field="quantity")
    day = act.day.isoformat()
    if act.day < patient.birth_date:
        raise RuleViolation(f"before_birth: act on {day}, before the patient's birth on "
                            f"{patient.birth_date.isoformat()}", rule="before_birth",
                            field="performed_at")
    if patient.death_date is not None and act.day > patient.death_date:
        raise RuleViolation(f"after_death: act on {day}, after the patient's death on "
                            f"{patient.death_date.isoformat()}", rule="after_death",
                            field="performed_at")
    if act.day < stay.admitted or (stay.discharged is not None and act.day > stay.discharged):
        end = stay.discharged.isoformat() if stay.discharged else "(still in)"
        raise RuleViolation(f"outside_stay: act on {day}, outside the stay "
                            f"{stay.admitted.isoformat()}..{end}", rule="outside_stay",
                            field="performed_at")


def _rule_value(rule: Rule) -> Decimal:
    if rule.value is None:
        raise CatalogueError(f"{rule.rule} rule on {rule.target} has no value",
                             rule=rule.rule, target=rule.target)
    return rule.value


def _matches(target: str, code: str, nomenclature: str) -> bool:
    return target == code or target == "@" + nomenclature


def _nomenclature_of(index: _Index, act: ActInput) -> str | None:
    """The other act's nomenclature; None if it has no tariff (its own check reports it)."""
    try:
        return index.tariff(act.code, act.day).version.nomenclature
    except CatalogueError:
        return None


def _check_age(index: _Index, patient: PatientInfo, act: ActInput, rule: Rule,
               others: list[ActInput]) -> None:
    age = age_on(patient.birth_date, act.day)
    limit = _rule_value(rule)
    too_young = rule.rule == "min_age" and age < limit
    too_old = rule.rule == "max_age" and age > limit
    if too_young or too_old:
        raise RuleViolation(f"{rule.rule}: {act.code} is for patients aged "
                            f"{'at least' if too_young else 'at most'} {_number(limit)}, "
                            f"the patient is {age} on {act.day.isoformat()}",
                            rule=rule.rule, field="performed_at", age=age)


def _check_specialty(index: _Index, patient: PatientInfo, act: ActInput, rule: Rule,
                     others: list[ActInput]) -> None:
    if act.specialty not in rule.others:
        given = act.specialty or "unknown"
        raise RuleViolation(f"specialties: {act.code} may be billed by "
                            f"{', '.join(rule.others)} only, not by specialty {given}",
                            rule="specialties", field="specialty", allowed=rule.others)


def _check_non_cumulable(index: _Index, patient: PatientInfo, act: ActInput, rule: Rule,
                         others: list[ActInput]) -> None:
    version = index.tariff(act.code, act.day).version
    act_is_target = _matches(rule.target, act.code, version.nomenclature)
    for other in others:
        if other.day != act.day:
            continue
        nomenclature = _nomenclature_of(index, other)
        if nomenclature is None:
            continue
        if act_is_target:
            clash = any(_matches(o, other.code, nomenclature) for o in rule.others)
        else:
            clash = _matches(rule.target, other.code, nomenclature)
        if clash:
            raise RuleViolation(f"non_cumulable: {act.code} cannot be cumulated with "
                                f"{other.code} (line {other.line_id}) on "
                                f"{act.day.isoformat()}", rule="non_cumulable", field="code",
                                other_line_id=other.line_id, other_code=other.code)


def _check_count(index: _Index, patient: PatientInfo, act: ActInput, rule: Rule,
                 others: list[ActInput]) -> None:
    limit = _rule_value(rule)
    per_day = rule.rule == "max_per_day"
    counted = []
    for other in others:
        if per_day and other.day != act.day:
            continue
        nomenclature = _nomenclature_of(index, other)
        if nomenclature is not None and _matches(rule.target, other.code, nomenclature):
            counted.append(other)
    total = act.quantity + sum(o.quantity for o in counted)
    if total <= limit:
        return
    scope = f"on {act.day.isoformat()}" if per_day else "in the stay"
    with_lines = "".join(f", {o.code} (line {o.line_id})" for o in counted)
    raise RuleViolation(f"{rule.rule}: at most {_number(limit)} of {rule.target} {scope}, "
                        f"{total} with {act.code}{with_lines}", rule=rule.rule, field="code",
                        other_line_id=counted[0].line_id if counted else None,
                        other_line_ids=[o.line_id for o in counted], total=total)


_CHECKS = {
    "min_age": _check_age,
    "max_age": _check_age,
    "specialties": _check_specialty,
    "non_cumulable": _check_non_cumulable,
    "max_per_day": _check_count,
    "max_per_stay": _check_count,
}

_ORDER = attrgetter("day", "line_id")


def _check_stay(stay: StayInfo) -> None:
    if stay.kind not in STAY_KINDS:
        raise ValueError(f"unknown stay kind {stay.kind!r}; expected one of {STAY_KINDS}")
    if stay.discharged is not None and stay.discharged < stay.admitted:
        raise ValueError("a stay cannot be discharged before it is admitted")


def _require_unique_ids(acts: list[ActInput]) -> None:
    if len(set(map(_LINE_ID, acts))) == len(acts):
        return
    seen: set[str] = set()
    for act in acts:
        if act.line_id in seen:
            raise RuleViolation(f"duplicate_line_id: two acts have line_id {act.line_id!r}",
                                rule="duplicate_line_id", field="line_id",
                                other_line_id=act.line_id)
        seen.add(act.line_id)


# ------------------------------------------------------------------ daily participation

_EXEMPTION_ORDER = ("psychiatric_day_hospital", "exempt_under", "childbirth_first",
                    "social_tiers_payant", "annual_cap_reached")


def _participation(index: _Index, stay: StayInfo, patient: PatientInfo,
                   until: date | None) -> tuple[ParticipationLine, ...]:
    if stay.kind not in HOSPITAL_KINDS:
        return ()
    period = _counted_days(stay, until)
    if period is None:
        return ()
    if period[0] < patient.birth_date:
        raise RuleViolation(
            f"before_birth: participation counted from {period[0].isoformat()}, before the "
            f"patient's birth on {patient.birth_date.isoformat()}", rule="before_birth",
            field="admitted_at")
    if patient.death_date is not None and period[1] > patient.death_date:
        raise RuleViolation(
            f"after_death: participation counted up to {period[1].isoformat()}, after the "
            f"patient's death on {patient.death_date.isoformat()}: the stay ends with it",
            rule="after_death", field="discharged_at")
    runs = _participation_runs(index, stay, patient, *period)
    return tuple(_participation_lines(stay.kind, runs))


def _counted_days(stay: StayInfo, until: date | None) -> tuple[date, date] | None:
    """First and last day of participation: admission to the day before discharge."""
    if stay.discharged is not None:
        # A stay that ends the day it starts still counts one day.
        last = max(stay.discharged - ONE_DAY, stay.admitted)
        if until is not None:
            last = min(last, until)
    elif until is not None:
        last = until
    else:
        raise ValueError("an open stay (not discharged) needs `until` to count participation")
    return (stay.admitted, last) if last >= stay.admitted else None


# Consecutive days of one year with the same daily amount and the same exemption reasons
# (none: the days are charged): [first day, last day, daily amount, reasons].
_Run = list[Any]


def _participation_runs(index: _Index, stay: StayInfo, patient: PatientInfo,
                        first: date, last: date) -> list[_Run]:
    runs: list[_Run] = []
    if stay.kind == "day_hospital" and stay.psychiatric:
        for year in range(first.year, last.year + 1):
            runs.append([max(first, date(year, 1, 1)), min(last, date(year, 12, 31)), ZERO,
                         ("psychiatric_day_hospital",)])
        return runs
    name = f"daily_participation_{stay.kind}"
    childbirth_days = 0
    if stay.childbirth:
        childbirth_days = int(index.parameter("childbirth_exempt_days", stay.admitted))
    charged = dict(stay.prior_participation_days)
    run: _Run = [None, None, None, None]
    # Whole stretches of days at a time: within a segment nothing that decides a day
    # changes but the count of days charged, so only the annual cap splits it further.
    for start, end in _segments(index, stay, patient, name, childbirth_days, first, last):
        amount, exemption_age, cap = index.participation_terms(name, start)
        reasons: tuple[str, ...] = ()
        if age_on(patient.birth_date, start) < exemption_age:
            reasons += (f"exempt_under_{_number(exemption_age)}",)
        if (start - stay.admitted).days < childbirth_days:
            reasons += (f"childbirth_first_{childbirth_days}_days",)
        if stay.social_tiers_payant and _covered(stay.social_tiers_payant, start):
            reasons += ("social_tiers_payant",)
        parts = [(start, end, reasons)]
        if not reasons:
            # The cap counts the days charged, in this stay and the year's earlier ones.
            done = charged.get(start.year, 0)
            days = (end - start).days + 1
            room = min(days, max(0, math.ceil(cap - done)))
            charged[start.year] = done + room
            if room < days:
                capped = (start + timedelta(room), end, ("annual_cap_reached",))
                parts = [(start, start + timedelta(room - 1), ()), capped] if room else [capped]
        for part_start, part_end, why in parts:
            new_year = part_start.month == 1 and part_start.day == 1
            if new_year or amount != run[2] or why != run[3]:
                run = [part_start, part_end, amount, why]
                runs.append(run)
            else:
                run[1] = part_end
    return runs


def _segments(index: _Index, stay: StayInfo, patient: PatientInfo, name: str,
              childbirth_days: int, first: date, last: date) -> Iterator[tuple[date, date]]:
    """[first, last] cut wherever what decides a day's participation may change: a new year,
    a parameter's value, a birthday, the end of the childbirth days, an attestation."""
    cuts = {date(year, 1, 1) for year in range(first.year + 1, last.year + 1)}
    cuts.update(index.parameter_bounds(name, "exemption_age", "annual_day_cap"))
    birth = patient.birth_date
    # Birthdays matter only while the patient may be under an exemption age.
    if age_on(birth, first) < index.highest_exemption_age:
        for year in range(first.year, last.year + 1):
            # The day the age changes (born on 29 February: 1 March in a common year).
            leap_born = (birth.month, birth.day) == (2, 29)
            cuts.add(date(year, 3, 1) if leap_born and not calendar.isleap(year)
                     else date(year, birth.month, birth.day))
    if childbirth_days:
        cuts.add(stay.admitted + timedelta(childbirth_days))
    for attested_from, attested_to in stay.social_tiers_payant:
        cuts.add(attested_from)
        if attested_to < date.max:
            cuts.add(attested_to + ONE_DAY)
    start = first
    for cut in sorted(day for day in cuts if first < day <= last):
        yield start, cut - ONE_DAY
        start = cut
    yield start, last


def _participation_lines(kind: str, runs: list[_Run]) -> Iterator[ParticipationLine]:
    """One line per stretch of consecutive days of one year at one daily amount."""
    stretch: list[_Run] = []
    for run in runs:
        if stretch and (run[0].year != stretch[0][0].year or run[2] != stretch[0][2]):
            yield _participation_line(kind, stretch)
            stretch = []
        stretch.append(run)
    if stretch:
        yield _participation_line(kind, stretch)


def _participation_line(kind: str, runs: list[_Run]) -> ParticipationLine:
    daily = runs[0][2]
    periods = tuple(ExemptPeriod(first, last, reasons)
                    for first, last, _amount, reasons in runs if reasons)
    total = sum((last - first).days + 1 for first, last, _amount, _reasons in runs)
    exempt = 0
    reasons: tuple[str, ...] = ()
    if periods:  # most stays have none: no reasons to gather and order
        exempt = sum(period.days for period in periods)
        reasons = tuple(sorted({reason for period in periods for reason in period.reasons},
                               key=_exemption_rank))
    return ParticipationLine(
        year=runs[0][0].year, kind=kind, first_day=runs[0][0], last_day=runs[-1][1],
        days=total - exempt, daily_amount=daily, amount=_cents(daily * (total - exempt)),
        reasons=reasons, days_exempt=exempt, exempt_periods=periods)


def _exemption_rank(reason: str) -> int:
    return next(i for i, prefix in enumerate(_EXEMPTION_ORDER) if reason.startswith(prefix))


# ----------------------------------------------------------------------- explanations


def describe_reason(reason: str) -> str:
    """A reason code in words, for a billing officer."""
    head, _, tail = reason.rpartition("_")
    simple = _REASONS.get(reason)
    if simple is not None:
        return simple
    if reason.startswith("modifier_"):
        code, _, percent = reason[len("modifier_"):].rpartition("_")
        return f"modifier {code}: {percent} % of the base"
    if reason.startswith("childbirth_first_"):
        days = reason[len("childbirth_first_"):-len("_days")]
        return f"no participation for the first {days} days of a childbirth stay"
    template = _REASON_TEMPLATES.get(head)
    return template.format(tail) if template else reason


_REASONS = {
    "hospital_service_100": "the hospital's own service: paid in full by the insurer",
    "patient_only_code": "a supplement for personal convenience: always the patient's",
    "social_tiers_payant": "tiers payant social: the patient's statutory share is paid by "
                           "the insurer (supplements stay with the patient)",
    "annual_cap_reached": "the yearly cap of participation days is reached",
    "psychiatric_day_hospital": "no participation in a psychiatric day hospital",
}
_REASON_TEMPLATES = {
    "inpatient": "doctor's act during a hospital stay: the insurer pays {} %",
    "outpatient_adult": "outpatient doctor's act, adult: the insurer pays {} %",
    "outpatient_minor": "outpatient doctor's act, patient under the exemption age: "
                        "the insurer pays {} %",
    "secondary_act": "secondary act of the same day and performer: paid at {} %",
    "first_class_surcharge": "first-class surcharge of {} %: the patient's, never the "
                             "insurer's",
    "exempt_under": "no participation under the age of {}",
}


def _explain_line(line: PricedLine) -> str:
    return explain_head(line) + "\n" + explain_body(line)


def explain_head(line: PricedLine) -> str:
    """The explanation's first line: which act (its reference and day)."""
    version = line.tariff.version
    return (f"Line {line.act.line_id}: {version.code} {version.label_fr} / "
            f"{version.label_de}, {line.act.day.isoformat()}")


def explain_body(line: PricedLine) -> str:
    """The rest of the explanation: the computation, the same for identical acts."""
    act, tariff, amounts = line.act, line.tariff, line.amounts
    version = tariff.version
    row = tariff.key_letter_row
    lines = [
        f"  tariff version {version.version_id} (nomenclature {version.nomenclature}, "
        f"{tariff.category})",
    ]
    if tariff.cote is not None:
        lines.append(f"  key letter {version.key_letter}: {row.value} at index 100 × cote "
                     f"{tariff.cote} / 100 = {tariff.key_letter_value}")
    else:
        lines.append(f"  key letter {version.key_letter}: {tariff.key_letter_value} €")
    lines.append(f"  unit price: coefficient {version.coefficient} × "
                 f"{tariff.key_letter_value} = {tariff.unit_price}")
    lines.append(f"  base: {tariff.unit_price} × quantity {act.quantity} × "
                 f"{_number(amounts.percent)} % = {amounts.base}")
    for part in amounts.modifier_parts:
        payer = "patient only" if part.patient_only else "split like the act"
        lines.append(f"  modifier {part.code} {_number(part.percent)} %: {part.amount} "
                     f"({payer})")
    if amounts.first_class_percent is not None:
        lines.append(f"  first-class surcharge {_number(amounts.first_class_percent)} %: "
                     f"{amounts.first_class_amount} (patient only)")
    lines.append(f"  gross {amounts.gross} = insurer {amounts.insurer} + patient "
                 f"{amounts.patient}")
    if amounts.tiers_payant_amount:
        lines.append(f"  of which {amounts.tiers_payant_amount} moved from patient to "
                     "insurer (tiers payant social)")
    lines.extend(f"  why: {reason}: {describe_reason(reason)}" for reason in amounts.reasons)
    return "\n".join(lines)


def _explain_participation(line: ParticipationLine) -> str:
    kind = "inpatient" if line.kind == "inpatient" else "day hospital"
    lines = [
        f"Daily participation ({kind}) {line.year}: {line.first_day.isoformat()} to "
        f"{line.last_day.isoformat()}, {line.days + line.days_exempt} days",
        f"  charged: {line.days} days × {line.daily_amount} = {line.amount}",
    ]
    if line.days_exempt:
        lines.append(f"  not charged: {line.days_exempt} days")
    for period in line.exempt_periods:
        why = "; ".join(describe_reason(reason) for reason in period.reasons)
        lines.append(f"    {period.first_day.isoformat()} to {period.last_day.isoformat()} "
                     f"({period.days} days): {why}")
    return "\n".join(lines)

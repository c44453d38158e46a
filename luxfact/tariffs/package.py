"""A tariff package: a directory of CSV files, read and checked whole.

Every row is checked; every problem is reported as `file:line: reason` (line 1 is the header),
and a package with any problem is refused whole. See docs/tariffs.md for the files and columns.

Reading yields the rows of each catalogue table keyed by primary key, ready to be compared
with the database (`service.diff`) and applied.
"""

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from luxfact.kit.money import MAX_CENTS, from_cents
from luxfact.tariffs.catalogue import PARAMETERS

RULES_WITH_VALUE = {"max_per_day", "max_per_stay", "secondary_percent", "min_age", "max_age"}
RULES = RULES_WITH_VALUE | {"non_cumulable", "specialties", "stay_kinds"}
STAY_KINDS = {"inpatient", "day_hospital", "outpatient", "emergency"}
CATEGORIES = {"doctor", "nursing", "hospital", "supplement"}
_DECIMAL = re.compile(r"^-?\d{1,12}(\.\d{1,8})?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
# Control characters (NUL above all: PostgreSQL refuses it in text) have no place in any value.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# The nomenclature of hospitals' own prices (tariffs/service.py).
RESERVED_NOMENCLATURE = "HOSPITAL-OWN"
# Parameters that are percentages (at most 100) and counts (whole numbers); the others are
# euros (at most two decimals), but for the first-class surcharge (a percentage with no cap).
PERCENT_PARAMETERS = {"outpatient_rate_adult", "outpatient_rate_minor", "inpatient_rate"}
COUNT_PARAMETERS = {"annual_day_cap", "exemption_age", "childbirth_exempt_days"}
EURO_PARAMETERS = {"daily_participation_inpatient", "daily_participation_day_hospital"}
COUNT_RULES = {"max_per_day", "max_per_stay", "min_age", "max_age"}
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{0,19}$")

# file name -> (columns, required?)
FILES: dict[str, tuple[tuple[str, ...], bool]] = {
    # Required: a nomenclature's category decides who pays its acts (nothing is guessed).
    "nomenclatures.csv": (("nomenclature", "label_fr", "label_de", "category"), True),
    "key_letters.csv": (("key_letter", "basis", "value", "valid_from", "valid_to"), True),
    "cotes.csv": (("valid_from", "cote"), True),
    "acts.csv": (("nomenclature", "code", "label_fr", "label_de", "coefficient", "key_letter",
                  "valid_from", "valid_to"), True),
    "rules.csv": (("rule", "target", "others", "value", "valid_from", "valid_to"), False),
    "modifiers.csv": (("modifier", "label_fr", "label_de", "percent", "applies_to",
                       "patient_only", "valid_from", "valid_to"), False),
    "parameters.csv": (("parameter", "value", "valid_from", "valid_to"), False),
}

Key = tuple[Any, ...]
Row = dict[str, Any]


@dataclass
class Problem:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Package:
    """The rows of each table, keyed by primary key, as the package states them."""

    source: str
    sha256: str
    tables: dict[str, dict[Key, Row]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class _FileReader:
    """Checks one file's rows, collecting problems with their line numbers."""

    def __init__(self, name: str, problems: list[Problem]) -> None:
        self.name = name
        self.problems = problems
        self.line = 1
        self.unreadable = False  # refused whole: not UTF-8, not CSV, a bad header

    def refuse(self, reason: str) -> None:
        self.unreadable = True
        self.problem(reason)

    def problem(self, reason: str) -> None:
        self.problems.append(Problem(self.name, self.line, reason))

    def text(self, row: dict[str, str], column: str, *, required: bool = True,
             max_length: int = 300) -> str:
        value = (row.get(column) or "").strip()
        if required and not value:
            self.problem(f"{column} is empty")
        elif len(value) > max_length:
            self.problem(f"{column} is longer than {max_length} characters")
        return value

    def code(self, row: dict[str, str], column: str, max_length: int = 20) -> str:
        value = self.text(row, column, max_length=max_length)
        if value and not _CODE.match(value):
            self.problem(f"{column} {value!r} is not a code (A-Z, 0-9, '_.-')")
        return value

    def decimal(self, row: dict[str, str], column: str, *, positive: bool = True,
                required: bool = True) -> Decimal | None:
        raw = (row.get(column) or "").strip()
        if not raw:
            if required:
                self.problem(f"{column} is empty")
            return None
        if not _DECIMAL.match(raw):
            if _NUMBER.match(raw):
                self.problem(f"{column} {raw!r} has too many digits (at most 12 before the "
                             "dot and 8 after)")
            else:
                self.problem(f"{column} {raw!r} is not a decimal number (digits and a dot)")
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            self.problem(f"{column} {raw!r} is not a decimal number")
            return None
        if positive and value <= 0:
            self.problem(f"{column} must be greater than zero")
        return value

    def whole(self, column: str, value: Decimal | None) -> None:
        if value is not None and value != value.to_integral_value():
            self.problem(f"{column} {value} must be a whole number")

    def day(self, row: dict[str, str], column: str, *, required: bool = True) -> date | None:
        raw = (row.get(column) or "").strip()
        if not raw:
            if required:
                self.problem(f"{column} is empty")
            return None
        try:
            if not re.match(r"^\d{4}-\d{2}-\d{2}$", raw):
                raise ValueError
            return date.fromisoformat(raw)
        except ValueError:
            self.problem(f"{column} {raw!r} is not a date (YYYY-MM-DD)")
            return None

    def period(self, row: dict[str, str]) -> tuple[date | None, date | None]:
        start = self.day(row, "valid_from")
        end = self.day(row, "valid_to", required=False)
        if start and end and end < start:
            self.problem(f"valid_to {end} is before valid_from {start}")
        return start, end


def _rows(path: Path, columns: tuple[str, ...], reader: _FileReader,
          progress: Callable[[int], None] | None) -> Iterator[dict[str, str]]:
    """The file's rows as dictionaries. A file that cannot be read is one problem at the
    line where reading stopped, and the other files are still checked."""
    data = path.read_bytes()
    # A spreadsheet's "CSV UTF-8" starts with a byte-order mark: read as nothing.
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        reader.line = data.count(b"\n", 0, at) + 1
        reader.refuse(f"not UTF-8 text: byte 0x{data[at]:02x} cannot be decoded "
                      "(save the file as UTF-8)")
        return
    rows = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in rows.fieldnames or ()]
        reader.line = 1
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            reader.refuse(f"column(s) {', '.join(twice)} appear more than once in the header")
            return
        missing = [c for c in columns if c not in header]
        if missing:
            reader.refuse(f"missing column(s) {', '.join(missing)}; expected {','.join(columns)}")
            return
        for count, row in enumerate(rows, 1):
            reader.line = rows.line_num
            if None in row:
                reader.problem("more values than columns")
                continue
            if None in row.values():
                reader.problem("fewer values than columns")
                continue
            for column, value in row.items():
                if column and _CONTROL.search(value):
                    reader.problem(f"{column.strip()} contains a control character")
            yield {k.strip(): v for k, v in row.items() if k}
            if progress and count % 5000 == 0:
                progress(5000)
    except csv.Error as exc:
        reader.line = rows.line_num
        reader.refuse(f"not valid CSV: {exc}")


def _check_overlaps(reader: _FileReader, periods: dict[Key, list[tuple[date, date | None, int]]],
                    what: str) -> None:
    for key, spans in periods.items():
        spans.sort(key=lambda s: s[0])
        # Against the furthest end of all the rows before, not only the one just before: a
        # row without end overlaps every later one, and each is listed in one report.
        furthest: date | None = spans[0][1]
        furthest_line = spans[0][2]
        for start, end, line in spans[1:]:
            if furthest is None or start <= furthest:
                reader.line = line
                name = "/".join(str(k) for k in key)
                reader.problem(f"{what} {name}: validity overlaps the one of line "
                               f"{furthest_line} (which ends {furthest or 'never'})")
            if furthest is not None and (end is None or end > furthest):
                furthest, furthest_line = end, line


class _DatedRows:
    """Rows with a validity, keyed by (identity…, valid_from); overlaps checked at the end."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.rows: dict[Key, Row] = {}
        self.spans: dict[Key, list[tuple[date, date | None, int]]] = {}
        self.reader: _FileReader | None = None

    def add(self, r: _FileReader, identity: Key, start: date, end: date | None,
            row: Row) -> None:
        self.reader = r
        key = (*identity, start)
        if key in self.rows:
            r.problem(f"{self.what} {'/'.join(map(str, identity))} from {start} is listed twice")
        self.rows[key] = {**row, "valid_from": start, "valid_to": end}
        self.spans.setdefault(identity, []).append((start, end, r.line))

    def finish(self) -> dict[Key, Row]:
        if self.reader:
            _check_overlaps(self.reader, self.spans, self.what)
        return self.rows


def count_rows(directory: Path) -> int:
    total = 0
    for name in FILES:
        path = directory / name
        if path.is_file():
            with path.open("rb") as handle:
                total += max(sum(1 for _ in handle) - 1, 0)
    return total


def read_package(directory: Path, progress: Callable[[int], None] | None = None) -> Package:
    problems: list[Problem] = []
    digest = hashlib.sha256()
    if not directory.is_dir():
        return Package(str(directory), "", problems=[Problem(str(directory), 0, "not a directory")])
    for name, (_, required) in FILES.items():
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
        elif required:
            problems.append(Problem(name, 0, "file missing from the package"))
    package = Package(str(directory), digest.hexdigest(), problems=problems)
    if problems:
        return package
    _read_all(directory, package, progress)
    return package


def _read_all(directory: Path, package: Package, progress: Callable[[int], None] | None) -> None:
    problems = package.problems
    tables = package.tables

    def each(name: str) -> Iterator[tuple[_FileReader, dict[str, str]]]:
        path = directory / name
        if not path.is_file():
            return
        reader = _FileReader(name, problems)
        for row in _rows(path, FILES[name][0], reader, progress):
            yield reader, row
        if reader.unreadable:
            unreadable.add(name)

    # Files refused whole: what refers to them is not checked against them, so that one
    # unreadable file is one problem, not one more on every row that names its codes.
    unreadable: set[str] = set()

    nomenclatures: dict[Key, Row] = {}
    for r, row in each("nomenclatures.csv"):
        code = r.code(row, "nomenclature")
        if code == RESERVED_NOMENCLATURE:
            r.problem(f"nomenclature {code} is reserved for hospitals' own prices")
        category = r.text(row, "category")
        if category and category not in CATEGORIES:
            r.problem(f"category {category!r} is not one of {', '.join(sorted(CATEGORIES))}")
        if (code,) in nomenclatures:
            r.problem(f"nomenclature {code} is listed twice")
        nomenclatures[(code,)] = {"code": code,
                                  "label_fr": r.text(row, "label_fr", max_length=200),
                                  "label_de": r.text(row, "label_de", required=False,
                                                     max_length=200),
                                  "category": category}
    tables["tariff_nomenclatures"] = nomenclatures

    letters = _DatedRows("key letter")
    for r, row in each("key_letters.csv"):
        letter = r.code(row, "key_letter", max_length=10)
        basis = r.text(row, "basis")
        if basis and basis not in ("eur", "index100"):
            r.problem(f"basis {basis!r} must be 'eur' or 'index100'")
        value = r.decimal(row, "value")
        start, end = r.period(row)
        if start:
            letters.add(r, (letter,), start, end,
                        {"key_letter": letter, "basis": basis, "value": value})
    tables["tariff_key_letters"] = letters.finish()
    known_letters = {k[0] for k in letters.rows}

    cotes: dict[Key, Row] = {}
    for r, row in each("cotes.csv"):
        start = r.day(row, "valid_from")
        cote = r.decimal(row, "cote")
        if start:
            if (start,) in cotes:
                r.problem(f"a cote from {start} is listed twice")
            cotes[(start,)] = {"valid_from": start, "cote": cote}
    tables["tariff_cotes"] = cotes

    acts = _DatedRows("act")
    for r, row in each("acts.csv"):
        nomenclature = r.code(row, "nomenclature")
        if nomenclature and (nomenclature,) not in nomenclatures and (
                "nomenclatures.csv" not in unreadable):
            r.problem(f"unknown nomenclature {nomenclature!r} (not in nomenclatures.csv)")
        code = r.code(row, "code")
        letter = r.code(row, "key_letter", max_length=10)
        if letter and letter not in known_letters and "key_letters.csv" not in unreadable:
            r.problem(f"unknown key letter {letter!r} (not in key_letters.csv)")
        coefficient = r.decimal(row, "coefficient")
        start, end = r.period(row)
        if start and code:
            acts.add(r, (code,), start, end, {
                "code": code, "nomenclature": nomenclature, "label_fr": r.text(row, "label_fr"),
                "label_de": r.text(row, "label_de", required=False),
                "coefficient": coefficient, "key_letter": letter,
            })
    tables["tariff_acts"] = acts.finish()
    known_codes = {k[0] for k in acts.rows}

    def check_targets(r: _FileReader, column: str, values: list[str]) -> None:
        for value in values:
            if value == "*":
                continue
            if value.startswith("@"):
                if (value[1:],) not in nomenclatures and (
                        "nomenclatures.csv" not in unreadable):
                    r.problem(f"{column}: unknown nomenclature {value[1:]!r}")
            elif value not in known_codes and "acts.csv" not in unreadable:
                r.problem(f"{column}: unknown act code {value!r}")

    rules = _DatedRows("rule")
    for r, row in each("rules.csv"):
        rule = r.text(row, "rule")
        if rule and rule not in RULES:
            r.problem(f"unknown rule {rule!r}; known: {', '.join(sorted(RULES))}")
        target = r.text(row, "target", max_length=30)
        if len(row.get("others") or "") > 1000:
            r.problem("others is longer than 1000 characters")
        check_targets(r, "target", [target] if target else [])
        others = [o.strip() for o in (row.get("others") or "").split("|") if o.strip()]
        if rule == "non_cumulable":
            if not others:
                r.problem("others: non_cumulable needs the codes it excludes")
            check_targets(r, "others", others)
        if rule == "specialties" and not others:
            r.problem("others: specialties needs the specialties allowed")
        if rule == "stay_kinds" and (not others or set(others) - STAY_KINDS):
            r.problem(f"others: stay_kinds needs stay kinds among {', '.join(sorted(STAY_KINDS))}")
        value = r.decimal(row, "value", required=rule in RULES_WITH_VALUE)
        if rule in COUNT_RULES:
            r.whole("value", value)
        if rule == "secondary_percent" and value is not None and value > 100:
            r.problem("value: a secondary-act percentage is at most 100")
        start, end = r.period(row)
        if start and rule and target:
            rules.add(r, (rule, target), start, end, {
                "rule": rule, "target": target, "others": "|".join(others), "value": value})
    tables["tariff_rules"] = rules.finish()

    modifiers = _DatedRows("modifier")
    for r, row in each("modifiers.csv"):
        code = r.code(row, "modifier", max_length=10)
        percent = r.decimal(row, "percent", positive=False)
        if percent is not None and percent <= -100:
            r.problem("percent: a reduction cannot reach -100 %")
        applies = [a.strip() for a in (row.get("applies_to") or "").split("|") if a.strip()]
        if not applies:
            r.problem("applies_to is empty (use * for every act)")
        if len(row.get("applies_to") or "") > 1000:
            r.problem("applies_to is longer than 1000 characters")
        check_targets(r, "applies_to", applies)
        flag = (row.get("patient_only") or "").strip().lower()
        if flag not in ("true", "false", ""):
            r.problem(f"patient_only {flag!r} must be true or false")
        start, end = r.period(row)
        if start and code:
            modifiers.add(r, (code,), start, end, {
                "code": code, "label_fr": r.text(row, "label_fr", max_length=200),
                "label_de": r.text(row, "label_de", required=False, max_length=200),
                "percent": percent, "applies_to": "|".join(applies),
                "patient_only": flag == "true",
            })
    tables["tariff_modifiers"] = modifiers.finish()

    parameters = _DatedRows("parameter")
    for r, row in each("parameters.csv"):
        name = r.text(row, "parameter", max_length=60)
        if name and name not in PARAMETERS:
            r.problem(f"unknown parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}")
        value = r.decimal(row, "value", positive=False)
        if value is not None and value < 0:
            r.problem("value must not be negative")
        elif name in PERCENT_PARAMETERS and value is not None and value > 100:
            r.problem(f"value {value}: {name} is a percentage, at most 100")
        elif name in COUNT_PARAMETERS:
            r.whole("value", value)
        elif name in EURO_PARAMETERS and value is not None and value != round(value, 2):
            r.problem(f"value {value}: {name} is an amount in euros, at most 2 decimals")
        start, end = r.period(row)
        if start and name:
            parameters.add(r, (name,), start, end, {"name": name, "value": value})
    tables["tariff_parameters"] = parameters.finish()


HOSPITAL_PRICE_COLUMNS = ("code", "label_fr", "label_de", "label_en", "amount", "valid_from",
                          "valid_to")


def read_hospital_prices(path: Path) -> tuple[list[Row], list[Problem]]:
    """A hospital's own price list (comfort items, single-room supplement): one CSV file."""
    problems: list[Problem] = []
    if not path.is_file():
        return [], [Problem(path.name, 0, "file not found")]
    reader = _FileReader(path.name, problems)
    prices = _DatedRows("price")
    for row in _rows(path, HOSPITAL_PRICE_COLUMNS, reader, None):
        code = reader.code(row, "code")
        amount = reader.decimal(row, "amount", positive=False)
        if amount is not None and (amount < 0 or amount != amount.quantize(Decimal("0.01"))):
            reader.problem("amount must be a non-negative amount in euros with 2 decimals")
            amount = None
        elif amount is not None and amount * 100 > MAX_CENTS:
            reader.problem(f"amount is over the most a line can bill "
                           f"({from_cents(MAX_CENTS)} €)")
            amount = None
        start, end = reader.period(row)
        if code and start and amount is not None:
            prices.add(reader, (code,), start, end, {
                "code": code, "label_fr": reader.text(row, "label_fr"),
                "label_de": reader.text(row, "label_de", required=False),
                "label_en": reader.text(row, "label_en", required=False),
                "amount_cents": int(amount * 100),
            })
    return list(prices.finish().values()), problems

"""Property tests of the pure parsers and the pricing engine: what arbitrary input may do.

Each property is bounded (`max_examples=200`) and runs in a few seconds; none needs the
database.
"""

import csv
import io
import shutil
import string
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import SimpleNamespace

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from luxfact.hl7 import ack, parse
from luxfact.patients import matricule as mat
from luxfact.tariffs import pricing
from luxfact.tariffs.catalogue import TariffSnapshot
from luxfact.tariffs.package import FILES, Package, read_package
from luxfact.tariffs.service import build_snapshot
from tests.hl7 import messages as m

TODAY = date(2026, 11, 26)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEMO = Path(pricing.__file__).resolve().parent / "demo"
CENT = Decimal("0.01")


# --- the matricule ------------------------------------------------------------------------

@st.composite
def first_eleven(draw: st.DrawFn) -> str:
    """A birth date (month or day 00 when unknown) and a 3-digit sequence."""
    born = draw(st.dates(date(1850, 1, 1), TODAY))
    month = draw(st.sampled_from([born.month, born.month, 0]))
    day = draw(st.sampled_from([born.day, born.day, 0])) if month else draw(
        st.sampled_from([born.day, 0]))
    return f"{born.year:04d}{month:02d}{day:02d}{draw(st.integers(0, 999)):03d}"


@FAST
@given(first_eleven())
def test_every_completed_matricule_parses(eleven: str) -> None:
    number = mat.complete(eleven)
    assert len(number) == 13
    assert mat.parse(number, today=TODAY).number == number
    assert mat.parse(f"{number[:4]} {number[4:8]} {number[8:]}", today=TODAY).number == number


@FAST
@given(first_eleven(), st.integers(0, 12), st.integers(1, 9))
def test_one_mistyped_digit_is_refused(eleven: str, position: int, shift: int) -> None:
    number = mat.complete(eleven)
    digit = str((int(number[position]) + shift) % 10)
    typo = number[:position] + digit + number[position + 1:]
    assert typo != number
    try:
        mat.parse(typo, today=TODAY)
    except mat.InvalidMatricule:
        return
    raise AssertionError(f"{typo} (from {number}) was accepted")


@FAST
@given(st.text() | st.text(alphabet="0123456789 ", max_size=20)
       | st.text(alphabet=string.digits + "\uff10\uff11\u0661\u00b2 \x00", max_size=15))
def test_any_text_is_a_matricule_or_its_own_error(value: str) -> None:
    try:
        parsed = mat.parse(value, today=TODAY)
    except mat.InvalidMatricule:
        pass
    else:
        assert parsed.number.isascii() and len(parsed.number) == 13
    assert isinstance(mat.is_legacy(value), bool)


# --- the HL7 parser ------------------------------------------------------------------------

HEADER = b"MSH|^~\\&|HIS|NORDHIS|LUXFACT|LUX|20260302080000||ADT^A01^ADT_A01|P1|P|2.5\r"
HL7_BYTES = (st.binary(max_size=600)
             | st.builds(lambda tail: HEADER + tail, st.binary(max_size=400))
             | st.builds(lambda tail: HEADER + tail.encode("utf-8", "surrogatepass"),
                         st.text(alphabet=st.characters(blacklist_categories=["Cs"])
                                 | st.sampled_from(list("|^~\\&\r\n")), max_size=300)))


def _read_and_interpret(raw: bytes) -> None:
    """Only the module's own errors: Rejected (AR) from reading, Refused (AE) after."""
    try:
        parsed = parse.read(raw)
    except parse.Rejected as exc:
        ack.build(exc.header, ack.Outcome("AR", exc.reason, exc.code), "X", _now())
        return
    try:
        parse.interpret(parsed, TODAY)
    except parse.Refused as exc:
        ack.build(parsed.header, ack.Outcome("AE", exc.reason, exc.code, exc.location),
                  "X", _now())


def _now() -> datetime:
    return datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@FAST
@given(HL7_BYTES)
def test_any_bytes_fail_only_as_the_parsers_own_errors(raw: bytes) -> None:
    _read_and_interpret(raw)


@FAST
@given(st.text(max_size=300))
def test_any_text_fails_only_as_the_parsers_own_errors(text: str) -> None:
    _read_and_interpret(text.encode("utf-8", "surrogatepass"))


NAME_CHARS = st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"],
                           blacklist_characters="\u0085\x1c\x1d\x1e\x1f")
NAME = st.text(alphabet=NAME_CHARS | st.sampled_from(list("|^~\\&")), min_size=1,
               max_size=40).map(lambda s: " ".join(s.split())).filter(
    lambda s: s not in ("", '""'))


@FAST
@given(NAME, NAME)
def test_an_escaped_name_round_trips_through_an_a01(family: str, given_name: str) -> None:
    header = parse.Header()
    pid = (f"PID|1||1990093012358^^^CNS^NN||{ack.escape(family, header)}^"
           f"{ack.escape(given_name, header)}||19800101|F")
    raw = m.message(m.msh("ADT^A01", "RT1"), m.evn("A01", "20260302080000"), pid,
                    m.pv1("V1", admit="20260302080000"))
    event = parse.interpret(parse.read(raw), TODAY)
    assert event.patient is not None
    # Field values are read stripped: the round trip is exact up to outer whitespace.
    assert event.patient.values.get("family_name", "") == family.strip()
    assert event.patient.values.get("given_name", "") == given_name.strip()


# --- the tariff package -----------------------------------------------------------------------

@cache
def _demo_rows() -> dict[str, list[list[str]]]:
    return {name: list(csv.reader(io.StringIO((DEMO / name).read_text("utf-8"))))
            for name in FILES if (DEMO / name).is_file()}


CELL = (st.text(max_size=30, alphabet=st.characters(blacklist_categories=["Cs"]))
        | st.sampled_from(["", " ", "-1", "0", "1e9", "99999999999999.999999999",
                           "2019-02-30", "2200-01-01", "1850-01-01", "NaN", "Infinity",
                           "\x00", '"', ",", "\n", "@MED|@TECH", "C1|C1", "MED", "ZZZ"]))


@FAST
@given(st.data(), CELL, st.booleans())
def test_one_mutated_cell_gives_a_package_or_problems_with_file_and_line(
    data: st.DataObject, cell: str, quoted: bool
) -> None:
    rows = _demo_rows()
    name = data.draw(st.sampled_from(sorted(rows)))
    table = [list(r) for r in rows[name]]
    line = data.draw(st.integers(0, len(table) - 1))
    column = data.draw(st.integers(0, len(table[line]) - 1))
    table[line][column] = cell
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "package"
        shutil.copytree(DEMO, directory)
        out = io.StringIO()
        if quoted:  # valid CSV carrying a hostile value
            csv.writer(out, lineterminator="\n").writerows(table)
        else:  # the cell pasted as it is: it may break the CSV itself
            out.write("\n".join(",".join(r) for r in table) + "\n")
        (directory / name).write_text(out.getvalue(), encoding="utf-8")
        package = read_package(directory)
    assert isinstance(package, Package)
    event("refused with problems" if package.problems else "read as a package")
    for problem in package.problems:
        assert problem.file in FILES, problem
        assert isinstance(problem.line, int) and problem.line >= 1, problem
        assert problem.reason and str(problem).startswith(f"{problem.file}:{problem.line}: ")
    if not package.problems:
        assert package.tables


# --- the pricing engine -----------------------------------------------------------------------

@cache
def demo_snapshot() -> TariffSnapshot:
    package = read_package(DEMO)
    assert not package.problems
    return build_snapshot({table: [SimpleNamespace(**row) for row in rows.values()]
                           for table, rows in package.tables.items()})


def _applicable(snapshot: TariffSnapshot, code: str, day: date) -> list[str]:
    nomenclature = next(v.nomenclature for v in snapshot.acts[code]
                        if v.valid_from <= day and (v.valid_to is None or day <= v.valid_to))
    found = []
    for modifier, versions in snapshot.modifiers.items():
        for v in versions:
            if (v.valid_from <= day and (v.valid_to is None or day <= v.valid_to)
                    and ("*" in v.applies_to or f"@{nomenclature}" in v.applies_to
                         or code in v.applies_to)):
                found.append(modifier)
    return sorted(set(found))


def _valid_on(snapshot: TariffSnapshot, code: str, day: date) -> bool:
    return any(v.valid_from <= day and (v.valid_to is None or day <= v.valid_to)
               for v in snapshot.acts[code])


@st.composite
def priced_inputs(draw: st.DrawFn) -> tuple[pricing.StayInfo, pricing.PatientInfo,
                                            pricing.ActInput]:
    snapshot = demo_snapshot()
    code = draw(st.sampled_from(sorted(snapshot.acts)))
    day = draw(st.dates(date(2019, 1, 1), date(2026, 12, 31)))
    assume(_valid_on(snapshot, code, day))
    kind = draw(st.sampled_from(["inpatient", "day_hospital", "outpatient", "emergency"]))
    admitted = day - timedelta(days=draw(st.integers(0, 20)))
    discharged = None if draw(st.booleans()) else day + timedelta(days=draw(st.integers(0, 20)))
    stay = pricing.StayInfo(kind, admitted, discharged,
                            childbirth=draw(st.booleans()), psychiatric=draw(st.booleans()))
    birth = draw(st.dates(date(1920, 1, 1), admitted))
    modifiers = draw(st.lists(st.sampled_from(_applicable(snapshot, code, day) or [""]),
                              max_size=3, unique=True))
    act = pricing.ActInput("L1", code, day, quantity=draw(st.integers(1, 99)),
                           modifiers=tuple(x for x in modifiers if x),
                           first_class=draw(st.booleans()))
    return stay, pricing.PatientInfo(birth), act


def _two_decimals(amount: Decimal) -> bool:
    return isinstance(amount, Decimal) and amount == amount.quantize(CENT) and \
        amount.as_tuple().exponent == -2


@FAST
@given(priced_inputs())
def test_priced_amounts_are_cents_that_add_up(
    inputs: tuple[pricing.StayInfo, pricing.PatientInfo, pricing.ActInput]
) -> None:
    stay, patient, act = inputs
    line = pricing.price_act(demo_snapshot(), stay, patient, act)
    for amount in (line.gross, line.insurer, line.patient):
        assert _two_decimals(amount), (amount, line)
        assert amount >= 0, line
    assert line.insurer + line.patient == line.gross, line
    assert line.gross > 0

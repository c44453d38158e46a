"""Tariff packages: every kind of bad row refused with file:line: reason."""

import shutil
from pathlib import Path

import pytest

from luxfact.cli.tariffs import DEMO_PACKAGE
from luxfact.tariffs.package import read_hospital_prices, read_package


@pytest.fixture
def package(tmp_path: Path) -> Path:
    target = tmp_path / "pkg"
    shutil.copytree(DEMO_PACKAGE, target)
    return target


def append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def test_the_demo_package_is_valid_and_covers_2019_on() -> None:
    package = read_package(DEMO_PACKAGE)
    assert package.problems == []
    cotes = sorted(package.tables["tariff_cotes"])
    assert cotes[0][0].isoformat() <= "2019-01-01"
    assert all(row["valid_from"].isoformat() <= "2019-01-01"
               for row in package.tables["tariff_key_letters"].values())


@pytest.mark.parametrize(("file", "line", "reason"), [
    ("acts.csv", "MED,X1,Acte,,1.00,Q,2019-01-01,", "unknown key letter 'Q'"),
    ("acts.csv", "MED,X2,Acte,,abc,M,2019-01-01,", "coefficient 'abc' is not a decimal"),
    ("acts.csv", "MED,X3,Acte,,1,5,M,2019-01-01,", "more values than columns"),
    ("acts.csv", "MED,X4,Acte,,1.00,M,2019-02-30,", "valid_from '2019-02-30' is not a date"),
    ("acts.csv", "MED,X5,Acte,,1.00,M,2020-01-01,2019-01-01", "is before valid_from"),
    ("acts.csv", "MED,X6,Acte,,-1.00,M,2019-01-01,", "must be greater than zero"),
    ("acts.csv", "ZZZ,X7,Acte,,1.00,M,2019-01-01,", "unknown nomenclature 'ZZZ'"),
    ("acts.csv", "MED,C2,Visite,,16.20,M,2024-01-01,", "validity overlaps"),
    ("acts.csv", "MED,X8,,,1.00,M,2019-01-01,", "label_fr is empty"),
    ("acts.csv", "MED,X9,Acte,,1e3,M,2019-01-01,", "is not a decimal number"),
    ("key_letters.csv", "Z,percent,1.0,2019-01-01,", "basis 'percent'"),
    ("key_letters.csv", "M,index100,0.6,2030-01-01,", "validity overlaps"),
    ("cotes.csv", "2020-01-01,900.00", "listed twice"),
    ("cotes.csv", "2030-01-01,1,000.00", "more values than columns"),
    ("rules.csv", "max_per_year,C1,,1,2019-01-01,", "unknown rule 'max_per_year'"),
    ("rules.csv", "non_cumulable,C1,NOPE,,2030-01-01,", "unknown act code 'NOPE'"),
    ("rules.csv", "max_per_day,C2,,,2019-01-01,", "value is empty"),
    ("modifiers.csv", "X,Test,,10,@NOPE,false,2019-01-01,", "unknown nomenclature 'NOPE'"),
    ("modifiers.csv", "Y,Test,,10,*,maybe,2019-01-01,", "patient_only 'maybe'"),
    ("parameters.csv", "happiness,1,2019-01-01,", "unknown parameter 'happiness'"),
    ("parameters.csv", "annual_day_cap,31,2024-01-01,", "validity overlaps"),
    ("acts.csv", "MED,X10,Acte,,99999999999999,M,2019-01-01,", "has too many digits"),
    ("acts.csv", "MED,X11,Ac\x00te,,1.00,M,2019-01-01,", "label_fr contains a control"),
    ("acts.csv", "MED,X12,Acte,,1.00", "fewer values than columns"),
    ("rules.csv", "specialties,C2,internal\x00|surgery,,2030-01-01,",
     "others contains a control character"),
    ("nomenclatures.csv", "HOSPITAL-OWN,Propres,,supplement", "reserved for hospitals' own"),
    ("rules.csv", "max_per_day,C2,,1.5,2030-01-01,", "value 1.5 must be a whole number"),
    ("parameters.csv", "inpatient_rate,150,2030-01-01,", "a percentage, at most 100"),
    ("parameters.csv", "annual_day_cap,30.5,2030-01-01,", "must be a whole number"),
    ("parameters.csv", "daily_participation_inpatient,19.925,2030-01-01,",
     "an amount in euros, at most 2 decimals"),
])
def test_each_bad_row_is_reported_with_file_and_line(
    package: Path, file: str, line: str, reason: str
) -> None:
    path = package / file
    lines_before = len(path.read_text(encoding="utf-8").splitlines())
    append(path, line)
    result = read_package(package)
    assert len(result.problems) >= 1
    problem = next(p for p in result.problems if reason in p.reason)
    assert problem.file == file
    assert problem.line == lines_before + 1
    assert str(problem).startswith(f"{file}:{lines_before + 1}: ")


def test_every_problem_is_listed_not_just_the_first(package: Path) -> None:
    append(package / "acts.csv", "MED,X1,Acte,,1.00,Q,2019-01-01,")
    append(package / "cotes.csv", "yesterday,900")
    append(package / "parameters.csv", "happiness,1,2019-01-01,")
    problems = read_package(package).problems
    assert {p.file for p in problems} == {"acts.csv", "cotes.csv", "parameters.csv"}


def test_a_row_without_end_overlaps_every_later_one_and_each_is_listed(
        package: Path) -> None:
    """Sorted by start, a long row is not always next to the rows it overlaps: each later
    row is checked against the furthest end before it, so one report lists them all."""
    path = package / "acts.csv"
    first = len(path.read_text(encoding="utf-8").splitlines()) + 1
    for line in ("MED,OV1,Acte,,1.00,M,2020-01-01,",            # never ends
                 "MED,OV1,Acte,,1.00,M,2021-01-01,2021-06-30",  # inside it
                 "MED,OV1,Acte,,1.00,M,2022-01-01,2022-12-31"):  # inside it too
        append(path, line)
    problems = [p for p in read_package(package).problems if "OV1" in p.reason]
    assert [(p.line, "overlaps the one of line " + str(first) in p.reason)
            for p in problems] == [(first + 1, True), (first + 2, True)]


def test_missing_file_and_missing_column(package: Path) -> None:
    (package / "cotes.csv").unlink()
    assert "file missing" in read_package(package).problems[0].reason
    (package / "cotes.csv").write_text("valid_from,index\n2019-01-01,900\n", encoding="utf-8")
    problem = read_package(package).problems[0]
    assert problem.file == "cotes.csv" and problem.line == 1 and "cote" in problem.reason


def test_not_utf8_is_refused_at_its_line_and_other_files_still_checked(package: Path) -> None:
    before = (package / "acts.csv").read_bytes()
    bad_line = "MED,X1,Acte \xe9,,1.00,M,2019-01-01,\n".encode("latin-1")
    (package / "acts.csv").write_bytes(before + bad_line)
    append(package / "cotes.csv", "yesterday,900")
    problems = read_package(package).problems
    unreadable = next(p for p in problems if "UTF-8" in p.reason)
    assert (unreadable.file, unreadable.line) == ("acts.csv", before.count(b"\n") + 1)
    assert "0xe9" in unreadable.reason
    assert any(p.file == "cotes.csv" and "not a date" in p.reason for p in problems)


def test_a_byte_order_mark_is_read_as_nothing(package: Path) -> None:
    plain = read_package(package)
    path = package / "acts.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a spreadsheet's "CSV UTF-8"
    marked = read_package(package)
    assert marked.problems == []
    assert marked.tables == plain.tables
    # A bad byte after the mark: its own line and value, the mark not counted in.
    before = path.read_bytes()
    path.write_bytes(before + "MED,X1,Acte \xe9,,1.00,M,2019-01-01,\n".encode("latin-1"))
    problem = read_package(package).problems[0]
    assert (problem.line, "0xe9" in problem.reason) == (before.count(b"\n") + 1, True)


def test_a_column_named_twice_is_refused(package: Path) -> None:
    path = package / "acts.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header + ",coefficient", *(r + ",25.5" for r in rows)]) + "\n",
                    encoding="utf-8")
    problems = read_package(package).problems
    assert [(p.file, p.line) for p in problems] == [("acts.csv", 1)]
    assert "coefficient appear more than once" in problems[0].reason


def test_a_package_without_nomenclatures_is_refused(package: Path) -> None:
    # Their categories decide who pays each act: without them nothing may be guessed.
    (package / "nomenclatures.csv").unlink()
    problem = read_package(package).problems[0]
    assert (problem.file, problem.reason) == ("nomenclatures.csv",
                                              "file missing from the package")


def test_hospital_prices(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("code,label_fr,label_de,label_en,amount,valid_from,valid_to\n"
                    "TV,Télévision,,,3.50,2019-01-01,\n"
                    "PARK,Parking,,,6.005,2019-01-01,\n"
                    "TV,Télévision,,,4.00,2020-01-01,\n", encoding="utf-8")
    rows, problems = read_hospital_prices(path)
    assert [(p.line, p.reason.split(" ")[0]) for p in problems] == [(3, "amount"), (4, "price")]
    assert rows[0]["amount_cents"] == 350


def test_a_hospital_price_over_what_a_line_holds_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("code,label_fr,label_de,label_en,amount,valid_from,valid_to\n"
                    "MAX,Maximum,,,21474836.47,2019-01-01,\n"
                    "OVER,Trop,,,21474836.48,2019-01-01,\n", encoding="utf-8")
    rows, problems = read_hospital_prices(path)
    assert [r["code"] for r in rows] == ["MAX"]
    assert [(p.line, "over the most a line can bill" in p.reason) for p in problems] == [
        (3, True)]

"""The tariff catalogue: dated look-ups, key-letter values scaled by the cote, unit prices."""

import uuid
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luxfact.tariffs.catalogue import (
    ActVersion,
    CatalogueError,
    CodeNotValidOnDate,
    Cote,
    KeyLetterValue,
    MissingCote,
    MissingKeyLetterValue,
    MissingParameter,
    Modifier,
    Nomenclature,
    Parameter,
    TariffSnapshot,
    UnknownCode,
    UnknownModifier,
    unit_price,
)
from luxfact.tariffs.models import TenantPrice
from luxfact.tariffs.repository import CATALOGUE
from luxfact.tariffs.service import TENANT_NOMENCLATURE, build_snapshot

D = Decimal
day = date.fromisoformat

# The cotes d'application of DOMAIN.md.
COTES = [Cote(day(start), D(cote)) for start, cote in [
    ("2018-08-01", "814.40"), ("2020-01-01", "834.76"), ("2021-10-01", "855.62"),
    ("2022-04-01", "877.01"), ("2023-02-01", "898.93"), ("2023-04-01", "921.40"),
    ("2023-09-01", "944.43"), ("2025-05-01", "968.04")]]


def nursing(code: str, coefficient: str, start: str = "2023-01-01",
            end: str | None = None) -> ActVersion:
    return ActVersion(day(start), day(end) if end else None, "NURS", code, f"soin {code}",
                      f"Pflege {code}", D(coefficient), "N")


def nursing_snapshot(**changes: object) -> TariffSnapshot:
    tables: dict[str, object] = {
        "nomenclatures": {"NURS": Nomenclature("NURS", "Soins", "Pflege", "nursing")},
        "acts": {code: [nursing(code, coefficient)] for code, coefficient in [
            ("N101", "2.55"), ("N104", "1.30"), ("N202", "5.50"), ("N205", "5.27")]},
        "key_letters": {"N": [KeyLetterValue(day("2023-01-01"), None, "N", "index100",
                                             D("0.80132"))]},
        "cotes": list(COTES),
    }
    tables.update(changes)
    return TariffSnapshot(**tables)  # type: ignore[arg-type]


# ------------------------------------------------------------------- key-letter values


def test_worked_example_of_the_published_protocol() -> None:
    snapshot = TariffSnapshot(
        key_letters={"X": [KeyLetterValue(day("2010-01-01"), None, "X", "index100",
                                          D("1.31287"))]},
        cotes=[Cote(day("2015-01-01"), D("775.17"))])
    value, cote, row = snapshot.key_letter_value("X", day("2016-06-30"))
    assert value == D("10.1770")
    assert str(value) == "10.1770"  # published with 4 decimals
    assert cote == D("775.17")
    assert row.value == D("1.31287")


def test_nursing_key_letter_at_cote_944_43() -> None:
    value, cote, _row = nursing_snapshot().key_letter_value("N", day("2023-09-01"))
    assert (value, cote) == (D("7.5679"), D("944.43"))


@pytest.mark.parametrize(("code", "price"), [
    ("N101", "19.30"), ("N104", "9.84"), ("N202", "41.62"), ("N205", "39.88")])
def test_nursing_unit_prices_of_the_domain(code: str, price: str) -> None:
    snapshot = nursing_snapshot()
    act = snapshot.act(code, day("2023-09-01"))
    value, _cote, _row = snapshot.key_letter_value(act.key_letter, day("2023-09-01"))
    assert unit_price(act.coefficient, value) == D(price)


def test_the_cote_switches_on_its_first_day() -> None:
    snapshot = nursing_snapshot()
    assert snapshot.cote(day("2023-08-31")) == D("921.40")
    assert snapshot.cote(day("2023-09-01")) == D("944.43")
    before = snapshot.key_letter_value("N", day("2023-08-31"))[0]
    assert before == D("7.3834")  # 0.80132 × 921.40 / 100 = 7.38336...
    assert snapshot.key_letter_value("N", day("2023-09-01"))[0] == D("7.5679")
    assert snapshot.cote(day("2025-04-30")) == D("944.43")
    assert snapshot.cote(day("2025-05-01")) == D("968.04")


def test_a_euro_key_letter_is_not_scaled() -> None:
    snapshot = TariffSnapshot(
        key_letters={"M": [KeyLetterValue(day("2023-01-01"), None, "M", "eur", D("5.1234"))]})
    assert snapshot.key_letter_value("M", day("2024-01-01"))[:2] == (D("5.1234"), None)


def test_unit_price_rounds_half_up_never_to_even() -> None:
    assert unit_price(D("2.5"), D("0.0100")) == D("0.03")  # 0.025: banker's would give 0.02
    assert unit_price(D("2.55"), D("7.5679")) == D("19.30")  # 19.298145
    assert unit_price(D("1"), D("0.0049")) == D("0.00")


def test_missing_cote_names_the_date() -> None:
    snapshot = nursing_snapshot(cotes=[Cote(day("2023-09-01"), D("944.43"))])
    with pytest.raises(MissingCote, match="2023-08-31"):
        snapshot.key_letter_value("N", day("2023-08-31"))


def test_missing_key_letter_value_names_the_letter_and_date() -> None:
    snapshot = nursing_snapshot()
    with pytest.raises(MissingKeyLetterValue, match=r"'N'.*2022-12-31"):
        snapshot.key_letter_value("N", day("2022-12-31"))
    with pytest.raises(MissingKeyLetterValue, match="'Q'"):
        snapshot.key_letter_value("Q", day("2024-01-01"))


# ------------------------------------------------------------------------ act look-ups


def test_a_version_applies_from_its_first_to_its_last_day() -> None:
    snapshot = nursing_snapshot(acts={"N101": [
        nursing("N101", "2.50", "2023-01-01", "2023-12-31"),
        nursing("N101", "2.55", "2024-01-01")]})
    assert snapshot.act("N101", day("2023-12-31")).coefficient == D("2.50")
    assert snapshot.act("N101", day("2024-01-01")).coefficient == D("2.55")
    assert snapshot.act("N101", day("2024-01-01")).version_id == "N101@2024-01-01"


def test_unknown_code() -> None:
    with pytest.raises(UnknownCode, match="'N999'") as caught:
        nursing_snapshot().act("N999", day("2024-01-01"))
    assert caught.value.field == "code"


def test_code_not_valid_on_date_lists_its_versions() -> None:
    snapshot = nursing_snapshot(acts={"N101": [
        nursing("N101", "2.50", "2023-01-01", "2023-06-30"),
        nursing("N101", "2.55", "2024-01-01", "2024-12-31")]})
    for when in ("2022-12-31", "2023-07-01", "2025-01-01"):
        with pytest.raises(CodeNotValidOnDate) as caught:
            snapshot.act("N101", day(when))
        message = str(caught.value)
        assert when in message
        assert "2023-01-01..2023-06-30" in message and "2024-01-01..2024-12-31" in message
        assert caught.value.field == "performed_at"


def test_missing_parameter_names_it_and_the_date() -> None:
    snapshot = TariffSnapshot(parameters={"annual_day_cap": [
        Parameter(day("2024-01-01"), None, "annual_day_cap", D(30))]})
    assert snapshot.parameter("annual_day_cap", day("2024-01-01")) == 30
    with pytest.raises(MissingParameter, match=r"'annual_day_cap'.*2023-12-31"):
        snapshot.parameter("annual_day_cap", day("2023-12-31"))
    with pytest.raises(MissingParameter, match="'inpatient_rate'"):
        snapshot.parameter("inpatient_rate", day("2024-01-01"))


def test_modifier_look_up() -> None:
    night = Modifier(day("2023-01-01"), day("2023-12-31"), "NUIT", "nuit", "Nacht", D(50),
                     ("*",), False)
    snapshot = TariffSnapshot(modifiers={"NUIT": [night]})
    assert snapshot.modifier("NUIT", day("2023-12-31")) is night
    with pytest.raises(UnknownModifier, match="2024-01-01"):
        snapshot.modifier("NUIT", day("2024-01-01"))
    with pytest.raises(UnknownModifier, match="'XX'"):
        snapshot.modifier("XX", day("2024-01-01"))


def test_category_defaults_to_the_hospital() -> None:
    snapshot = nursing_snapshot()
    assert snapshot.category(snapshot.act("N101", day("2024-01-01"))) == "nursing"
    orphan = ActVersion(day("2023-01-01"), None, "ZZZ", "Z1", "z", "z", D(1), "N")
    assert snapshot.category(orphan) == "hospital"


def test_derived_data_is_built_once() -> None:
    snapshot = nursing_snapshot()
    built = []

    def build(s: TariffSnapshot) -> list[int]:
        built.append(1)
        return [len(s.acts)]

    assert snapshot.derived("x", build) == [4]
    assert snapshot.derived("x", build) == [4]
    assert built == [1]


def test_catalogue_errors_carry_details() -> None:
    with pytest.raises(CatalogueError) as caught:
        nursing_snapshot().key_letter_value("N", day("2022-01-01"))
    assert caught.value.details == {"key_letter": "N", "date": "2022-01-01"}


# ------------------------------------------------------------------ validity properties


@given(lengths=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=5),
       gaps=st.lists(st.integers(min_value=0, max_value=30), min_size=5, max_size=5),
       open_ended=st.booleans())
def test_each_version_applies_exactly_on_its_days(lengths: list[int], gaps: list[int],
                                                   open_ended: bool) -> None:
    versions, start = [], day("2020-01-01")
    for i, length in enumerate(lengths):
        end = start + timedelta(length - 1)
        last = open_ended and i == len(lengths) - 1
        versions.append(nursing("N1", f"{i + 1}.00", start.isoformat(),
                                None if last else end.isoformat()))
        start = end + timedelta(1 + gaps[i])
    snapshot = nursing_snapshot(acts={"N1": versions})
    for version in versions:
        assert snapshot.act("N1", version.valid_from) is version
        if version.valid_to is None:
            assert snapshot.act("N1", date(2100, 1, 1)) is version
            continue
        assert snapshot.act("N1", version.valid_to) is version
        after = version.valid_to + timedelta(1)
        try:
            found = snapshot.act("N1", after)
        except CodeNotValidOnDate:
            continue
        assert found is not version and found.valid_from == after
    with pytest.raises(CodeNotValidOnDate):
        snapshot.act("N1", versions[0].valid_from - timedelta(1))


def test_a_hospitals_own_prices_stand_apart_from_the_national_tables() -> None:
    # A national euro key letter that changes, and a national code a hospital already sold
    # as its own item (its price list refuses national codes only when it is loaded).
    def national(**columns: object) -> SimpleNamespace:
        return SimpleNamespace(valid_to=None, label_fr="x", label_de="x", **columns)

    tables: dict[str, list[object]] = {name: [] for name in CATALOGUE}
    tables["tariff_key_letters"] = [
        SimpleNamespace(key_letter="EUR", basis="eur", value=D(value), valid_from=day(start),
                        valid_to=None if end is None else day(end))
        for start, end, value in (("2019-01-01", "2024-12-31", "1.0000"),
                                  ("2025-01-01", None, "1.0250"))]
    tables["tariff_acts"] = [
        national(code=code, valid_from=day("2019-01-01"), nomenclature="CP",
                 coefficient=D("10.00"), key_letter="EUR") for code in ("CP9", "TV")]
    own = [TenantPrice(tenant_id=uuid.uuid4(), code=code, valid_from=day("2015-01-01"),
                       label_fr=code, label_de=code, amount_cents=350)
           for code in ("PARK", "TV")]
    snapshot = build_snapshot(tables, own)

    def price(code: str, on: str) -> Decimal:
        act = snapshot.act(code, day(on))
        return unit_price(act.coefficient, snapshot.key_letter_value(act.key_letter, day(on))[0])

    assert price("CP9", "2025-06-01") == D("10.25")  # the national item follows its letter
    for code in ("PARK", "TV"):
        assert [price(code, on) for on in ("2016-06-01", "2025-06-01")] == [D("3.50")] * 2
    assert [v.nomenclature for v in snapshot.acts["TV"]] == [TENANT_NOMENCLATURE]

"""The pricing engine: exact prices, who pays what, daily participation, rule checks.

Every snapshot is built here from catalogue rows (no database). The doctors' key-letter
values are illustrative (M = 5.0000 €, so C1 at 11.54 costs 57.70 €, the GP consultation
price of DOMAIN.md); the nursing values are the published ones.
"""

import random
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, example, given, settings
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
    Rule,
    TariffSnapshot,
    UnknownCode,
)
from luxfact.tariffs.pricing import (
    ActInput,
    ParameterOutOfRange,
    PatientInfo,
    PricedLine,
    RuleViolation,
    StayInfo,
    age_on,
    check_rules,
    check_stay,
    describe_reason,
    price_act,
    price_stay,
)

D = Decimal
day = date.fromisoformat
START = day("2019-01-01")

COTES = [Cote(day(start), D(cote)) for start, cote in [
    ("2018-08-01", "814.40"), ("2020-01-01", "834.76"), ("2021-10-01", "855.62"),
    ("2022-04-01", "877.01"), ("2023-02-01", "898.93"), ("2023-04-01", "921.40"),
    ("2023-09-01", "944.43"), ("2025-05-01", "968.04")]]

# code: (nomenclature, coefficient, key letter)
ACTS = {
    "N101": ("NURS", "2.55", "N"), "N104": ("NURS", "1.30", "N"),
    "N202": ("NURS", "5.50", "N"), "N205": ("NURS", "5.27", "N"),
    "C1": ("MED", "11.54", "M"),     # 57.70
    "C2": ("MED", "10.00", "M"),     # 50.00
    "C52": ("MED", "12.80", "M"),    # 64.00
    "G1": ("MED", "10.00", "M"),     # geriatric, 65 and over
    "P1": ("MED", "10.00", "M"),     # paediatric, 17 at most
    "6G31": ("TECH", "20.00", "T"),  # 40.00
    "6G32": ("TECH", "15.00", "T"),  # 30.00
    "1D21": ("TECH", "10.00", "T"),  # 20.00
    "F20": ("HOSP", "100.00", "H"),  # 100.00
    "CP1": ("CP", "25.00", "S"),     # 25.00
}
PARAMETERS = {
    "daily_participation_inpatient": "19.92", "daily_participation_day_hospital": "9.96",
    "annual_day_cap": "30", "exemption_age": "18", "childbirth_exempt_days": "12",
    "outpatient_rate_adult": "88", "outpatient_rate_minor": "100", "inpatient_rate": "100",
    "first_class_surcharge_percent": "66",
}


def rule(kind: str, target: str, others: tuple[str, ...] = (), value: int | None = None,
         start: date = START, end: date | None = None) -> Rule:
    return Rule(start, end, kind, target, others, None if value is None else D(value))


def modifier(code: str, percent: int, applies_to: tuple[str, ...], patient_only: bool = False,
             end: date | None = None) -> Modifier:
    return Modifier(START, end, code, f"majoration {code}", f"Zuschlag {code}", D(percent),
                    applies_to, patient_only)


RULES = [
    rule("non_cumulable", "C1", ("C2",)),
    rule("max_per_day", "N101", value=2),
    rule("max_per_stay", "F20", value=1),
    rule("secondary_percent", "@TECH", value=50),
    rule("min_age", "G1", value=65),
    rule("max_age", "P1", value=17),
    rule("specialties", "F20", ("surgery", "internal_medicine")),
]
MODIFIERS = {
    "NUIT": [modifier("NUIT", 50, ("@MED", "@TECH"))],
    "CONF": [modifier("CONF", 20, ("*",), patient_only=True)],
    "RED": [modifier("RED", -30, ("@TECH",))],
    "OLD": [modifier("OLD", 10, ("*",), end=day("2022-12-31"))],
}


def parameters(**values: str) -> dict[str, list[Parameter]]:
    merged = {**PARAMETERS, **values}
    return {name: [Parameter(START, None, name, D(value))] for name, value in merged.items()}


def make_snapshot(**changes: object) -> TariffSnapshot:
    tables: dict[str, object] = {
        "nomenclatures": {code: Nomenclature(code, f"nomenclature {code}", code, category)
                          for code, category in [("MED", "doctor"), ("TECH", "doctor"),
                                                 ("NURS", "nursing"), ("HOSP", "hospital"),
                                                 ("CP", "supplement")]},
        "acts": {code: [ActVersion(START, None, nomenclature, code, f"acte {code}",
                                   f"Akt {code}", D(coefficient), letter)]
                 for code, (nomenclature, coefficient, letter) in ACTS.items()},
        "key_letters": {
            "N": [KeyLetterValue(START, None, "N", "index100", D("0.80132"))],
            "M": [KeyLetterValue(START, None, "M", "eur", D("5.0000"))],
            "T": [KeyLetterValue(START, None, "T", "eur", D("2.0000"))],
            "H": [KeyLetterValue(START, None, "H", "eur", D("1.0000"))],
            "S": [KeyLetterValue(START, None, "S", "eur", D("1.0000"))],
        },
        "cotes": list(COTES),
        "rules": list(RULES),
        "modifiers": dict(MODIFIERS),
        "parameters": parameters(),
    }
    tables.update(changes)
    return TariffSnapshot(**tables)  # type: ignore[arg-type]


SNAPSHOT = make_snapshot()
ADULT = PatientInfo(birth_date=day("1980-05-17"))
CHILD = PatientInfo(birth_date=day("2015-03-02"))
TODAY = day("2024-03-12")
OUTPATIENT = StayInfo("outpatient", TODAY, TODAY)
INPATIENT = StayInfo("inpatient", day("2024-03-10"), day("2024-03-20"))


def act(code: str, when: date = TODAY, line_id: str | None = None, **fields: object) -> ActInput:
    return ActInput(line_id=line_id or code, code=code, day=when, **fields)  # type: ignore[arg-type]


def price(code: str, stay: StayInfo = OUTPATIENT, patient: PatientInfo = ADULT,
          snapshot: TariffSnapshot = SNAPSHOT, **fields: object) -> PricedLine:
    when = fields.pop("when", stay.admitted)
    return price_act(snapshot, stay, patient, act(code, when, **fields))  # type: ignore[arg-type]


def amounts(line: PricedLine) -> tuple[str, str, str]:
    return str(line.gross), str(line.insurer), str(line.patient)


# -------------------------------------------------------------------------- the tariff


@pytest.mark.parametrize(("code", "unit"), [
    ("N101", "19.30"), ("N104", "9.84"), ("N202", "41.62"), ("N205", "39.88")])
def test_nursing_prices_of_the_domain(code: str, unit: str) -> None:
    line = price(code, StayInfo("outpatient", day("2023-09-01"), day("2023-09-01")))
    assert line.key_letter_value == D("7.5679")
    assert line.cote == D("944.43")
    assert line.unit_price == D(unit)
    assert amounts(line) == (unit, unit, "0.00")
    assert line.reasons == ("hospital_service_100",)
    assert line.category == "nursing"


def test_the_cote_in_force_on_the_day_of_the_act_is_used() -> None:
    before = price("N101", StayInfo("outpatient", day("2023-08-31"), day("2023-08-31")))
    after = price("N101", StayInfo("outpatient", day("2023-09-01"), day("2023-09-01")))
    assert (before.cote, before.key_letter_value, before.unit_price) == (
        D("921.40"), D("7.3834"), D("18.83"))
    assert (after.cote, after.key_letter_value, after.unit_price) == (
        D("944.43"), D("7.5679"), D("19.30"))


def test_a_priced_line_records_its_computation() -> None:
    line = price("N101", StayInfo("outpatient", day("2023-09-01"), day("2023-09-01")),
                 quantity=2, line_id="L7")
    assert line.line_id == "L7"
    assert line.code == "N101"
    assert line.version_id == "N101@2019-01-01"
    assert line.nomenclature == "NURS"
    assert (line.label_fr, line.label_de) == ("acte N101", "Akt N101")
    assert (line.key_letter, line.coefficient) == ("N", D("2.55"))
    assert line.day == day("2023-09-01")
    assert line.quantity == 2
    assert line.modifiers == ()
    assert line.percent == 100
    assert amounts(line) == ("38.60", "38.60", "0.00")
    record = line.as_record()
    assert record["gross"] == D("38.60") and record["version_id"] == "N101@2019-01-01"
    text = line.explain()
    for expected in ("N101@2019-01-01", "0.80132", "944.43", "7.5679", "2.55", "19.30",
                     "quantity 2", "gross 38.60 = insurer 38.60 + patient 0.00",
                     "hospital_service_100"):
        assert expected in text


def test_a_tariff_version_applies_from_its_first_day() -> None:
    versions = [
        ActVersion(START, day("2023-12-31"), "MED", "C1", "consultation", "Beratung",
                   D("11.00"), "M"),
        ActVersion(day("2024-01-01"), None, "MED", "C1", "consultation", "Beratung",
                   D("11.54"), "M"),
    ]
    snapshot = make_snapshot(acts={"C1": versions})
    old = price("C1", StayInfo("inpatient", day("2023-12-31"), None), snapshot=snapshot)
    new = price("C1", StayInfo("inpatient", day("2024-01-01"), None), snapshot=snapshot)
    assert (old.version_id, old.gross) == ("C1@2019-01-01", D("55.00"))
    assert (new.version_id, new.gross) == ("C1@2024-01-01", D("57.70"))


# --------------------------------------------------------------------- who pays what


def test_outpatient_doctor_act_adult_88_percent() -> None:
    line = price("C1")
    assert amounts(line) == ("57.70", "50.78", "6.92")  # 57.70 × 0.88 = 50.776
    assert line.reasons == ("outpatient_adult_88",)


def test_emergency_is_paid_like_outpatient() -> None:
    line = price("C1", StayInfo("emergency", TODAY, TODAY))
    assert amounts(line) == ("57.70", "50.78", "6.92")


def test_outpatient_doctor_act_minor_100_percent() -> None:
    line = price("C1", patient=CHILD)
    assert amounts(line) == ("57.70", "57.70", "0.00")
    assert line.reasons == ("outpatient_minor_100",)


def test_the_eighteenth_birthday_makes_an_adult() -> None:
    teenager = PatientInfo(birth_date=day("2006-03-12"))
    eve = price("C1", StayInfo("outpatient", day("2024-03-11"), None), patient=teenager)
    birthday = price("C1", StayInfo("outpatient", day("2024-03-12"), None), patient=teenager)
    assert eve.reasons == ("outpatient_minor_100",)
    assert birthday.reasons == ("outpatient_adult_88",)
    assert amounts(birthday) == ("57.70", "50.78", "6.92")


def test_age_in_whole_years() -> None:
    assert age_on(day("2006-03-12"), day("2024-03-11")) == 17
    assert age_on(day("2006-03-12"), day("2024-03-12")) == 18
    # Born on 29 February: a year older on 1 March in a common year.
    assert age_on(day("2008-02-29"), day("2026-02-28")) == 17
    assert age_on(day("2008-02-29"), day("2026-03-01")) == 18


@pytest.mark.parametrize("kind", ["inpatient", "day_hospital"])
def test_doctor_acts_in_hospital_at_the_inpatient_rate(kind: str) -> None:
    line = price("C1", StayInfo(kind, TODAY, None))
    assert amounts(line) == ("57.70", "57.70", "0.00")
    assert line.reasons == ("inpatient_100",)


def test_rates_are_parameters_not_constants() -> None:
    snapshot = make_snapshot(parameters=parameters(inpatient_rate="95",
                                                   outpatient_rate_adult="80"))
    inpatient = price("C1", StayInfo("inpatient", TODAY, None), snapshot=snapshot)
    assert amounts(inpatient) == ("57.70", "54.82", "2.88")  # 54.815 rounded half up
    assert inpatient.reasons == ("inpatient_95",)
    assert amounts(price("C1", snapshot=snapshot)) == ("57.70", "46.16", "11.54")


def test_insurer_share_rounds_half_up() -> None:
    snapshot = make_snapshot(
        parameters=parameters(outpatient_rate_adult="87.5"),
        acts={"X1": [ActVersion(START, None, "MED", "X1", "x", "x", D("0.024"), "M")]})
    line = price("X1", snapshot=snapshot)  # unit 0.12; 0.12 × 0.875 = 0.105
    assert amounts(line) == ("0.12", "0.11", "0.01")
    assert line.reasons == ("outpatient_adult_87.5",)


@pytest.mark.parametrize("code", ["N101", "F20"])
def test_hospital_services_are_paid_in_full_everywhere(code: str) -> None:
    for stay in (OUTPATIENT, INPATIENT):
        line = price(code, stay)
        assert line.insurer == line.gross and line.patient == 0
        assert line.reasons == ("hospital_service_100",)


def test_supplements_are_always_the_patients() -> None:
    line = price("CP1", INPATIENT)
    assert amounts(line) == ("25.00", "0.00", "25.00")
    assert line.reasons == ("patient_only_code",)
    assert amounts(price("CP1", patient=CHILD)) == ("25.00", "0.00", "25.00")


def test_first_class_surcharge_is_the_patients() -> None:
    line = price("C1", INPATIENT, first_class=True)
    assert amounts(line) == ("95.78", "57.70", "38.08")  # 57.70 × 0.66 = 38.082
    assert line.reasons == ("inpatient_100", "first_class_surcharge_66")
    assert "first-class surcharge 66 %: 38.08 (patient only)" in line.explain()


def test_first_class_surcharge_adds_to_the_outpatient_share() -> None:
    line = price("C1", first_class=True)
    assert amounts(line) == ("95.78", "50.78", "45.00")  # 6.92 + 38.08


def test_first_class_surcharge_is_for_doctors_only() -> None:
    assert amounts(price("N202", INPATIENT, first_class=True, when=day("2024-03-12"))) == (
        "41.62", "41.62", "0.00")
    assert price("CP1", INPATIENT, first_class=True).reasons == ("patient_only_code",)


def test_surcharge_modifier_is_split_like_the_act() -> None:
    line = price("C1", modifiers=("NUIT",))
    # 57.70 + 28.85 = 86.55; 86.55 × 0.88 = 76.164
    assert amounts(line) == ("86.55", "76.16", "10.39")
    assert line.reasons == ("outpatient_adult_88", "modifier_NUIT_50")
    assert "modifier NUIT 50 %: 28.85 (split like the act)" in line.explain()


def test_patient_only_modifier_goes_to_the_patient() -> None:
    line = price("C1", modifiers=("CONF",))
    assert amounts(line) == ("69.24", "50.78", "18.46")  # 6.92 + 11.54
    assert line.reasons == ("outpatient_adult_88", "modifier_CONF_20")


def test_reduction_modifier() -> None:
    line = price("6G31", modifiers=("RED",))
    # 40.00 − 12.00 = 28.00; 28.00 × 0.88 = 24.64
    assert amounts(line) == ("28.00", "24.64", "3.36")
    assert line.reasons == ("outpatient_adult_88", "modifier_RED_-30")


def test_modifiers_and_surcharge_are_percentages_of_the_base_with_quantity() -> None:
    line = price("C1", INPATIENT, quantity=2, modifiers=("NUIT", "CONF"), first_class=True)
    # base 115.40; NUIT 57.70 shared; CONF 23.08 and first class 76.16 the patient's
    assert amounts(line) == ("272.34", "173.10", "99.24")


def test_tiers_payant_moves_the_statutory_share_to_the_insurer() -> None:
    stay = replace(OUTPATIENT, social_tiers_payant=((day("2024-01-01"), TODAY),))
    line = price("C1", stay)
    assert amounts(line) == ("57.70", "57.70", "0.00")
    assert line.reasons == ("outpatient_adult_88", "social_tiers_payant")
    assert "6.92 moved from patient to insurer" in line.explain()


def test_tiers_payant_leaves_patient_only_parts_with_the_patient() -> None:
    stay = replace(INPATIENT, social_tiers_payant=((INPATIENT.admitted, INPATIENT.discharged),))
    line = price("C1", replace(stay, kind="outpatient"), modifiers=("NUIT", "CONF"),
                 first_class=True)
    # statutory 86.55 all to the insurer; CONF 11.54 + first class 38.08 stay the patient's
    assert amounts(line) == ("136.17", "86.55", "49.62")
    assert price("CP1", stay).patient == D("25.00")


def test_tiers_payant_periods_are_inclusive() -> None:
    periods = ((day("2024-03-01"), day("2024-03-11")),)
    for when, patient in (("2024-02-29", "6.92"), ("2024-03-01", "0.00"),
                          ("2024-03-11", "0.00"), ("2024-03-12", "6.92")):
        stay = StayInfo("outpatient", day("2024-01-01"), None, social_tiers_payant=periods)
        assert price("C1", stay, when=day(when)).patient == D(patient), when


# ---------------------------------------------------------------------- secondary acts


def tech(code: str, line_id: str, when: date = TODAY, performer: str | None = "11111111",
         **fields: object) -> ActInput:
    return act(code, when, line_id, performer=performer, **fields)


def test_secondary_technical_acts_are_reduced() -> None:
    priced = price_stay(SNAPSHOT, OUTPATIENT, ADULT, [
        tech("6G32", "A"), tech("6G31", "B"), tech("1D21", "C")])
    by_id = {line.line_id: line for line in priced.lines}
    assert by_id["B"].percent == 100 and by_id["B"].gross == D("40.00")
    assert by_id["A"].percent == 50 and by_id["A"].gross == D("15.00")
    assert by_id["C"].percent == 50 and by_id["C"].gross == D("10.00")
    assert by_id["A"].reasons == ("outpatient_adult_88", "secondary_act_50")
    assert "30.00 × quantity 1 × 50 % = 15.00" in by_id["A"].explain()


def test_secondary_reduction_only_within_same_day_and_performer() -> None:
    priced = price_stay(SNAPSHOT, INPATIENT, ADULT, [
        tech("6G31", "A"), tech("6G32", "B", performer="22222222"),
        tech("6G32", "C", when=day("2024-03-13")), tech("1D21", "D", performer=None),
        tech("1D21", "E", performer=None)])
    assert all(line.percent == 100 for line in priced.lines)


def test_secondary_ties_are_broken_by_line_id() -> None:
    priced = price_stay(SNAPSHOT, INPATIENT, ADULT, [tech("6G31", "L2"), tech("6G31", "L1")])
    assert [(line.line_id, line.percent) for line in priced.lines] == [
        ("L1", D(100)), ("L2", D(50))]


def test_secondary_act_modifier_applies_to_the_reduced_base() -> None:
    priced = price_stay(SNAPSHOT, INPATIENT, ADULT, [
        tech("6G31", "A"), tech("6G32", "B", modifiers=("NUIT",))])
    reduced = priced.lines[1]
    assert amounts(reduced) == ("22.50", "22.50", "0.00")  # 15.00 + 7.50


def test_secondary_rule_on_doctor_acts_only_of_its_target() -> None:
    priced = price_stay(SNAPSHOT, INPATIENT, ADULT, [
        tech("C1", "A"), tech("C2", "B"), tech("6G32", "C")])
    assert [line.percent for line in priced.lines] == [100, 100, 100]


def test_price_act_never_reduces() -> None:
    assert price_act(SNAPSHOT, INPATIENT, ADULT, tech("6G32", "B")).percent == 100


# ----------------------------------------------------------------- daily participation


def stay_of(kind: str, admitted: str, discharged: str | None, **fields: object) -> StayInfo:
    return StayInfo(kind, day(admitted), day(discharged) if discharged else None,
                    **fields)  # type: ignore[arg-type]


def participation(stay: StayInfo, patient: PatientInfo = ADULT, until: date | None = None,
                  snapshot: TariffSnapshot = SNAPSHOT) -> list[tuple[object, ...]]:
    lines = price_stay(snapshot, stay, patient, [], until).participation
    return [(p.year, str(p.first_day), str(p.last_day), p.days, str(p.daily_amount),
             str(p.amount), p.reasons, p.days_exempt) for p in lines]


def test_inpatient_days_up_to_the_day_before_discharge() -> None:
    assert participation(stay_of("inpatient", "2024-03-01", "2024-03-11")) == [
        (2024, "2024-03-01", "2024-03-10", 10, "19.92", "199.20", (), 0)]


def test_a_stay_ending_the_day_it_starts_counts_one_day() -> None:
    assert participation(stay_of("inpatient", "2024-03-01", "2024-03-01")) == [
        (2024, "2024-03-01", "2024-03-01", 1, "19.92", "19.92", (), 0)]


def test_open_stay_counts_up_to_and_including_until() -> None:
    stay = stay_of("inpatient", "2024-03-01", None)
    assert participation(stay, until=day("2024-03-05"))[0][3] == 5
    with pytest.raises(ValueError, match="until"):
        participation(stay)


def test_until_bounds_a_discharged_stay_for_interim_invoices() -> None:
    stay = stay_of("inpatient", "2024-03-01", "2024-04-01")
    assert participation(stay, until=day("2024-03-15"))[0][3] == 15
    assert participation(stay, until=day("2024-02-15")) == []


def test_childbirth_first_12_days_are_free() -> None:
    lines = price_stay(SNAPSHOT, stay_of("inpatient", "2024-03-01", "2024-03-16",
                                         childbirth=True), ADULT, []).participation
    [line] = lines
    assert (line.days, line.days_exempt, line.amount) == (3, 12, D("59.76"))
    assert line.reasons == ("childbirth_first_12_days",)
    [period] = line.exempt_periods
    assert (period.first_day, period.last_day) == (day("2024-03-01"), day("2024-03-12"))
    assert "first 12 days of a childbirth stay" in line.explain()


def test_children_pay_no_participation() -> None:
    assert participation(stay_of("inpatient", "2024-03-01", "2024-03-05"), CHILD) == [
        (2024, "2024-03-01", "2024-03-04", 0, "19.92", "0.00", ("exempt_under_18",), 4)]


def test_participation_starts_on_the_eighteenth_birthday() -> None:
    teenager = PatientInfo(birth_date=day("2006-03-03"))
    [line] = price_stay(SNAPSHOT, stay_of("inpatient", "2024-03-01", "2024-03-06"), teenager,
                        []).participation
    assert (line.days, line.days_exempt) == (3, 2)
    assert [(p.first_day, p.last_day) for p in line.exempt_periods] == [
        (day("2024-03-01"), day("2024-03-02"))]


def test_day_hospital_has_its_own_daily_amount() -> None:
    assert participation(stay_of("day_hospital", "2024-03-01", "2024-03-01")) == [
        (2024, "2024-03-01", "2024-03-01", 1, "9.96", "9.96", (), 0)]


def test_no_participation_in_psychiatric_day_hospital() -> None:
    assert participation(stay_of("day_hospital", "2024-03-01", "2024-03-01",
                                 psychiatric=True)) == [
        (2024, "2024-03-01", "2024-03-01", 0, "0.00", "0.00", ("psychiatric_day_hospital",), 1)]


def test_psychiatric_inpatient_stay_pays_participation() -> None:
    assert participation(stay_of("inpatient", "2024-03-01", "2024-03-03",
                                 psychiatric=True))[0][3] == 2


@pytest.mark.parametrize("kind", ["outpatient", "emergency"])
def test_no_participation_outside_hospital_stays(kind: str) -> None:
    assert participation(stay_of(kind, "2024-03-01", "2024-03-03")) == []


def test_cap_counts_days_of_earlier_stays() -> None:
    stay = stay_of("inpatient", "2024-03-01", "2024-03-11",
                   prior_participation_days={2024: 25, 2023: 30})
    assert participation(stay) == [
        (2024, "2024-03-01", "2024-03-10", 5, "19.92", "99.60", ("annual_cap_reached",), 5)]


def test_cap_reached_in_the_middle_of_a_stay() -> None:
    [line] = price_stay(SNAPSHOT, stay_of("inpatient", "2024-03-01", "2024-04-10"), ADULT,
                        []).participation
    assert (line.days, line.days_exempt, line.amount) == (30, 10, D("597.60"))
    [period] = line.exempt_periods
    assert (period.first_day, period.last_day) == (day("2024-03-31"), day("2024-04-09"))
    assert "yearly cap" in line.explain()


def test_a_stay_over_new_year_is_split_per_year_with_each_years_cap_and_amount() -> None:
    snapshot = make_snapshot(parameters={
        **parameters(),
        "daily_participation_inpatient": [
            Parameter(START, day("2024-12-31"), "daily_participation_inpatient", D("19.92")),
            Parameter(day("2025-01-01"), None, "daily_participation_inpatient", D("22.36"))]})
    stay = stay_of("inpatient", "2024-12-25", "2025-01-05",
                   prior_participation_days={2024: 28})
    assert participation(stay, snapshot=snapshot) == [
        (2024, "2024-12-25", "2024-12-31", 2, "19.92", "39.84", ("annual_cap_reached",), 5),
        (2025, "2025-01-01", "2025-01-04", 4, "22.36", "89.44", (), 0)]


def test_a_new_daily_amount_within_a_year_starts_a_new_line() -> None:
    snapshot = make_snapshot(parameters={
        **parameters(),
        "daily_participation_inpatient": [
            Parameter(START, day("2024-06-30"), "daily_participation_inpatient", D("19.92")),
            Parameter(day("2024-07-01"), None, "daily_participation_inpatient", D("20.50"))]})
    assert participation(stay_of("inpatient", "2024-06-29", "2024-07-03"),
                         snapshot=snapshot) == [
        (2024, "2024-06-29", "2024-06-30", 2, "19.92", "39.84", (), 0),
        (2024, "2024-07-01", "2024-07-02", 2, "20.50", "41.00", (), 0)]


def test_tiers_payant_days_are_free() -> None:
    stay = stay_of("inpatient", "2024-03-01", "2024-03-11",
                   social_tiers_payant=((day("2024-02-01"), day("2024-03-04")),))
    assert participation(stay) == [
        (2024, "2024-03-01", "2024-03-10", 6, "19.92", "119.52", ("social_tiers_payant",), 4)]


def test_exemption_reasons_combine() -> None:
    stay = stay_of("inpatient", "2024-03-01", "2024-03-03", childbirth=True)
    [line] = price_stay(SNAPSHOT, stay, PatientInfo(day("2007-01-01")), []).participation
    assert line.reasons == ("exempt_under_18", "childbirth_first_12_days")
    assert line.exempt_periods[0].reasons == line.reasons


def test_stay_totals_include_participation() -> None:
    priced = price_stay(SNAPSHOT, INPATIENT, ADULT, [
        act("C1", first_class=True), act("CP1"), act("N101")])
    # lines: C1 95.78 (57.70 + 38.08), CP1 25.00, N101 2.55 × 7.5679 = 19.30
    assert [line.code for line in priced.lines] == ["C1", "CP1", "N101"]
    participation_total = D("19.92") * 10
    assert priced.insurer == D("57.70") + D("19.30")
    assert priced.patient == D("38.08") + D("25.00") + participation_total
    assert priced.gross == priced.insurer + priced.patient


# ------------------------------------------------------------------------ rule checks


def violation(stay: StayInfo, the_act: ActInput, others: list[ActInput] = (),  # type: ignore[assignment]
              patient: PatientInfo = ADULT) -> RuleViolation:
    with pytest.raises(RuleViolation) as caught:
        check_rules(SNAPSHOT, stay, patient, the_act, others)
    return caught.value


def test_a_valid_act_passes() -> None:
    check_rules(SNAPSHOT, INPATIENT, ADULT, act("C1"), [act("N101", line_id="x")])


def test_quantity_must_be_positive() -> None:
    for quantity in (0, -1):
        error = violation(INPATIENT, act("C1", quantity=quantity))
        assert (error.rule, error.field) == ("quantity", "quantity")
        with pytest.raises(RuleViolation):
            price_act(SNAPSHOT, INPATIENT, ADULT, act("C1", quantity=quantity))


def test_act_before_birth_or_after_death() -> None:
    error = violation(INPATIENT, act("C1"), patient=PatientInfo(day("2024-03-13")))
    assert (error.rule, error.field) == ("before_birth", "performed_at")
    error = violation(INPATIENT, act("C1"),
                      patient=PatientInfo(day("1950-01-01"), death_date=day("2024-03-11")))
    assert (error.rule, error.field) == ("after_death", "performed_at")
    check_rules(SNAPSHOT, INPATIENT, PatientInfo(day("1950-01-01"), day(str(TODAY))),
                act("C1"), [])


def test_nothing_outside_the_patients_life_is_priced() -> None:
    """Pricing refuses what `check_rules` refuses at recording: a death date entered after
    the acts must not leave them billable, nor the days after it."""
    died = PatientInfo(day("1950-01-01"), death_date=day("2024-03-14"))
    unborn = PatientInfo(day("2024-03-13"))
    for patient, when, rule in ((died, day("2024-03-15"), "after_death"),
                                (unborn, day("2024-03-12"), "before_birth")):
        late = act("C1", when, "L2")
        with pytest.raises(RuleViolation) as raised:
            price_act(SNAPSHOT, INPATIENT, patient, late)
        assert raised.value.rule == rule
        # In a stay, wherever it falls among the acts.
        acts = [act("C1", day("2024-03-14"), "L1"), late, act("C1", day("2024-03-13"), "L3")]
        with pytest.raises(RuleViolation) as raised:
            price_stay(SNAPSHOT, INPATIENT, patient, acts)
        assert (raised.value.rule, raised.value.field) == (rule, "performed_at")
    # No act after the death, but days counted after it (out on 20 March): the discharge
    # is what to correct. Out the day after the death: its day counted, nothing after it.
    with pytest.raises(RuleViolation) as raised:
        price_stay(SNAPSHOT, INPATIENT, died, [act("C1", day("2024-03-14"))])
    assert (raised.value.rule, raised.value.field) == ("after_death", "discharged_at")
    ended = replace(INPATIENT, discharged=day("2024-03-15"))
    priced = price_stay(SNAPSHOT, ended, died, [act("C1", day("2024-03-14"))])
    assert sum(line.days for line in priced.participation) == 5
    with pytest.raises(RuleViolation) as raised:  # admitted before the birth, no act
        price_stay(SNAPSHOT, INPATIENT, unborn, [])
    assert (raised.value.rule, raised.value.field) == ("before_birth", "admitted_at")


def test_act_outside_the_stay() -> None:
    for when in ("2024-03-09", "2024-03-21"):
        error = violation(INPATIENT, act("C1", day(when)))
        assert (error.rule, error.field) == ("outside_stay", "performed_at")
        assert when in str(error)
    check_rules(SNAPSHOT, INPATIENT, ADULT, act("C1", day("2024-03-20")), [])
    open_stay = replace(INPATIENT, discharged=None)
    check_rules(SNAPSHOT, open_stay, ADULT, act("C1", day("2025-01-01")), [])


@pytest.mark.parametrize(("modifiers", "expected"), [
    (("XX",), "unknown_modifier"),
    (("OLD",), "unknown_modifier"),          # withdrawn at the end of 2022
    (("RED",), "modifier_not_applicable"),   # technical acts only
    (("NUIT", "NUIT"), "duplicate_modifier"),
])
def test_modifier_errors(modifiers: tuple[str, ...], expected: str) -> None:
    error = violation(INPATIENT, act("C1", modifiers=modifiers))
    assert (error.rule, error.field) == (expected, "modifiers")
    assert expected in str(error)
    with pytest.raises(RuleViolation, match=expected):
        price_act(SNAPSHOT, INPATIENT, ADULT, act("C1", modifiers=modifiers))


def test_non_cumulable_names_the_other_act() -> None:
    error = violation(INPATIENT, act("C1"), [act("C2", line_id="L9")])
    assert (error.rule, error.field, error.other_line_id) == ("non_cumulable", "code", "L9")
    assert "non_cumulable" in str(error) and "C2" in str(error) and "L9" in str(error)
    # The rule has two sides: C2 cannot be recorded next to C1 either.
    error = violation(INPATIENT, act("C2"), [act("C1", line_id="L1")])
    assert (error.rule, error.other_line_id) == ("non_cumulable", "L1")
    check_rules(SNAPSHOT, INPATIENT, ADULT, act("C1"), [act("C2", day("2024-03-13"))])


def test_max_per_day_counts_quantities_of_the_same_day() -> None:
    error = violation(INPATIENT, act("N101"), [act("N101", line_id="L3", quantity=2)])
    assert (error.rule, error.other_line_id) == ("max_per_day", "L3")
    assert "max_per_day" in str(error) and "L3" in str(error)
    error = violation(INPATIENT, act("N101", quantity=3))
    assert (error.rule, error.other_line_id) == ("max_per_day", None)
    # The act itself among the others is not counted twice; other days do not count.
    me = act("N101", quantity=2)
    check_rules(SNAPSHOT, INPATIENT, ADULT, me, [me, act("N101", day("2024-03-13"), "L4")])


def test_max_per_stay() -> None:
    surgeon = {"specialty": "surgery"}
    error = violation(INPATIENT, act("F20", **surgeon),
                      [act("F20", day("2024-03-15"), "L5", **surgeon)])
    assert (error.rule, error.other_line_id) == ("max_per_stay", "L5")
    assert "F20 (line L5)" in str(error)


def test_age_bounds() -> None:
    error = violation(INPATIENT, act("G1"), patient=PatientInfo(day("1959-03-13")))
    assert (error.rule, error.field) == ("min_age", "performed_at")
    assert "64" in str(error)
    check_rules(SNAPSHOT, INPATIENT, PatientInfo(day("1959-03-12")), act("G1"), [])
    error = violation(INPATIENT, act("P1"), patient=PatientInfo(day("2006-03-12")))
    assert error.rule == "max_age"
    check_rules(SNAPSHOT, INPATIENT, PatientInfo(day("2006-03-13")), act("P1"), [])


def test_specialty_restriction() -> None:
    for specialty in (None, "cardiology"):
        error = violation(INPATIENT, act("F20", specialty=specialty))
        assert (error.rule, error.field) == ("specialties", "specialty")
        assert (specialty or "unknown") in str(error)
    check_rules(SNAPSHOT, INPATIENT, ADULT, act("F20", specialty="internal_medicine"), [])


def test_rules_apply_only_while_valid() -> None:
    snapshot = make_snapshot(rules=[
        rule("non_cumulable", "C1", ("C2",), end=day("2024-03-11")),
        rule("max_per_day", "@NURS", value=2, start=day("2024-03-12"))])
    check_rules(snapshot, INPATIENT, ADULT, act("C1"), [act("C2", line_id="x")])
    with pytest.raises(RuleViolation, match="@NURS") as caught:
        check_rules(snapshot, INPATIENT, ADULT, act("N101"),
                    [act("N104", line_id="a"), act("N202", line_id="b")])
    assert caught.value.other_line_id == "a"


def test_nomenclature_targets_in_non_cumulable() -> None:
    snapshot = make_snapshot(rules=[rule("non_cumulable", "@HOSP", ("@CP",))])
    with pytest.raises(RuleViolation, match="non_cumulable"):
        check_rules(snapshot, INPATIENT, ADULT, act("CP1"), [act("F20", line_id="x")])


def test_unknown_code_and_code_not_valid_on_date() -> None:
    with pytest.raises(UnknownCode):
        check_rules(SNAPSHOT, INPATIENT, ADULT, act("ZZ9"), [])
    snapshot = make_snapshot(acts={"C1": [
        ActVersion(START, day("2023-12-31"), "MED", "C1", "c", "c", D("11.54"), "M")]})
    with pytest.raises(CodeNotValidOnDate, match=r"2019-01-01\.\.2023-12-31"):
        check_rules(snapshot, INPATIENT, ADULT, act("C1"), [])


def test_check_stay_lists_every_error() -> None:
    errors = check_stay(SNAPSHOT, INPATIENT, ADULT, [
        act("C1", line_id="a"), act("C2", line_id="b"), act("ZZ9", line_id="c")])
    assert [type(e).__name__ for e in errors] == ["RuleViolation", "RuleViolation",
                                                  "UnknownCode"]


def test_rule_violation_is_a_catalogue_error() -> None:
    assert issubclass(RuleViolation, CatalogueError)


# ------------------------------------------------------------- errors: never a guess


def test_unknown_code_is_refused() -> None:
    with pytest.raises(UnknownCode, match="'ZZ9'"):
        price("ZZ9")
    with pytest.raises(UnknownCode, match="'ZZ9'"):
        price_stay(SNAPSHOT, OUTPATIENT, ADULT, [act("C1"), act("ZZ9")])


def test_code_not_valid_on_the_date_lists_its_versions() -> None:
    snapshot = make_snapshot(acts={"C1": [
        ActVersion(START, day("2020-12-31"), "MED", "C1", "c", "c", D("11.54"), "M"),
        ActVersion(day("2022-01-01"), day("2023-12-31"), "MED", "C1", "c", "c", D("12"), "M")]})
    with pytest.raises(CodeNotValidOnDate) as caught:
        price("C1", StayInfo("outpatient", day("2021-06-01"), None), snapshot=snapshot)
    assert "2021-06-01" in str(caught.value)
    assert "2019-01-01..2020-12-31, 2022-01-01..2023-12-31" in str(caught.value)
    with pytest.raises(CodeNotValidOnDate, match="2024-03-12"):
        price("C1", snapshot=snapshot)


def test_missing_cote_names_the_date() -> None:
    snapshot = make_snapshot(cotes=[Cote(day("2023-09-01"), D("944.43"))])
    with pytest.raises(MissingCote, match="2023-08-31"):
        price("N101", StayInfo("outpatient", day("2023-08-31"), None), snapshot=snapshot)


def test_missing_key_letter_value_names_the_date() -> None:
    snapshot = make_snapshot(key_letters={
        **make_snapshot().key_letters,
        "M": [KeyLetterValue(day("2025-01-01"), None, "M", "eur", D("5"))]})
    with pytest.raises(MissingKeyLetterValue, match="2024-03-12"):
        price("C1", snapshot=snapshot)
    with pytest.raises(MissingKeyLetterValue, match="2024-03-12"):
        price_stay(snapshot, OUTPATIENT, ADULT, [act("C1")])


@pytest.mark.parametrize(("name", "code", "stay"), [
    ("outpatient_rate_adult", "C1", OUTPATIENT),
    ("inpatient_rate", "C1", INPATIENT),
    ("exemption_age", "C1", OUTPATIENT),
    ("daily_participation_inpatient", "N101", INPATIENT),
])
def test_missing_parameter_names_it_and_the_date(name: str, code: str, stay: StayInfo) -> None:
    values = parameters()
    values[name] = [Parameter(day("2025-01-01"), None, name, D(1))]
    with pytest.raises(MissingParameter, match=f"'{name}'.*2024-03-"):
        price_stay(make_snapshot(parameters=values), stay, ADULT, [act(code, stay.admitted)])


def test_first_class_surcharge_parameter_is_needed_only_in_first_class() -> None:
    values = parameters()
    del values["first_class_surcharge_percent"]
    snapshot = make_snapshot(parameters=values)
    assert price("C1", snapshot=snapshot).gross == D("57.70")
    with pytest.raises(MissingParameter, match="first_class_surcharge_percent"):
        price("C1", snapshot=snapshot, first_class=True)


def test_a_rate_above_100_percent_is_refused() -> None:
    with pytest.raises(ParameterOutOfRange, match="outpatient_rate_adult"):
        price("C1", snapshot=make_snapshot(parameters=parameters(outpatient_rate_adult="120")))


def test_a_reduction_below_zero_is_refused() -> None:
    snapshot = make_snapshot(modifiers={"FREE": [modifier("FREE", -150, ("*",))]})
    with pytest.raises(RuleViolation, match="negative_amount"):
        price("C1", snapshot=snapshot, modifiers=("FREE",))


def test_duplicate_line_ids_in_a_stay_are_refused() -> None:
    with pytest.raises(RuleViolation, match="duplicate_line_id"):
        price_stay(SNAPSHOT, INPATIENT, ADULT, [act("C1", line_id="x"), act("N101", line_id="x")])


def test_unknown_stay_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="stay kind"):
        price("C1", StayInfo("holiday", TODAY, None))


def test_reasons_read_in_words() -> None:
    for reason in ("inpatient_100", "outpatient_adult_88", "outpatient_minor_100",
                   "hospital_service_100", "patient_only_code", "first_class_surcharge_66",
                   "modifier_NUIT_50", "secondary_act_50", "social_tiers_payant",
                   "exempt_under_18", "childbirth_first_12_days", "annual_cap_reached",
                   "psychiatric_day_hospital"):
        assert describe_reason(reason) != reason


# ----------------------------------------------------------- the index agrees with look-ups


def outcome(compute: object) -> object:
    """What a computation gives: its value, or its error's type and message."""
    try:
        return compute()  # type: ignore[operator]
    except CatalogueError as error:
        return type(error), str(error)


def test_the_tariff_index_agrees_with_the_catalogue_every_day() -> None:
    """Prices come from precomputed periods: check them against direct look-ups."""
    versions = [
        ActVersion(day("2022-06-15"), day("2023-03-31"), "NURS", "N9", "n", "n", D("2.00"), "N"),
        ActVersion(day("2023-05-01"), day("2025-12-31"), "NURS", "N9", "n", "n", D("2.10"), "N"),
    ]
    letters = [KeyLetterValue(day("2022-01-01"), day("2024-06-30"), "N", "index100", D("0.8")),
               KeyLetterValue(day("2024-08-01"), None, "N", "index100", D("0.82"))]
    snapshot = make_snapshot(acts={"N9": versions}, key_letters={"N": letters})
    stay = StayInfo("outpatient", day("2018-01-01"), None)
    when = day("2022-06-01")
    while when <= day("2026-02-01"):
        alone = outcome(lambda w=when: price("N9", stay, snapshot=snapshot, when=w))
        # The same through price_stay, which looks the periods up in bulk.
        in_stay = outcome(lambda w=when: price_stay(snapshot, stay, ADULT,
                                                    [act("N9", w)]).lines[0])
        assert in_stay == alone, when
        version = next((v for v in versions if v.covers(when)), None)
        letter = next((row for row in letters if row.covers(when)), None)
        if version is None or letter is None:
            assert isinstance(alone, tuple) and when.isoformat() in alone[1], when
        else:
            cote = max((c for c in COTES if c.valid_from <= when), key=lambda c: c.valid_from)
            value = (letter.value * cote.cote / 100).quantize(D("0.0001"))
            assert isinstance(alone, PricedLine), when
            assert (alone.key_letter_value, alone.cote) == (value, cote.cote), when
            assert alone.unit_price == (version.coefficient * value).quantize(D("0.01"))
        when += timedelta(1)


# ------------------------------------------------------------------------ properties

CODES = sorted(ACTS)
APPLICABLE = {"@MED": ("NUIT", "CONF"), "@TECH": ("NUIT", "CONF", "RED"), "*": ("CONF",)}
TEAM = ("11111111", "22222222", None)


@st.composite
def stays(draw: st.DrawFn) -> tuple[StayInfo, PatientInfo, list[ActInput]]:
    admitted = draw(st.dates(day("2019-01-01"), day("2026-12-31")))
    length = draw(st.integers(0, 40))
    discharged = admitted + timedelta(length)
    tiers = ()
    if draw(st.booleans()):
        start = admitted + timedelta(draw(st.integers(-30, length)))
        tiers = ((start, start + timedelta(draw(st.integers(0, 90)))),)
    stay = StayInfo(
        kind=draw(st.sampled_from(["inpatient", "day_hospital", "outpatient", "emergency"])),
        admitted=admitted, discharged=discharged, childbirth=draw(st.booleans()),
        psychiatric=draw(st.booleans()), social_tiers_payant=tiers,
        prior_participation_days={admitted.year: draw(st.integers(0, 35))})
    patient = PatientInfo(admitted - timedelta(draw(st.integers(0, 36500))))
    acts = []
    for number in range(draw(st.integers(0, 12))):
        code = draw(st.sampled_from(CODES))
        nomenclature = ACTS[code][0]
        choices = APPLICABLE.get("@" + nomenclature, APPLICABLE["*"])
        acts.append(ActInput(
            line_id=f"L{number:02d}", code=code,
            day=admitted + timedelta(draw(st.integers(0, length))),
            quantity=draw(st.integers(1, 4)),
            modifiers=tuple(draw(st.lists(st.sampled_from(choices), unique=True, max_size=2))),
            performer=draw(st.sampled_from(TEAM)), first_class=draw(st.booleans())))
    return stay, patient, acts


@settings(max_examples=300, deadline=None)
@given(stays())
def test_every_line_splits_exactly_and_nothing_is_negative(
        case: tuple[StayInfo, PatientInfo, list[ActInput]]) -> None:
    stay, patient, acts = case
    priced = price_stay(SNAPSHOT, stay, patient, acts)
    for line in priced.lines:
        assert line.insurer + line.patient == line.gross
        assert min(line.insurer, line.patient, line.gross) >= 0
        assert line.gross.as_tuple().exponent == -2
        assert line.explain()
    for item in priced.participation:
        assert item.amount == item.daily_amount * item.days >= 0
    assert priced.insurer + priced.patient == priced.gross
    assert priced.insurer == sum((line.insurer for line in priced.lines), D(0))


@settings(max_examples=200, deadline=None)
@given(stays(), st.randoms(use_true_random=False))
def test_pricing_is_deterministic_and_order_independent(
        case: tuple[StayInfo, PatientInfo, list[ActInput]], rng: random.Random) -> None:
    stay, patient, acts = case
    first = price_stay(SNAPSHOT, stay, patient, acts)
    again = price_stay(make_snapshot(), stay, patient, list(acts))
    shuffled = list(acts)
    rng.shuffle(shuffled)
    assert price_stay(SNAPSHOT, stay, patient, shuffled) == first
    assert [line.as_record() for line in again.lines] == [
        line.as_record() for line in first.lines]
    assert again.participation == first.participation


@settings(max_examples=200, deadline=None)
@given(stays())
def test_a_lone_act_prices_as_price_act(
        case: tuple[StayInfo, PatientInfo, list[ActInput]]) -> None:
    stay, patient, acts = case
    for one in acts:
        [line] = price_stay(SNAPSHOT, stay, patient, [one]).lines
        assert line == price_act(SNAPSHOT, stay, patient, one)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 364), st.integers(0, 60), st.booleans()),
                min_size=1, max_size=8),
       st.integers(0, 35))
def test_the_annual_cap_is_never_exceeded(stays_of_year: list[tuple[int, int, bool]],
                                          prior: int) -> None:
    """Stays of one patient in a year, each told the days charged by the earlier ones."""
    charged = {2024: prior}
    chargeable = 0
    for offset, length, open_stay in sorted(stays_of_year):
        admitted = day("2024-01-01") + timedelta(offset)
        discharged = admitted + timedelta(length)
        stay = StayInfo("inpatient", admitted, None if open_stay else discharged,
                        prior_participation_days=dict(charged))
        priced = price_stay(SNAPSHOT, stay, ADULT, [], until=discharged)
        for line in priced.participation:
            charged[line.year] = charged.get(line.year, 0) + line.days
        in_2024 = [line for line in priced.participation if line.year == 2024]
        chargeable += sum(line.days + line.days_exempt for line in in_2024)
    assert charged[2024] - prior <= max(0, 30 - prior)
    assert charged[2024] - prior == max(0, min(chargeable, 30 - prior))


@given(st.integers(1, 2000), st.integers(0, 60))
def test_validity_boundaries_in_pricing(length: int, gap: int) -> None:
    first = ActVersion(START, START + timedelta(length - 1), "MED", "C1", "c", "c", D("10"), "M")
    second_start = first.valid_to + timedelta(1 + gap)  # type: ignore[operator]
    second = ActVersion(second_start, None, "MED", "C1", "c", "c", D("11"), "M")
    snapshot = make_snapshot(acts={"C1": [first, second]})
    stay = StayInfo("inpatient", START, None)
    assert price("C1", stay, snapshot=snapshot, when=first.valid_to).gross == D("50.00")
    assert price("C1", stay, snapshot=snapshot, when=second_start).gross == D("55.00")
    assume(gap > 0)
    with pytest.raises(CodeNotValidOnDate):
        price("C1", stay, snapshot=snapshot, when=first.valid_to + timedelta(1))


# Parameters that change during the years the stays below cover, so that participation
# meets a new daily amount, exemption age and cap in the middle of a stay.
CHANGING = {
    **parameters(),
    "daily_participation_inpatient": [
        Parameter(START, day("2024-06-30"), "daily_participation_inpatient", D("19.92")),
        Parameter(day("2024-07-01"), None, "daily_participation_inpatient", D("21.10"))],
    "exemption_age": [Parameter(START, day("2023-12-31"), "exemption_age", D("18")),
                      Parameter(day("2024-01-01"), None, "exemption_age", D("16"))],
    "annual_day_cap": [Parameter(START, day("2024-03-31"), "annual_day_cap", D("30")),
                       Parameter(day("2024-04-01"), None, "annual_day_cap", D("25"))],
}
CHANGING_SNAPSHOT = make_snapshot(parameters=CHANGING)


def value_on(name: str, when: date) -> Decimal:
    return next(row.value for row in CHANGING[name] if row.covers(when))


def participation_day_by_day(stay: StayInfo, patient: PatientInfo,
                             last: date) -> dict[date, tuple[Decimal, tuple[str, ...]]]:
    """The rules of DOMAIN.md applied one day at a time: (daily amount, why not charged)."""
    charged = dict(stay.prior_participation_days)
    days = {}
    when = stay.admitted
    while when <= last:
        if stay.kind == "day_hospital" and stay.psychiatric:
            days[when] = (D("0.00"), ("psychiatric_day_hospital",))
            when += timedelta(1)
            continue
        amount = value_on(f"daily_participation_{stay.kind}", when)
        exemption_age = value_on("exemption_age", when)
        reasons: tuple[str, ...] = ()
        if age_on(patient.birth_date, when) < exemption_age:
            reasons += (f"exempt_under_{exemption_age}",)
        if stay.childbirth and (when - stay.admitted).days < 12:
            reasons += ("childbirth_first_12_days",)
        if any(start <= when <= end for start, end in stay.social_tiers_payant):
            reasons += ("social_tiers_payant",)
        if not reasons:
            if charged.get(when.year, 0) >= value_on("annual_day_cap", when):
                reasons = ("annual_cap_reached",)
            else:
                charged[when.year] = charged.get(when.year, 0) + 1
        days[when] = (amount, reasons)
        when += timedelta(1)
    return days


# Rates that change in the middle of the stays below, on top of CHANGING's exemption age.
CHANGING_RATES_SNAPSHOT = make_snapshot(parameters={
    **CHANGING,
    "outpatient_rate_adult": [
        Parameter(START, day("2024-05-31"), "outpatient_rate_adult", D("88")),
        Parameter(day("2024-06-01"), None, "outpatient_rate_adult", D("80"))],
    "outpatient_rate_minor": [
        Parameter(START, day("2024-04-14"), "outpatient_rate_minor", D("100")),
        Parameter(day("2024-04-15"), None, "outpatient_rate_minor", D("90"))],
    "inpatient_rate": [Parameter(START, day("2024-02-29"), "inpatient_rate", D("100")),
                       Parameter(day("2024-03-01"), None, "inpatient_rate", D("95"))],
})
ATTESTATIONS = [(-5, 3), (4, 9), (2, 200), (-5, 0), (1, 1)]


@settings(max_examples=300, deadline=None)
@given(st.dates(day("2023-12-01"), day("2024-07-15")), st.integers(0, 60),
       st.sampled_from(["inpatient", "day_hospital", "outpatient", "emergency"]),
       # 18 in December 2023 or 16 in 2024 (the exemption age falls to 16 on 1 January), or
       # a child.
       st.one_of(st.dates(day("2005-11-01"), day("2005-12-31")),
                 st.dates(day("2007-01-01"), day("2008-09-30")),
                 st.dates(day("2012-01-01"), day("2015-12-31"))),
       st.lists(st.sampled_from(ATTESTATIONS), max_size=2),
       st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["C1", "F20", "CP1", "N101"])),
                min_size=1, max_size=12))
# Each change on the stay's second day: the inpatient rate, the adult rate, the minor rate,
# a 16th birthday (outpatient and emergency), the exemption age falling from 18 to 16, an
# attestation that starts, one that ends the day before, a second one that starts.
@example(day("2024-02-29"), 1, "inpatient", day("1980-01-01"), [], [(0, "C1"), (1, "C1")])
@example(day("2024-05-31"), 1, "outpatient", day("1980-01-01"), [], [(0, "C1"), (1, "C1")])
@example(day("2024-04-14"), 1, "outpatient", day("2015-06-01"), [], [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "outpatient", day("2008-03-12"), [], [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "emergency", day("2008-03-12"), [], [(0, "C1"), (1, "C1")])
@example(day("2023-12-31"), 1, "outpatient", day("2007-06-01"), [], [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "outpatient", day("1980-01-01"), [(1, 9)], [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "outpatient", day("1980-01-01"), [(-5, 0)],
         [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "outpatient", day("1980-01-01"), [(-40, -30), (1, 9)],
         [(0, "C1"), (1, "C1")])
@example(day("2024-03-11"), 1, "outpatient", day("1980-01-01"), [(1, 9), (-40, -30)],
         [(0, "C1"), (1, "C1")])
def test_a_stays_lines_have_the_terms_of_their_own_day(
        admitted: date, length: int, kind: str, born: date,
        attestations: list[tuple[int, int]], picks: list[tuple[int, str]]) -> None:
    """A stay's lines share their terms across days unless something changes during the
    stay: a rate, the exemption age, an attestation, a birthday. Each line must be split
    as the same act priced alone on its day."""
    attested = tuple((admitted + timedelta(start), admitted + timedelta(end))
                     for start, end in attestations)
    stay = StayInfo(kind, admitted, admitted + timedelta(length),
                    social_tiers_payant=attested)
    patient = PatientInfo(born)
    acts = [act(code, admitted + timedelta(offset % (length + 1)), line_id=f"L{i:02d}")
            for i, (offset, code) in enumerate(picks)]
    lines = price_stay(CHANGING_RATES_SNAPSHOT, stay, patient, acts).lines
    for line in lines:
        alone = price_act(CHANGING_RATES_SNAPSHOT, stay, patient, line.act)
        assert (amounts(line), line.reasons) == (amounts(alone), alone.reasons), line.line_id


@settings(max_examples=300, deadline=None)
@given(st.dates(day("2023-10-01"), day("2024-12-20")), st.integers(0, 120),
       st.sampled_from(["inpatient", "day_hospital"]), st.booleans(), st.booleans(),
       st.integers(0, 40), st.integers(-2, 2), st.dates(day("2004-01-01"), day("2012-12-31")),
       st.sampled_from([None, (-5, 10), (3, 200)]))
def test_participation_is_counted_as_day_by_day(
        admitted: date, length: int, kind: str, childbirth: bool, psychiatric: bool,
        prior: int, birthday_shift: int, born: date,
        tiers: tuple[int, int] | None) -> None:
    """The engine counts stretches of days at once: it must agree with counting each day,
    across new years, parameter changes, birthdays (29 February too), childbirth days,
    attestations and the annual cap."""
    if birthday_shift == 2:
        born = day("2008-02-29")
    discharged = admitted + timedelta(length)
    attested = () if tiers is None else (
        (admitted + timedelta(tiers[0]), admitted + timedelta(tiers[1])),)
    stay = StayInfo(kind, admitted, discharged, childbirth=childbirth, psychiatric=psychiatric,
                    social_tiers_payant=attested,
                    prior_participation_days={admitted.year: prior})
    patient = PatientInfo(born + timedelta(birthday_shift))
    priced = price_stay(CHANGING_SNAPSHOT, stay, patient, [])
    engine: dict[date, tuple[Decimal, tuple[str, ...]]] = {}
    for line in priced.participation:
        when = line.first_day
        while when <= line.last_day:
            engine[when] = (line.daily_amount, ())
            when += timedelta(1)
        for period in line.exempt_periods:
            when = period.first_day
            while when <= period.last_day:
                engine[when] = (line.daily_amount, period.reasons)
                when += timedelta(1)
        assert line.amount == line.daily_amount * line.days
    last = max(discharged - timedelta(1), admitted)
    expected = participation_day_by_day(stay, patient, last)
    assert engine == expected  # every day: its daily amount and why it is not charged
    charged = [amount for amount, reasons in expected.values() if not reasons]
    assert sum(line.amount for line in priced.participation) == sum(charged, D(0))


@settings(max_examples=300, deadline=None)
@given(stays())
def test_only_the_dearest_technical_act_of_a_day_and_performer_is_paid_in_full(
        case: tuple[StayInfo, PatientInfo, list[ActInput]]) -> None:
    """The engine reduces secondary acts in one pass over the day; the rule, spelt out: in
    each group (same day, same performer, technical acts) all but the dearest unit price
    (the first line_id among equals) are paid at 50 %."""
    stay, patient, acts = case
    lines = price_stay(SNAPSHOT, stay, patient, acts).lines
    groups: dict[tuple[date, str], list[PricedLine]] = {}
    for line in lines:
        if line.nomenclature == "TECH" and line.act.performer is not None:
            groups.setdefault((line.day, line.act.performer), []).append(line)
    full = {min(group, key=lambda line: (-line.unit_price, line.line_id)).line_id
            for group in groups.values()}
    for line in lines:
        grouped = line.nomenclature == "TECH" and line.act.performer is not None
        assert line.percent == (50 if grouped and line.line_id not in full else 100), (
            line.line_id)


def test_priced_lines_read_like_a_tuple() -> None:
    acts = [act("C1", line_id="L2"), act("N101", line_id="L1"),
            act("C2", TODAY + timedelta(1), line_id="L0")]
    lines = price_stay(SNAPSHOT, StayInfo("outpatient", TODAY, TODAY + timedelta(1)), ADULT,
                       acts).lines
    as_tuple = tuple(lines)
    assert [line.line_id for line in as_tuple] == ["L1", "L2", "L0"]  # day, then line_id
    assert len(lines) == 3
    assert lines[0] == as_tuple[0] and lines[-1].code == "C2"
    assert lines[1:] == as_tuple[1:]
    assert lines == as_tuple and lines == list(as_tuple)
    assert lines != as_tuple[:2]
    with pytest.raises(IndexError):
        lines[3]
    with pytest.raises(TypeError):
        hash(lines)


def test_an_act_priceable_only_once_reduced_is_priced_in_a_stay() -> None:
    """At 100 % the modifier would take the line below zero; as a secondary act at 0 %
    it costs nothing. The stay prices it: its full price is never the one that counts."""
    snapshot = make_snapshot(
        rules=[rule("secondary_percent", "@TECH", value=0)],
        modifiers={**MODIFIERS, "BIG": [modifier("BIG", -150, ("@TECH",))]})
    dearer = act("6G31", INPATIENT.admitted, "L1", performer="11111111")
    reduced = act("1D21", INPATIENT.admitted, "L2", performer="11111111", modifiers=("BIG",))
    with pytest.raises(RuleViolation, match="negative_amount"):
        price_act(snapshot, INPATIENT, ADULT, reduced)
    for order in ([dearer, reduced], [reduced, dearer]):
        priced = price_stay(snapshot, INPATIENT, ADULT, order)
        assert [(line.line_id, line.percent, str(line.gross)) for line in priced.lines] == [
            ("L1", 100, "40.00"), ("L2", 0, "0.00")]
        assert priced.gross == D("40.00") + sum(
            (line.amount for line in priced.participation), D(0))


@pytest.mark.parametrize("first", [
    {"quantity": 0}, {"modifiers": ("XX",)}, {"modifiers": ("RED",)}])
def test_a_tariff_error_of_any_act_comes_before_other_errors(first: dict[str, object]) -> None:
    """Every act's tariff is looked up before anything else is checked: the unknown code of
    a later act is the error, not what is wrong with an earlier act."""
    acts = [act("C1", INPATIENT.admitted, "L1", **first),
            act("ZZZ", INPATIENT.admitted, "L2")]
    with pytest.raises(UnknownCode):
        price_stay(SNAPSHOT, INPATIENT, ADULT, acts)


# ------------------------------------------------------------------ how amounts are kept

@settings(max_examples=300)
@given(cents=st.integers(min_value=0, max_value=10_000_000),
       exponent=st.sampled_from([0, -1, -2, -3]),
       rate=st.sampled_from([D(100), D("100.00"), D(88), D("87.5"), D(0)]),
       patient_only=st.booleans(), tiers=st.booleans())
def test_the_plain_line_shortcut_gives_what_the_general_computation_gives(
        cents: int, exponent: int, rate: Decimal, patient_only: bool, tiers: bool) -> None:
    """One unit at full price with nothing added takes a shortcut (a new snapshot computes
    one per period and set of terms): the same amounts, each Decimal written alike."""
    from luxfact.tariffs.pricing import HUNDRED, _amounts, _plain_amounts, _Terms

    unit = (D(cents) / 100).quantize(D(1).scaleb(exponent)) if exponent else D(cents // 100)
    reason = f"inpatient_{rate.normalize():f}"
    terms = _Terms(rate, reason, tiers, patient_only, 0, (reason,),
                   (reason, "social_tiers_payant"))
    plain = _plain_amounts(unit, terms)
    assert repr(plain) == repr(_amounts(unit, 1, HUNDRED, (), None, terms))


def test_a_negative_plain_line_is_refused_as_the_general_computation_refuses_it() -> None:
    from luxfact.tariffs.pricing import _plain_amounts, _Terms

    terms = _Terms(D(100), "hospital_service_100", False, False, 0,
                   ("hospital_service_100",), ("hospital_service_100", "social_tiers_payant"))
    with pytest.raises(RuleViolation, match="negative_amount"):
        _plain_amounts(D("-1.00"), terms)


def test_priced_amounts_are_kept_where_the_garbage_collector_lets_them_be() -> None:
    """The engine keeps each line's amounts as a plain tuple that the collector stops
    tracking: a million tracked ones cost a new snapshot full collections. A line read
    names them, modifier parts included."""
    import gc

    from luxfact.tariffs.pricing import Amounts, ModifierPart

    snapshot = make_snapshot()
    acts = [act("6G31", INPATIENT.admitted, "L1", performer="11111111"),
            act("6G32", INPATIENT.admitted, "L2", performer="11111111", modifiers=("NUIT",)),
            act("C1", INPATIENT.admitted, "L3", quantity=2),
            act("N101", INPATIENT.admitted, "L4")]
    priced = price_stay(snapshot, INPATIENT, ADULT, acts)
    for _ in range(3):  # a pass may untrack one level of nesting only (row, parts, part)
        gc.collect()
    rows = priced.lines._amounts  # type: ignore[attr-defined]
    assert [type(row) for row in rows] == [tuple] * 4
    assert not any(gc.is_tracked(row) for row in rows)
    night = priced.lines[1].amounts
    assert type(night) is Amounts and night.percent == 50
    assert night.modifier_parts == (ModifierPart("NUIT", D(50), D("7.50"), False),)
    assert priced.lines[1].gross == D("22.50")

import contextlib
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from luxfact.patients import matricule as m

VALID = ["1990093012358", "1993102814564", "2001120308757", "1979122003208", "1966051507682"]


@pytest.mark.parametrize("number", VALID)
def test_valid_examples(number: str) -> None:
    parsed = m.parse(number)
    assert parsed.number == number
    assert parsed.birth_date() == date(int(number[:4]), int(number[4:6]), int(number[6:8]))
    assert parsed.masked() == number[:4] + "*" * 9


@pytest.mark.parametrize(("number", "reason"), [
    ("1990093012348", "check digit 12 (Luhn)"),
    ("1990093012357", "check digit 13 (Verhoeff)"),
    ("199009301235", "13 digits, not 12"),
    ("19900930123581", "13 digits, not 14"),
    ("19900930A2358", "digits only"),
    ("１９９００９３０１２３５８", "digits only"),  # full-width digits are not ASCII
    (m.complete("19901330123"), "month 13"),
    (m.complete("19900231123"), "day 31"),
    (m.complete("20990101123"), "not plausible"),
    (m.complete("18000101123"), "not plausible"),
])
def test_invalid_numbers_say_why(number: str, reason: str) -> None:
    with pytest.raises(m.InvalidMatricule, match=reason.replace("(", r"\(").replace(")", r"\)")):
        m.parse(number, today=date(2026, 11, 26))


def test_feb_30_and_future_birth() -> None:
    with pytest.raises(m.InvalidMatricule, match="day 30 does not exist in 2020-02"):
        m.parse(m.complete("20200230123"))
    with pytest.raises(m.InvalidMatricule, match="in the future"):
        m.parse(m.complete("20261231123"), today=date(2026, 11, 26))


def test_unknown_month_or_day() -> None:
    assert m.parse(m.complete("19900000123")).birth_date() is None
    assert m.parse(m.complete("19900500123")).birth_date() is None


def test_legacy_numbers_are_recognised_but_refused_for_records() -> None:
    first_ten = "1965031512"
    legacy = first_ten + (m.legacy_check_digit(first_ten) or "0")
    assert m.is_legacy(legacy)
    with pytest.raises(m.InvalidMatricule, match="old 11-digit number"):
        m.parse(legacy)
    wrong = legacy[:10] + str((int(legacy[10]) + 1) % 10)
    assert not m.is_legacy(wrong)


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 1, 1)),
       st.integers(min_value=0, max_value=999))
def test_every_completed_number_parses(birth: date, sequence: int) -> None:
    number = m.complete(birth.strftime("%Y%m%d") + f"{sequence:03d}")
    assert m.parse(number, today=date(2026, 11, 26)).birth_date() == birth


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 1, 1)),
       st.integers(min_value=0, max_value=999), st.integers(min_value=0, max_value=12),
       st.integers(min_value=1, max_value=9))
def test_any_single_digit_error_is_caught(birth: date, sequence: int, position: int,
                                          delta: int) -> None:
    number = m.complete(birth.strftime("%Y%m%d") + f"{sequence:03d}")
    digits = list(number)
    digits[position] = str((int(digits[position]) + delta) % 10)
    with pytest.raises(m.InvalidMatricule):
        m.parse("".join(digits), today=date(2026, 11, 26))


@given(st.text(max_size=20))
def test_parse_never_fails_otherwise(text: str) -> None:
    with contextlib.suppress(m.InvalidMatricule):
        m.parse(text, today=date(2026, 11, 26))

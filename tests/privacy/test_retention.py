"""The retention rules: 10 years from the end of the calendar year, rules dated."""

from datetime import date

import pytest

from luxfact.privacy.retention import (
    ACCOUNTING,
    MEDICAL_FILE,
    Held,
    RetentionRule,
    held,
    kept_until,
    retained,
    retained_ranges,
    rule_for,
)


@pytest.mark.parametrize("rules", [ACCOUNTING, MEDICAL_FILE])
def test_ten_years_from_the_end_of_the_calendar_year(rules: tuple[RetentionRule, ...]) -> None:
    for day in (date(2016, 1, 1), date(2016, 6, 30), date(2016, 12, 31)):
        assert kept_until(rules, day) == date(2026, 12, 31)
    assert retained(rules, date(2016, 1, 1), date(2026, 12, 31))  # the last day included
    assert not retained(rules, date(2016, 12, 31), date(2027, 1, 1))
    assert kept_until(rules, date(2024, 2, 29)) == date(2034, 12, 31)


def test_a_later_rule_governs_records_dated_from_its_day_on() -> None:
    rules = (RetentionRule(date(1900, 1, 1), 10, "old law"),
             RetentionRule(date(2030, 1, 1), 7, "new law"))
    assert rule_for(rules, date(2029, 12, 31)).source == "old law"
    assert rule_for(rules, date(2030, 1, 1)).source == "new law"
    assert kept_until(rules, date(2029, 12, 31)) == date(2039, 12, 31)
    assert kept_until(rules, date(2030, 1, 1)) == date(2037, 12, 31)
    with pytest.raises(ValueError, match="no retention rule"):
        rule_for(rules, date(1899, 12, 31))


def test_retained_ranges_agree_with_the_rule_for_every_day() -> None:
    rules = (RetentionRule(date(1900, 1, 1), 10, "old law"),
             RetentionRule(date(2030, 1, 1), 7, "new law"))
    for today in (date(2026, 11, 26), date(2038, 1, 1), date(2040, 6, 1), date(2045, 1, 1)):
        ranges = retained_ranges(rules, today)
        for year in range(2010, 2046):
            for day in (date(year, 1, 1), date(year, 12, 31)):
                in_ranges = any(lo <= day and (hi is None or day < hi) for lo, hi in ranges)
                assert in_ranges == retained(rules, day, today), (today, day)
    assert retained_ranges(ACCOUNTING, date(2026, 11, 26)) == [(date(2016, 1, 1), None)]


def test_held_lists_what_must_be_kept_the_longest_kept_first() -> None:
    records = [("invoice", "T-2015-000001", date(2015, 5, 1)),
               ("invoice", "T-2016-000001", date(2016, 5, 1)),
               ("credit note", "TC-2020-000001", date(2020, 5, 1))]
    found = held(ACCOUNTING, records, date(2026, 11, 26))
    assert found == [Held("credit note", "TC-2020-000001", date(2020, 5, 1), date(2030, 12, 31)),
                     Held("invoice", "T-2016-000001", date(2016, 5, 1), date(2026, 12, 31))]
    assert str(found[1]) == "invoice T-2016-000001 of 2016-05-01 (kept until 2026-12-31)"

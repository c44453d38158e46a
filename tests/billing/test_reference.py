"""ISO 11649 creditor references derived from invoice numbers."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import iso11649

from luxfact.billing.reference import creditor_reference, format_reference

ISO_EXAMPLE = "RF18539007547034"


def test_the_iso_example_is_valid_and_is_what_we_derive():
    assert iso11649.is_valid(ISO_EXAMPLE)
    # Our check digits are the standard's: the example's own body gives the example back.
    assert creditor_reference("539007547034") == ISO_EXAMPLE
    assert format_reference(ISO_EXAMPLE) == "RF18 5390 0754 7034"


@pytest.mark.parametrize(
    "number", ["NORD-2026-000123", "NORD-AV-2026-000001", "sud/2026/42", "1", "Z"]
)
def test_derived_references_validate(number):
    reference = creditor_reference(number)
    assert iso11649.is_valid(reference)
    assert reference.startswith("RF")


def test_only_letters_and_digits_are_kept_upper_cased():
    assert creditor_reference("nord-2026-0001é") == creditor_reference("NORD20260001")
    assert creditor_reference("NORD-2026-000123")[4:] == "NORD2026000123"


def test_different_numbers_give_different_references():
    numbers = [f"NORD-2026-{seq:06d}" for seq in range(1, 500)]
    references = {creditor_reference(number) for number in numbers}
    assert len(references) == len(numbers)


def test_a_long_number_keeps_its_rightmost_21_characters():
    number = "VERY-LONG-HOSPITAL-PREFIX-2026-000000123456"
    reference = creditor_reference(number)
    assert len(reference) == 25
    assert reference[4:] == "HOSPITALPREFIX2026000000123456"[-21:]
    assert iso11649.is_valid(reference)
    # The sequence at the end still tells two long numbers apart.
    assert creditor_reference(number[:-1] + "7") != reference


def test_a_number_without_letters_or_digits_is_refused():
    with pytest.raises(ValueError):
        creditor_reference("--/--")


def test_format_groups_by_four():
    reference = creditor_reference("NORD-2026-000123")
    printed = format_reference(reference)
    assert printed.replace(" ", "") == reference
    assert all(len(group) == 4 for group in printed.split()[:-1])


@given(st.text(min_size=1, max_size=60).filter(lambda t: any(c.isascii() and c.isalnum()
                                                              for c in t)))
def test_any_number_with_a_letter_or_digit_gives_a_valid_reference(number):
    assert iso11649.is_valid(creditor_reference(number))

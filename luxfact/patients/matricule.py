"""The Luxembourg national identification number (matricule), pure functions.

13 digits: birth date `YYYYMMDD` (month or day `00` when unknown), a 3-digit sequence, a Luhn
check digit and a Verhoeff check digit, both computed over digits 1-11. Before July 2014 the
number had 11 digits (`YYYYMMDD` + 3) with a mod-11 check digit: it is accepted to find or
migrate a patient, never on a new record or a claim.
"""

import calendar
from dataclasses import dataclass
from datetime import date

from stdnum import luhn, verhoeff

LEGACY_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


class InvalidMatricule(ValueError):
    pass


@dataclass(frozen=True)
class Matricule:
    number: str

    @property
    def birth_year(self) -> int:
        return int(self.number[:4])

    def birth_date(self) -> date | None:
        """The birth date it encodes, or None when month or day is unknown (`00`)."""
        year, month, day = int(self.number[:4]), int(self.number[4:6]), int(self.number[6:8])
        if month == 0 or day == 0:
            return None
        return date(year, month, day)

    def masked(self) -> str:
        """For screens and logs that must not show it whole: `1990*********`."""
        return self.number[:4] + "*" * (len(self.number) - 4)


def _check_date_part(digits: str, today: date) -> None:
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:8])
    if year < 1850 or year > today.year:
        raise InvalidMatricule(f"birth year {year} is not plausible")
    if month > 12:
        raise InvalidMatricule(f"month {month:02d} does not exist (00 means unknown)")
    if day > 31 or (month and day > calendar.monthrange(year, month)[1]):
        raise InvalidMatricule(f"day {day:02d} does not exist in {year}-{month:02d}")
    if month and day and date(year, month, day) > today:
        raise InvalidMatricule("the birth date it encodes is in the future")


def parse(value: str, today: date | None = None) -> Matricule:
    """A valid 13-digit matricule, or InvalidMatricule saying exactly what is wrong."""
    digits = value.replace(" ", "")
    if not digits.isascii() or not digits.isdigit():
        raise InvalidMatricule("a matricule has digits only")
    if len(digits) == 11:
        raise InvalidMatricule("this is the old 11-digit number: ask for the 13-digit one "
                               "(the old one is accepted for search only)")
    if len(digits) != 13:
        raise InvalidMatricule(f"a matricule has 13 digits, not {len(digits)}")
    _check_date_part(digits, today or date.today())
    if luhn.calc_check_digit(digits[:11]) != digits[11]:
        raise InvalidMatricule("check digit 12 (Luhn) is wrong: a digit was mistyped")
    if verhoeff.calc_check_digit(digits[:11]) != digits[12]:
        raise InvalidMatricule("check digit 13 (Verhoeff) is wrong: a digit was mistyped")
    return Matricule(digits)


def legacy_check_digit(first_ten: str) -> str | None:
    """Mod-11 check digit of the old number; None when the remainder makes no digit."""
    total = sum(int(d) * w for d, w in zip(first_ten, LEGACY_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return "0"
    if check == 10:
        return None
    return str(check)


def is_legacy(value: str) -> bool:
    """An 11-digit pre-2014 number with a valid mod-11 check digit."""
    digits = value.replace(" ", "")
    return (len(digits) == 11 and digits.isascii() and digits.isdigit()
            and legacy_check_digit(digits[:10]) == digits[10])


def complete(first_eleven: str) -> str:
    """The 13-digit matricule for 11 leading digits (tests and demo data)."""
    return first_eleven + luhn.calc_check_digit(first_eleven) + \
        verhoeff.calc_check_digit(first_eleven)

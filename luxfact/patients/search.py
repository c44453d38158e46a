"""What the desk types, turned into what the database compares. Pure functions."""

import re
from dataclasses import dataclass, field
from datetime import date

from luxfact.kit.text import fold
from luxfact.patients import matricule as mat

MIN_TYPO_LENGTH = 4  # shorter words match by prefix only: one typo in "li" means anything
_DATE = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")


def words(name: str) -> list[str]:
    """Folded words of a name: "Müller-Weber" -> ["muller", "weber"]."""
    return [w for w in re.split(r"[^0-9a-z]+", fold(name)) if w]


def deletion_keys(word: str) -> set[str]:
    """The word and every form of it with one letter deleted."""
    keys = {word}
    if len(word) >= MIN_TYPO_LENGTH:
        keys.update(word[:i] + word[i + 1:] for i in range(len(word)))
    return keys


def name_keys(family_name: str) -> set[str]:
    keys: set[str] = set()
    for word in words(family_name):
        keys |= deletion_keys(word)
    return keys


@dataclass
class SearchTerms:
    matricule: str | None = None
    legacy_matricule: str | None = None
    birth_date: date | None = None
    name_words: list[str] = field(default_factory=list)


def parse_query(q: str) -> SearchTerms:
    """Free text from the desk: a matricule, an old number, a birth date, or name words."""
    terms = SearchTerms()
    for token in q.split():
        digits = token.replace(" ", "")
        if digits.isdigit() and len(digits) == 13:
            terms.matricule = digits
        elif digits.isdigit() and len(digits) == 11 and mat.is_legacy(digits):
            terms.legacy_matricule = digits
        elif digits.isdigit() and len(digits) == 8:
            try:
                terms.birth_date = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
            except ValueError:
                terms.name_words.append(digits)
        elif match := _DATE.match(token):
            day, month, year = (int(g) for g in match.groups())
            try:
                terms.birth_date = date(year, month, day)
            except ValueError:
                terms.name_words.extend(words(token))
        else:
            terms.name_words.extend(words(token))
    return terms


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with prefix (for a range scan)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def rank(first: str | None, rest: list[str], family_folded: str, given_folded: str) -> int | None:
    """How a patient matches name words: 0 exact (prefix of family or given name), 1 one typo
    away in the family name, None not at all. The same rules as the database queries."""
    for word in rest:
        if word not in given_folded and word not in family_folded:
            return None
    if first is None or family_folded.startswith(first) or given_folded.startswith(first):
        return 0
    if name_keys(family_folded) & deletion_keys(first):
        return 1
    return None

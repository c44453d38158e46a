"""How long the law keeps a hospital's records: dated rules, no I/O.

A record may be erased only once every rule that applies to it has run out. The periods are
law, and laws change: each rule is a dated row (it governs records dated from `since` on), so a
new period is a new row, never an edit, and a record keeps the rule of its own date.

Both periods run to the end of a calendar year: accounting documents are kept "from the close
of the financial year" (a hospital's is the calendar year), and the medical file is measured
the same way here, which keeps it at least as long as the law asks.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class RetentionRule:
    since: date  # records dated on or after this day follow the rule
    years: int  # kept this many years after the end of the calendar year of their date
    source: str

    def kept_until(self, day: date) -> date:
        """The last day the record must still be kept."""
        return date(day.year + self.years, 12, 31)


# Invoices, credit notes and the claim files sent to the insurer: Code de commerce, art. 16
# (accounting documents, 10 years from the close of the financial year).
ACCOUNTING: tuple[RetentionRule, ...] = (
    RetentionRule(date(1900, 1, 1), 10, "Code de commerce, art. 16 (accounting documents)"),
)
# Stays, their movements and acts: the patient's file, kept 10 years (loi du 24 juillet 2014
# relative aux droits et obligations du patient).
MEDICAL_FILE: tuple[RetentionRule, ...] = (
    RetentionRule(date(1900, 1, 1), 10, "loi du 24 juillet 2014 (dossier patient)"),
)


def rule_for(rules: Sequence[RetentionRule], day: date) -> RetentionRule:
    """The rule in force for a record dated `day`: the latest whose `since` is not after it."""
    applicable = [rule for rule in rules if rule.since <= day]
    if not applicable:
        raise ValueError(f"no retention rule covers a record dated {day}")
    return max(applicable, key=lambda rule: rule.since)


def kept_until(rules: Sequence[RetentionRule], day: date) -> date:
    return rule_for(rules, day).kept_until(day)


def retained(rules: Sequence[RetentionRule], day: date, today: date) -> bool:
    """Whether a record dated `day` must still be kept on `today` (its last day included)."""
    return today <= kept_until(rules, day)


def retained_ranges(rules: Sequence[RetentionRule], today: date
                    ) -> list[tuple[date, date | None]]:
    """The record dates still under retention on `today`, as [from, to) ranges (to: None for
    no end): what a query over a whole hospital's invoices filters on.

    Under a rule of `years`, a record dated `d` is kept while d.year + years >= today.year.
    """
    ordered = sorted(rules, key=lambda rule: rule.since)
    ranges: list[tuple[date, date | None]] = []
    for n, rule in enumerate(ordered):
        end = ordered[n + 1].since if n + 1 < len(ordered) else None
        start = max(rule.since, date(today.year - rule.years, 1, 1))
        if end is None or start < end:
            ranges.append((start, end))
    return ranges


@dataclass(frozen=True)
class Held:
    """One record that must still be kept: what it is, its date, and until when."""

    what: str  # "invoice", "credit note", "claim file", "stay"
    label: str  # its number, file reference or id
    dated: date
    until: date

    def __str__(self) -> str:
        return f"{self.what} {self.label} of {self.dated} (kept until {self.until})"


def held(rules: Sequence[RetentionRule], records: Sequence[tuple[str, str, date]],
         today: date) -> list[Held]:
    """The records, (what, label, date) each, still under retention on `today`, the one kept
    longest first."""
    out = [Held(what, label, day, kept_until(rules, day))
           for what, label, day in records if retained(rules, day, today)]
    return sorted(out, key=lambda h: (h.until, h.dated, h.label), reverse=True)

"""No log line of the whole suite names a patient or carries a matricule.

The suite creates thousands of patients through every door (API, desk, HL7, hostile
input, property tests); this scan, run after every other test, looks for each of their
names and identifiers in everything the suite logged (in-process apps and live servers,
formatted as production formats them).
"""

import collections
import logging
import re

import pytest
from sqlalchemy import text
from starlette.routing import BaseRoute, Mount

from luxfact.db.engine import Database
from luxfact.kit import logging as luxlog
from luxfact.routes import routes
from tests import suite_logs

# Names this short are also ordinary words and codes of the log lines ("Li", "Ng", "SELECT").
MIN_NAME = 5


def route_words(table: list[BaseRoute]) -> set[str]:
    """The words of every route template: a request line carries them whatever the
    patient ("replay" is a route word, and a test patient's name)."""
    words: set[str] = set()
    for route in table:
        words.update(w.casefold() for w in re.findall(r"\w+", getattr(route, "path", "")))
        if isinstance(route, Mount):
            words |= route_words(route.routes)
    return words


@pytest.mark.runs_last
async def test_no_log_line_of_the_suite_names_a_patient(owner_db: Database) -> None:
    async with owner_db.transaction() as session:  # the owner sees every hospital's rows
        rows = (await session.execute(text(
            "SELECT family_name, given_name, matricule, legacy_matricule FROM patients"
        ))).all()
    rows = [*rows, *suite_logs.ERASED]  # those erased meanwhile are looked for too
    vocabulary = route_words(routes())
    names = {part.strip() for row in rows for part in row[:2]
             if part and len(part.strip()) >= MIN_NAME
             and part.strip().casefold() not in vocabulary}
    matricules = {m for row in rows for m in row[2:] if m}
    captured = suite_logs.lines()
    found = suite_logs.leaks(captured, names, matricules)
    which = collections.Counter(line.split(": ", 1)[1].split(" in ", 1)[0] for line in found)
    assert not found, (f"{len(found)} log lines name a patient ({dict(which.most_common(20))}):"
                       "\n" + "\n".join(found[:20]))


def test_the_scan_finds_a_name_or_matricule_written_to_a_log(tmp_path: object) -> None:
    # The scan itself must be able to fail: a line written by the production formatter
    # with a patient's name is found; a matricule is masked by the formatter already, so
    # only an unformatted copy of it can be found, and is.
    record = logging.LogRecord("luxfact.test", logging.INFO, __file__, 1,
                               "admitted Müller-Kayser on ward 3, 1985031512345", None, None)
    line = luxlog.JsonFormatter().format(record)
    assert "1985031512345" not in line
    captured = [("x.jsonl", line), ("y.log", "raw 1985031512345"), ("z", "Albertine")]
    found = suite_logs.leaks(captured, {"Müller-Kayser", "Albert"}, {"1985031512345"})
    assert [f.split(":")[0] for f in found] == ["x.jsonl", "y.log"]


def test_route_words_are_the_templates_words() -> None:
    words = route_words(routes())
    assert {"replay", "patients", "stays", "invoices"} <= words
    assert "müller" not in words

"""Every setting has a row in the operations guide's configuration reference."""

import re
from pathlib import Path

from luxfact.settings import Settings

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def _documented() -> set[str]:
    text = GUIDE.read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    # A row may name several variables in its first cell (`LUXFACT_HOST`, `LUXFACT_PORT`).
    return {name for row in rows for name in re.findall(r"`(LUXFACT_[A-Z0-9_]+)`",
                                                           row.split("|")[1])}


def test_every_setting_has_a_row_in_the_configuration_reference() -> None:
    expected = {"LUXFACT_" + name.upper() for name in Settings.model_fields}
    missing = expected - _documented()
    assert not missing, f"docs/operations.md, Configuration reference: no row for {missing}"


def test_the_reference_documents_no_setting_that_does_not_exist() -> None:
    expected = {"LUXFACT_" + name.upper() for name in Settings.model_fields}
    assert _documented() - expected == set()

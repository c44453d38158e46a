"""Tenant files: every field checked, every problem reported with file, field and reason."""

from pathlib import Path

import pytest

from luxfact.tenancy.config import read_tenant_dir, read_tenant_file
from tests.conftest import REPO

GOOD = """
legal_name = "Clinique Test"
cns_provider_code = "90000017"
iban = "LU28 0019 4006 4475 0000"
bic = "BCEELULL"

[address]
street = "1, rue Test"
postal_code = "L-1000"
city = "Luxembourg"

[invoices]
number_pattern = "T-{year}-{seq:06}"
credit_note_pattern = "TC-{year}-{seq:06}"
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_demo_tenants_are_valid() -> None:
    configs, problems = read_tenant_dir(REPO / "tenants")
    assert problems == []
    assert {c.slug for c in configs} == {"demo-nord", "demo-sud"}


def test_good_file_is_read_and_normalised(tmp_path: Path) -> None:
    config, problems = read_tenant_file(write(tmp_path, "clinique-test.toml", GOOD))
    assert problems == [] and config is not None
    assert config.data.iban == "LU280019400644750000"
    assert config.data.languages.default == "fr"
    assert len(config.config_hash()) == 64


@pytest.mark.parametrize(("replace", "field", "reason"), [
    ('cns_provider_code = "90000017"', "cns_provider_code", "8 digits"),
    ('iban = "LU28 0019 4006 4475 0000"', "iban", "not a valid IBAN"),
    ('bic = "BCEELULL"', "bic", "not a valid BIC"),
    ('number_pattern = "T-{year}-{seq:06}"', "invoices.number_pattern", "{year} and {seq}"),
    ('legal_name = "Clinique Test"', "legal_name", "at least 1 character"),
])
def test_bad_values_name_the_field(tmp_path: Path, replace: str, field: str, reason: str) -> None:
    bad_values = {
        "cns_provider_code": 'cns_provider_code = "0900001"',
        "iban": 'iban = "LU28 0019 4006 4475 0001"',
        "bic": 'bic = "BCEE"',
        "invoices.number_pattern": 'number_pattern = "T-{seq}"',
        "legal_name": 'legal_name = ""',
    }
    text = GOOD.replace(replace, bad_values[field])
    config, problems = read_tenant_file(write(tmp_path, "bad.toml", text))
    assert config is None
    assert [p.field for p in problems] == [field]
    assert reason in problems[0].reason
    assert str(problems[0]).startswith("bad.toml: " + field)


def test_syntax_error_gives_the_line(tmp_path: Path) -> None:
    config, problems = read_tenant_file(write(tmp_path, "broken.toml", GOOD + "\nnope = \n"))
    assert config is None and problems[0].field == "(syntax)"
    assert "line" in problems[0].reason


def test_missing_and_unknown_fields_are_all_listed(tmp_path: Path) -> None:
    text = GOOD.replace('legal_name = "Clinique Test"\n', "colour = 'blue'\n")
    text = text.replace('city = "Luxembourg"\n', "")
    _, problems = read_tenant_file(write(tmp_path, "incomplete.toml", text))
    assert {p.field for p in problems} == {"legal_name", "colour", "address.city"}


def test_other_checks(tmp_path: Path) -> None:
    cases = {
        "tz.toml": (GOOD.replace('bic = "BCEELULL"', 'bic = "BCEELULL"\ntimezone = "Mars/Base"'),
                    "timezone"),
        "logo.toml": (GOOD.replace('bic = "BCEELULL"', 'bic = "BCEELULL"\nlogo = "none.png"'),
                      "logo"),
        "same.toml": (GOOD.replace('"TC-{year}-{seq:06}"', '"T-{year}-{seq:06}"'), "invoices"),
        "lang.toml": (GOOD + '\n[languages]\ndefault = "it"\n', "languages.default"),
        "Bad_Slug.toml": (GOOD, "(file name)"),
    }
    for name, (text, field) in cases.items():
        _, problems = read_tenant_file(write(tmp_path, name, text))
        assert [p.field for p in problems] == [field], name


def test_bic_without_iban_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace('iban = "LU28 0019 4006 4475 0000"\n', "")
    _, problems = read_tenant_file(write(tmp_path, "nobank.toml", text))
    assert "BIC is given without an IBAN" in problems[0].reason


def test_no_iban_at_all_is_allowed(tmp_path: Path) -> None:
    text = GOOD.replace('iban = "LU28 0019 4006 4475 0000"\n', "").replace('bic = "BCEELULL"\n', "")
    config, problems = read_tenant_file(write(tmp_path, "noiban.toml", text))
    assert problems == [] and config is not None and config.data.iban is None


def test_a_facility_mapped_twice_is_refused(tmp_path: Path) -> None:
    mapped = GOOD + '\n[integration]\nhl7_facilities = ["HIS1"]\n'
    write(tmp_path, "one.toml", mapped)
    write(tmp_path, "two.toml", mapped)
    configs, problems = read_tenant_dir(tmp_path)
    assert len(configs) == 2 and len(problems) == 1 and "already mapped" in problems[0].reason

"""The dependency audit fails on a known vulnerability and only then (offline it reports)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "audit_dependencies.py"

spec = importlib.util.spec_from_file_location("audit_dependencies", SCRIPT)
audit = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(audit)  # type: ignore[union-attr]


def test_a_reported_vulnerability_is_named_with_its_fix() -> None:
    report = {"dependencies": [
        {"name": "jinja2", "version": "2.10", "vulns": [
            {"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "aliases": []}]},
        {"name": "lxml", "version": "6.0.0", "vulns": []},
        {"name": "ghost", "skip_reason": "Dependency not found on PyPI"},
    ]}
    verdict = audit.read_report(report)
    assert verdict.reached and verdict.audited == 2
    assert verdict.vulnerable == ["jinja2 2.10: PYSEC-2019-217 (fixed in: 2.10.1)"]
    assert verdict.skipped == ["ghost: Dependency not found on PyPI"]


def test_a_report_where_every_pin_was_skipped_means_unreachable() -> None:
    verdict = audit.read_report({"dependencies": [
        {"name": "a", "skip_reason": "Dependency not found on PyPI"}]})
    assert not verdict.reached and not verdict.vulnerable


def test_an_old_vulnerable_pin_fails_unless_no_service_answers(tmp_path: Path) -> None:
    # Jinja2 2.10 has published advisories: a reachable service must fail the run; an
    # unreachable one must say loudly that nothing was checked, and not fail.
    pins = tmp_path / "constraints.txt"
    pins.write_text("jinja2==2.10\n")
    run = subprocess.run([sys.executable, str(SCRIPT), str(pins)], capture_output=True,
                         text=True, timeout=600)
    if "SKIPPED" in run.stdout:
        assert run.returncode == 0
        assert "NOT checked" in run.stdout
    else:
        assert run.returncode == 1, run.stdout
        assert "jinja2 2.10:" in run.stdout


def test_an_unpinned_requirement_fails_instead_of_passing_as_offline(tmp_path: Path) -> None:
    pins = tmp_path / "constraints.txt"
    pins.write_text("jinja2\n")  # not pinned: pip-audit refuses it before any network call
    run = subprocess.run([sys.executable, str(SCRIPT), str(pins)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 1, run.stdout
    assert "pip-audit failed" in run.stdout and "SKIPPED" not in run.stdout

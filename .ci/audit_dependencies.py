"""Audit the pinned dependencies (constraints.txt) for known vulnerabilities.

`make test` runs this. It must hold offline too: when no advisory service answers
(no network, or a registry mirror without PyPI's JSON API), it says so loudly and does
not fail; it fails only on a vulnerability actually reported. Services are tried in
order; the first that audits at least one pin gives the verdict.

Usage: python .ci/audit_dependencies.py [constraints.txt]
"""

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("pypi", "osv")
TIMEOUT_S = 180
# What pip-audit's stderr says when the advisory service cannot be reached.
OFFLINE_SIGNS = ("ConnectionError", "NameResolutionError", "Max retries exceeded",
                 "Temporary failure in name resolution", "timed out", "ConnectTimeout")


class AuditFailed(Exception):
    """pip-audit failed for a reason other than the network."""


@dataclass
class Verdict:
    audited: int = 0
    skipped: list[str] = field(default_factory=list)
    vulnerable: list[str] = field(default_factory=list)  # "name version: ID (fix: …)"

    @property
    def reached(self) -> bool:
        return self.audited > 0


def read_report(report: dict) -> Verdict:
    """What pip-audit's JSON report says: pins audited, skipped, and vulnerabilities."""
    verdict = Verdict()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            verdict.skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            fixes = ", ".join(vuln.get("fix_versions", [])) or "none yet"
            verdict.vulnerable.append(
                f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
    return verdict


def run_service(service: str, constraints: Path) -> Verdict | None:
    """The verdict of one advisory service, or None when it could not be reached."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        # --no-deps --disable-pip: audit exactly the pins, without resolving or installing.
        command = [sys.executable, "-m", "pip_audit", "-r", str(constraints), "--no-deps",
                   "--disable-pip", "--progress-spinner", "off", "-s", service,
                   "-f", "json", "-o", str(out)]
        try:
            run = subprocess.run(command, capture_output=True, text=True,  # noqa: S603
                                 timeout=TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return None
        if not out.is_file():
            # A connection error ends pip-audit before it writes; anything else (an
            # unpinned line, a bad file) is our mistake and must not pass as "offline".
            if any(sign in run.stderr for sign in OFFLINE_SIGNS):
                return None
            raise AuditFailed(run.stderr.strip().splitlines()[-1] if run.stderr.strip()
                              else f"pip-audit exited {run.returncode}")
        return read_report(json.loads(out.read_text()))


def main(argv: list[str]) -> int:
    constraints = Path(argv[1] if len(argv) > 1 else "constraints.txt")
    for service in SERVICES:
        try:
            verdict = run_service(service, constraints)
        except AuditFailed as exc:
            print(f"!! pip-audit failed ({service}): {exc}")
            return 1
        if verdict is None or not verdict.reached:
            print(f"   pip-audit: the {service} advisory service could not be reached")
            continue
        if verdict.vulnerable:
            print(f"!! pip-audit ({service}): known vulnerabilities in pinned dependencies:")
            for line in verdict.vulnerable:
                print(f"!!   {line}")
            return 1
        print(f"== pip-audit ({service}): no known vulnerability in {verdict.audited} pins"
              + (f"; {len(verdict.skipped)} not audited" if verdict.skipped else ""))
        for line in verdict.skipped:
            print(f"   not audited: {line}")
        return 0
    print("!! pip-audit SKIPPED: no advisory service could be reached (offline?); the pins in "
          f"{constraints} were NOT checked for known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

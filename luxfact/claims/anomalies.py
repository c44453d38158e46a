"""The insurer's anomaly codes with their labels and the usual resolution, as data.

The list is `claims/anomalies.csv` in the invoices directory (LUXFACT_INVOICES_DIR), so a
new version of the insurer's list, or a hospital's own wording, needs no release. A code the
list does not know is still shown, under its own name, and answered "check".
"""

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from luxfact.kit.language import LANGUAGES

FILE = Path("claims") / "anomalies.csv"
COLUMNS = ("code", "label_fr", "label_de", "label_en", "resolution")
# correct: credit the line and invoice it again, corrected, in a later batch;
# write_off: the insurer will not pay it whatever is sent; check: read the insurer's motif.
RESOLUTIONS = ("correct", "write_off", "check")


class AnomalyListError(ValueError):
    """The anomaly list cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class AnomalyCode:
    code: str
    labels: dict[str, str]
    resolution: str

    def label(self, language: str) -> str:
        return self.labels.get(language) or self.labels["fr"]


@functools.cache  # lru_cache without bound: one list per directory, read once
def load(invoices_dir: Path) -> dict[str, AnomalyCode]:
    path = invoices_dir / FILE
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = tuple(next(reader, ()))
            if header != COLUMNS:
                raise AnomalyListError(f"{path}:1: the columns must be {','.join(COLUMNS)}")
            codes: dict[str, AnomalyCode] = {}
            for number, row in enumerate(reader, start=2):
                entry = _row(path, number, row)
                if entry.code in codes:
                    raise AnomalyListError(f"{path}:{number}: {entry.code} is listed twice")
                codes[entry.code] = entry
    except (OSError, UnicodeDecodeError) as exc:
        raise AnomalyListError(f"{path}: {exc}") from None
    return codes


def _row(path: Path, number: int, row: list[str]) -> AnomalyCode:
    if len(row) != len(COLUMNS):
        raise AnomalyListError(f"{path}:{number}: {len(row)} fields, {len(COLUMNS)} expected")
    values = dict(zip(COLUMNS, (value.strip() for value in row), strict=True))
    empty = [name for name, value in values.items() if not value]
    if empty:
        raise AnomalyListError(f"{path}:{number}: empty {', '.join(empty)}")
    if values["resolution"] not in RESOLUTIONS:
        raise AnomalyListError(f"{path}:{number}: resolution must be one of "
                               f"{', '.join(RESOLUTIONS)}")
    return AnomalyCode(code=values["code"],
                       labels={language: values[f"label_{language}"] for language in LANGUAGES},
                       resolution=values["resolution"])


def describe(codes: dict[str, AnomalyCode], anomaly: dict[str, str],
             language: str) -> dict[str, str]:
    """A stored anomaly (type, code, the insurer's motif) with our label and resolution."""
    known = codes.get(anomaly.get("code", ""))
    return {"type": anomaly.get("type", ""), "code": anomaly.get("code", ""),
            "label": known.label(language) if known else anomaly.get("code", ""),
            "motif": anomaly.get("motif", ""),
            "resolution": known.resolution if known else "check"}

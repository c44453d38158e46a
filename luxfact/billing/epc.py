"""The SEPA payment QR code (EPC069-12, "GiroCode"): payload, matrix and drawing.

The payload carries only what a credit transfer needs: the hospital's name, IBAN and BIC,
the amount and the structured RF reference. No patient identifier ever goes in: the
remittance field is the structured reference, validated as such, and the free-text field
stays empty, so nothing from the patient can slip into what the bank sees.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import zxingcpp
from reportlab.pdfgen.canvas import Canvas
from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum import iso11649

MAX_NAME = 70
MIN_AMOUNT = Decimal("0.01")
MAX_AMOUNT = Decimal("999999999.99")
# EPC069-12 caps the QR code at version 13 (and the payload at 331 bytes).
MAX_VERSION = 13
MAX_PAYLOAD_BYTES = 331
QUIET_ZONE = 4  # modules of light margin that readers need around the code


@dataclass(frozen=True, slots=True)
class QrMatrix:
    """A QR code as rectangles of dark modules, in module units: quick to draw."""

    size: int                                       # modules per side, quiet zone excluded
    rects: tuple[tuple[int, int, int, int], ...]    # (row, column, width, height)


def epc_payload(
    beneficiary: str, iban: str, bic: str | None, amount: Decimal, reference: str
) -> str:
    """The EPC QR text, version 002, UTF-8, SEPA credit transfer with an RF reference."""
    lines = [
        "BCD",
        "002",
        "1",  # character set 1: UTF-8
        "SCT",
        stdnum_bic.validate(bic) if bic else "",
        _name(beneficiary),
        stdnum_iban.validate(iban),
        _amount(amount),
        "",  # purpose code: none
        iso11649.validate(reference),
        # The unstructured remittance and the note to the payer stay empty; the standard
        # forbids trailing separators, so the payload ends with the reference.
    ]
    payload = "\n".join(lines)
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError("EPC payload longer than 331 bytes")
    return payload


def _name(beneficiary: str) -> str:
    # One line, at most 70 characters: a long legal name is cut rather than refused,
    # since the IBAN, not the name, routes the transfer.
    name = " ".join(beneficiary.split())[:MAX_NAME].strip()
    if not name:
        raise ValueError("the beneficiary needs a name")
    return name


def _amount(amount: Decimal) -> str:
    if not isinstance(amount, Decimal):
        raise TypeError("amounts are Decimal")
    if amount != amount.quantize(MIN_AMOUNT) or not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise ValueError(f"EPC amount out of range or not in cents: {amount}")
    return f"EUR{amount:.2f}"


def qr_matrix(payload: str) -> QrMatrix:
    """Encode the payload as the standard demands: error correction M, byte mode, UTF-8.

    zxing-cpp's encoder (C++) picks the data mask by the ISO 18004 penalty rules in about
    half a millisecond, where a pure-Python encoder spends 8-12 ms on that choice: a third
    of a page's rendering time. The bytes are given as such, so no ECI header is added.
    """
    code = zxingcpp.create_barcode(payload.encode("utf-8"), zxingcpp.BarcodeFormat.QRCode,
                                   ec_level="M")
    image = memoryview(code.to_image(scale=1, add_quiet_zones=False))  # type: ignore[arg-type]
    size = image.shape[0] if image.shape else 0
    # Version v has 17 + 4v modules per side.
    version = (size - 17) // 4
    if version > MAX_VERSION:
        raise ValueError(f"EPC QR code needs version {version}; at most 13 allowed")
    pixels = image.tobytes()
    matrix = tuple(bytearray(1 if pixels[row * size + col] == 0 else 0 for col in range(size))
                   for row in range(size))
    return QrMatrix(size=size, rects=tuple(_rectangles(matrix)))


def _rectangles(matrix: tuple[bytearray, ...]) -> Iterator[tuple[int, int, int, int]]:
    """Cover the dark modules with few rectangles: horizontal runs, stacked when the same
    run repeats on the rows below (a third fewer shapes to write than runs alone)."""
    open_runs: dict[tuple[int, int], int] = {}     # (column, length) -> first row
    for row_index, row in enumerate((*matrix, bytearray())):
        runs = set(_runs(row))
        for run in [run for run in open_runs if run not in runs]:
            first = open_runs.pop(run)
            yield (first, run[0], run[1], row_index - first)
        for run in runs:
            open_runs.setdefault(run, row_index)


def _runs(row: bytearray) -> Iterator[tuple[int, int]]:
    start = None
    for col, dark in enumerate((*row, 0)):  # the trailing 0 closes a run at the edge
        if dark and start is None:
            start = col
        elif not dark and start is not None:
            yield (start, col - start)
            start = None


def draw_qr(canvas: Canvas, matrix: QrMatrix, x: float, y: float, size: float) -> None:
    """Draw the code with its bottom-left corner at (x, y), `size` points wide, quiet zone
    included (4 modules each side, as QR readers need).

    One filled path of rectangles in module units (ReportLab's QR widget costs tens of
    milliseconds a page); the transformation scales and flips it into place.
    """
    module = size / (matrix.size + 2 * QUIET_ZONE)
    canvas.saveState()
    canvas.translate(x + QUIET_ZONE * module, y + size - QUIET_ZONE * module)
    canvas.scale(module, -module)
    path = canvas.beginPath()
    for row, col, width, height in matrix.rects:
        # A hair of overlap hides the anti-aliasing seams between stacked rows on screen.
        path.rect(col, row, width, height + 0.02)
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()

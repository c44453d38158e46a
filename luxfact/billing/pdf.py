"""Invoice, credit note and reminder PDFs (PDF/A-3b) from an `InvoiceDocument`.

`render_document` is pure apart from reading the shipped assets (layout, texts, fonts),
which are loaded once per process and path: the billing run calls it from a process pool,
tens of thousands of times a month, so everything that does not depend on the document is
cached, and the page is drawn straight on a ReportLab canvas (no platypus) in two passes:
first the content is measured and cut into pages, so "page x of y" is known, then drawn.

Identical input gives identical bytes: ReportLab runs in invariant mode, dates come from
the document, and the PDF ID is derived from what identifies the document.
"""

import hashlib
import io
import logging
import tomllib
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache, partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from PIL import Image, ImageCms, UnidentifiedImageError
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfdoc as _pdfdoc
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfdoc import (
    PDFArray,
    PDFCatalog,
    PDFDictionary,
    PDFName,
    PDFObject,
    PDFStream,
    PDFString,
)
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from stdnum import iban as stdnum_iban

from luxfact.billing import epc
from luxfact.billing.document import Address, DocumentLine, InvoiceDocument
from luxfact.billing.reference import creditor_reference, format_reference

# ReportLab compresses every stream at zlib's default level (6). Level 3 renders a 15-line
# invoice about 15 % faster for about 4 % more bytes (measured: 14.7 -> 12.6 ms, 50.9 ->
# 52.8 kB). A month-end run renders tens of thousands of them, so this process's ReportLab
# uses level 3; decompression is unchanged, and the same level keeps the bytes identical.
_pdfdoc.zlib = SimpleNamespace(compress=partial(zlib.compress, level=3),
                               decompress=zlib.decompress)

log = logging.getLogger(__name__)

LAYOUT = "standard"
PRODUCER = "Luxfact"
LOGO_DPI = 300
NAMED_COLOURS = ("text", "muted", "accent", "rule", "table_header", "table_stripe")
TABLE_KEYS = ("code", "label", "day", "quantity", "unit_price", "amount", "insurer", "patient")


# --- Assets: layout, fonts, texts, colour profile (read once per process and path) ---


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    width: float
    align: str          # "left" or "right"


@dataclass(frozen=True, slots=True)
class Layout:
    """The layout TOML in points, y counted upwards from the bottom edge as PDF does."""

    width: float
    height: float
    left: float
    right: float        # x of the right margin
    top: float          # y of the top margin
    bottom: float       # y of the bottom margin
    font: str
    bold: str
    title_size: float
    heading_size: float
    body_size: float
    small_size: float
    table_size: float
    leading: float
    colours: dict[str, Color]
    logo_width: float
    logo_height: float
    continued_height: float
    address_top: float
    address_left: float
    address_width: float
    meta_left: float
    meta_label_width: float
    title_top: float
    paragraph_gap: float
    block_gap: float
    padding: float
    columns: tuple[Column, ...]
    totals_width: float
    qr_size: float
    qr_gap: float
    footer_height: float
    date_format: str
    table_date_format: str

    @property
    def text_width(self) -> float:
        return self.right - self.left

    def line(self, size: float) -> float:
        return size * self.leading


@dataclass(frozen=True, slots=True)
class Words:
    """One language's texts with its Babel locale: every word printed comes from here."""

    texts: dict[str, str]   # flattened TOML: "titles.invoice" -> "Facture"
    locale: Locale

    def __call__(self, key: str, **values: object) -> str:
        text = self.texts[key]
        return text.format(**values) if values else text

    def date(self, day: date, fmt: str) -> str:
        return _format_date(day, fmt, self.locale)

    def money(self, amount: Decimal, currency: str) -> str:
        # -0 equals 0 for the cache, so both must print alike (and "-0,00 €" is no use).
        return _format_money(amount if amount else abs(amount), currency, self.locale)

    def number(self, value: int) -> str:
        return _format_number(value, self.locale)

    def country(self, code: str) -> str:
        return self.locale.territories.get(code.upper(), code)


# Babel takes some 50 µs an amount, and a document prints dozens; the same tariff prices,
# line amounts and dates come back invoice after invoice in a billing run, so the
# formatted strings are kept (a few thousand short strings per process).
@lru_cache(maxsize=8192)
def _format_money(amount: Decimal, currency: str, locale: Locale) -> str:
    return format_currency(amount, currency, locale=locale)


@lru_cache(maxsize=2048)
def _format_date(day: date, fmt: str, locale: Locale) -> str:
    return format_date(day, format=fmt, locale=locale)


@lru_cache(maxsize=1024)
def _format_number(value: int, locale: Locale) -> str:
    return format_decimal(value, locale=locale)


@lru_cache(maxsize=8)
def _layout(assets_dir: Path) -> Layout:
    data = tomllib.loads((assets_dir / "layouts" / f"{LAYOUT}.toml").read_text("utf-8"))
    fonts = _register_fonts(assets_dir, data["fonts"])
    page, sizes, header = data["page"], data["sizes"], data["header"]
    address, body, table = data["address"], data["body"], data["table"]
    width, height = page["width_mm"] * mm, page["height_mm"] * mm
    columns = tuple(Column(c["key"], c["width_mm"] * mm, c["align"]) for c in table["columns"])
    if sorted(c.key for c in columns) != sorted(TABLE_KEYS):
        raise ValueError(f"layout {LAYOUT}: table columns must be {TABLE_KEYS}")
    return Layout(
        width=width,
        height=height,
        left=page["margin_left_mm"] * mm,
        right=width - page["margin_right_mm"] * mm,
        top=height - page["margin_top_mm"] * mm,
        bottom=page["margin_bottom_mm"] * mm,
        font=fonts["regular"],
        bold=fonts["bold"],
        title_size=sizes["title"],
        heading_size=sizes["heading"],
        body_size=sizes["body"],
        small_size=sizes["small"],
        table_size=sizes["table"],
        leading=sizes["leading"],
        colours={name: HexColor(data["colours"][name]) for name in NAMED_COLOURS},
        logo_width=header["logo_max_width_mm"] * mm,
        logo_height=header["logo_max_height_mm"] * mm,
        continued_height=header["continued_height_mm"] * mm,
        address_top=height - address["top_mm"] * mm,
        address_left=address["left_mm"] * mm,
        address_width=address["width_mm"] * mm,
        meta_left=address["meta_left_mm"] * mm,
        meta_label_width=address["meta_label_width_mm"] * mm,
        title_top=height - body["title_top_mm"] * mm,
        paragraph_gap=body["paragraph_gap_mm"] * mm,
        block_gap=body["block_gap_mm"] * mm,
        padding=table["padding_mm"] * mm,
        columns=columns,
        totals_width=data["totals"]["width_mm"] * mm,
        qr_size=data["payment"]["qr_size_mm"] * mm,
        qr_gap=data["payment"]["qr_gap_mm"] * mm,
        footer_height=data["footer"]["height_mm"] * mm,
        date_format=data["formats"]["date"],
        table_date_format=data["formats"]["table_date"],
    )


def _register_fonts(assets_dir: Path, fonts: dict[str, dict[str, str]]) -> dict[str, str]:
    """Register the shipped TrueType fonts with ReportLab; they are embedded (subset) in
    every document, as PDF/A requires. ReportLab's registry is per process, like our cache."""
    names = {}
    for role in ("regular", "bold"):
        name, file = fonts[role]["name"], fonts[role]["file"]
        pdfmetrics.registerFont(TTFont(name, str(assets_dir / "fonts" / file)))
        names[role] = name
    return names


@lru_cache(maxsize=16)
def _words(assets_dir: Path, language: str) -> Words:
    data = tomllib.loads((assets_dir / "texts" / f"{language}.toml").read_text("utf-8"))
    locale = Locale.parse(data.pop("locale"))
    return Words(texts=dict(_flatten(data)), locale=locale)


def _flatten(data: dict, prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@lru_cache(maxsize=1)
def _srgb_profile() -> bytes:
    """An sRGB ICC profile for the PDF/A output intent.

    LittleCMS stamps the profile's header with the current time (bytes 24-35), which would
    make the PDF differ from one process to the next; it gets a fixed date instead.
    """
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = bytes.fromhex("07d0 0001 0001 0000 0000 0000")  # 2000-01-01 00:00:00
    return bytes(profile)


@lru_cache(maxsize=16)
def _logo(data: bytes, max_width: float, max_height: float) -> ImageReader | None:
    """The tenant's logo, decoded once per process.

    Converted to RGB(A), since a CMYK or palette image would bring a colour space that the
    sRGB output intent does not cover, and shrunk to 300 dpi at its printed size: ReportLab
    compresses the pixels anew into every document, so a large logo would cost each one.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError):
        # A broken logo must not stop a billing run; the document goes out without it.
        log.warning("tenant logo could not be decoded; printing without it")
        return None
    if image.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in image.mode or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    scale = min(max_width / image.width, max_height / image.height)
    image.thumbnail((max(1, round(image.width * scale * LOGO_DPI / 72)),
                     max(1, round(image.height * scale * LOGO_DPI / 72))))
    return ImageReader(image)


# --- Text measuring ---------------------------------------------------------------


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Word-wrap to `width`; a word longer than the width is cut, so nothing overflows."""
    if "\n" not in text and pdfmetrics.stringWidth(text, font, size) <= width:
        return [text]  # the common case: one call instead of one per word
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split():
            candidate = f"{current} {word}" if current else word
            if pdfmetrics.stringWidth(candidate, font, size) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = word
            while pdfmetrics.stringWidth(current, font, size) > width and len(current) > 1:
                cut = _fitting_prefix(current, font, size, width)
                lines.append(current[:cut])
                current = current[cut:]
        lines.append(current)
    return lines


def _fitting_prefix(word: str, font: str, size: float, width: float) -> int:
    cut = len(word) - 1
    while cut > 1 and pdfmetrics.stringWidth(word[:cut], font, size) > width:
        cut -= 1
    return cut


# --- The flow: measured blocks, cut into pages ----------------------------------------


@dataclass(frozen=True, slots=True)
class Block:
    """Something placed in the page flow: its height and how to draw it from a top edge."""

    height: float
    draw: Callable[[Canvas, float], None]
    in_table: bool = False      # a table row: needs the column headers above it on its page


@dataclass(frozen=True, slots=True)
class Page:
    placed: tuple[tuple[Block, float], ...]


def _paginate(
    blocks: list[Block], table_header: Block, first_top: float, next_top: float, floor: float
) -> list[Page]:
    """Cut the flow into pages, each block kept whole; rows get the column headers again
    at the top of every page they continue on."""
    pages: list[list[tuple[Block, float]]] = [[]]
    y, has_header = first_top, False
    for block in blocks:
        needs_header = block.in_table and not has_header
        need = block.height + (table_header.height if needs_header else 0)
        # Break unless the page is a fresh continuation page: a block taller than a whole
        # page then goes out as it is rather than looping for ever.
        if y - need < floor and (pages[-1] or len(pages) == 1):
            pages.append([])
            y, has_header = next_top, False
            needs_header = block.in_table
        if needs_header:
            pages[-1].append((table_header, y))
            y -= table_header.height
            has_header = True
        pages[-1].append((block, y))
        y -= block.height
    return [Page(tuple(page)) for page in pages]


# --- Rendering ---------------------------------------------------------------------


def render_document(doc: InvoiceDocument, assets_dir: Path) -> bytes:
    """The document as PDF/A-3b bytes."""
    assets_dir = Path(assets_dir)
    layout = _layout(assets_dir)
    words = _words(assets_dir, doc.language)
    title = words(f"titles.{doc.kind}")
    buffer = io.BytesIO()
    canvas = Canvas(
        buffer,
        pagesize=(layout.width, layout.height),
        invariant=1,
        pageCompression=1,
        # Without it ReportLab starts every page in Helvetica, an unembedded font.
        initialFontName=layout.font,
        pdfVersion=(1, 7),
        lang=str(words.locale).replace("_", "-"),
    )
    _Renderer(doc, layout, words, canvas, title).render()
    _declare_pdfa(canvas, doc, f"{title} {doc.number}")
    canvas.save()
    return buffer.getvalue()


class _PdfaInfo(PDFObject):
    """The document information dictionary, saying what the XMP says and nothing more
    (ReportLab's own adds an "unspecified" subject and a /Trapped that the XMP lacks)."""

    def __init__(self, title: str, author: str, pdf_date: str) -> None:
        self.entries = {"Title": title, "Author": author, "Creator": PRODUCER,
                        "Producer": PRODUCER, "CreationDate": pdf_date, "ModDate": pdf_date}

    def digest(self, md5: Any) -> None:
        """ReportLab feeds the info into its file signature; the ID is set apart anyway."""

    def format(self, document: Any) -> bytes:
        return PDFDictionary({key: PDFString(value) for key, value in self.entries.items()}
                             ).format(document)


def _declare_pdfa(canvas: Canvas, doc: InvoiceDocument, title: str) -> None:
    """What PDF/A-3b asks beyond ReportLab's output, added before it writes the file: XMP
    metadata declaring the conformance, an info dictionary saying the same, an sRGB output
    intent, and a file ID derived from the document (ReportLab's depends on the clock).

    Done inside ReportLab rather than by rewriting its output with pikepdf: the same
    objects, without parsing and writing the file a second time (3 ms of 15 a document).
    """
    issued = datetime.combine(doc.issued_on, datetime.min.time(), tzinfo=UTC)
    author = doc.hospital.legal_name
    pdf = canvas._doc  # ReportLab's document: the objects it writes out
    pdf.info = _PdfaInfo(title, author, issued.strftime("D:%Y%m%d%H%M%SZ"))
    catalog = pdf.Catalog
    # The XMP stays plain text (no filter), as PDF/A readers expect to find it.
    catalog.Metadata = PDFStream(
        PDFDictionary({"Type": PDFName("Metadata"), "Subtype": PDFName("XML")}),
        _xmp(title, author, issued), filters=[])
    catalog.OutputIntents = PDFArray([PDFDictionary({
        "Type": PDFName("OutputIntent"),
        "S": PDFName("GTS_PDFA1"),
        "OutputConditionIdentifier": PDFString("sRGB IEC61966-2.1"),
        "Info": PDFString("sRGB IEC61966-2.1"),
        "DestOutputProfile": pdf.Reference(
            PDFStream(PDFDictionary({"N": 3}), _srgb_profile(), filters=[])),
    })])
    # The catalog writes only the keys it knows: add this one for this document.
    catalog.__NoDefault__ = [*PDFCatalog.__NoDefault__, "OutputIntents"]
    # Unique per document, identical for the same document: a hash of what identifies it.
    seed = f"{doc.kind}|{doc.number}|{doc.issued_on}|{doc.reminder_on}|{doc.language}"
    digest = hashlib.md5(seed.encode(), usedforsecurity=False).hexdigest().upper()
    pdf._ID = f"\n[<{digest}><{digest}>]\n".encode()


class _Renderer:
    """Draws one document; holds what every drawing step needs."""

    def __init__(
        self, doc: InvoiceDocument, layout: Layout, words: Words, canvas: Canvas, title: str
    ):
        self.doc, self.layout, self.words, self.canvas, self.title = (
            doc, layout, words, canvas, title
        )
        # ReportLab writes out every font and colour change; skipping the ones that
        # change nothing keeps the page streams (and the time to write them) small.
        self._font: tuple[str, float] | None = None
        self._colour: str | None = None

    def render(self) -> None:
        lay = self.layout
        intro = self._intro()
        floor = lay.bottom + lay.footer_height
        blocks = [intro, *self._rows(), *self._closing()]
        first_top = lay.title_top + lay.title_size
        next_top = lay.top - lay.continued_height
        pages = _paginate(blocks, self._table_header(), first_top, next_top, floor)
        for number, page in enumerate(pages, start=1):
            if number == 1:
                self._first_page_header()
            else:
                self._continued_header()
            for block, top in page.placed:
                block.draw(self.canvas, top)
            self._footer(number, len(pages))
            self.canvas.showPage()
            self._font = self._colour = None  # a new page starts from ReportLab's defaults

    # Small drawing helpers -------------------------------------------------------------

    def _text(
        self, x: float, y: float, text: str, size: float, *, bold: bool = False,
        colour: str = "text", align: str = "left",
    ) -> None:
        c = self.canvas
        font = (self.layout.bold if bold else self.layout.font, size)
        if font != self._font:
            c.setFont(*font)
            self._font = font
        self._fill(colour)
        if align == "right":
            c.drawRightString(x, y, text)
        else:
            c.drawString(x, y, text)

    def _fill(self, colour: str) -> None:
        if colour != self._colour:
            self.canvas.setFillColor(self.layout.colours[colour])
            self._colour = colour

    def _lines(
        self, x: float, top: float, lines: list[str], size: float, *, bold: bool = False,
        colour: str = "text", align: str = "left",
    ) -> float:
        """Draw lines from a top edge; returns the y below them."""
        step = self.layout.line(size)
        y = top
        for line in lines:
            self._text(x, y - size, line, size, bold=bold, colour=colour, align=align)
            y -= step
        return y

    def _date(self, day: date) -> str:
        return self.words.date(day, self.layout.date_format)

    def _money(self, amount: Decimal) -> str:
        return self.words.money(amount, self.doc.currency)

    # Page furniture ------------------------------------------------------------------

    def _first_page_header(self) -> None:
        lay, doc, w = self.layout, self.doc, self.words
        self._draw_logo()
        hospital = doc.hospital
        lines = [hospital.address.street, _postal_city(hospital.address)]
        if hospital.address.country.upper() != "LU":
            lines.append(w.country(hospital.address.country))
        y = self._lines(lay.right, lay.top, [hospital.legal_name], lay.heading_size,
                        bold=True, colour="accent", align="right")
        y = self._lines(lay.right, y, [line for line in lines if line], lay.body_size,
                        align="right")
        self._lines(lay.right, y, [w("hospital.cns_provider_code",
                                     code=hospital.cns_provider_code)],
                    lay.small_size, colour="muted", align="right")
        self._patient_block()
        self._meta_block()

    def _draw_logo(self) -> None:
        if not self.doc.hospital.logo:
            return
        lay = self.layout
        reader = _logo(self.doc.hospital.logo, lay.logo_width, lay.logo_height)
        if reader is None:
            return
        px_width, px_height = reader.getSize()
        scale = min(lay.logo_width / px_width, lay.logo_height / px_height)
        width, height = px_width * scale, px_height * scale
        self.canvas.drawImage(reader, lay.left, lay.top - height, width, height, mask="auto")

    def _patient_block(self) -> None:
        lay, doc, w = self.layout, self.doc, self.words
        patient = doc.patient
        width = lay.address_width
        name = _wrap(patient.name, lay.bold, lay.body_size, width)
        y = self._lines(lay.address_left, lay.address_top, name, lay.body_size, bold=True)
        parts = [patient.street, _postal_city(patient)]
        if patient.country.upper() != doc.hospital.address.country.upper():
            parts.append(w.country(patient.country).upper())
        lines = [line for part in parts if part
                 for line in _wrap(part, lay.font, lay.body_size, width)]
        y = self._lines(lay.address_left, y, lines, lay.body_size)
        if doc.patient_birth_date:
            birth = w("patient.birth_date", date=self._date(doc.patient_birth_date))
            self._lines(lay.address_left, y - lay.paragraph_gap, [birth], lay.small_size,
                        colour="muted")

    def _meta_block(self) -> None:
        lay, doc, w = self.layout, self.doc, self.words
        rows = [(w("meta.number"), doc.number), (w("meta.issued_on"), self._date(doc.issued_on))]
        if doc.kind == "reminder" and doc.reminder_on:
            rows.append((w("meta.reminder_on"), self._date(doc.reminder_on)))
        if doc.due_on:
            rows.append((w("meta.due_on"), self._date(doc.due_on)))
        # Labels differ in length between languages: values start past the longest one.
        label_width = max(
            pdfmetrics.stringWidth(label, lay.font, lay.body_size) for label, _ in rows
        )
        value_x = lay.meta_left + max(lay.meta_label_width, label_width + 3 * mm)
        y = lay.address_top
        for label, value in rows:
            self._text(lay.meta_left, y - lay.body_size, label, lay.body_size, colour="muted")
            self._text(value_x, y - lay.body_size, value, lay.body_size, bold=True)
            y -= lay.line(lay.body_size)

    def _continued_header(self) -> None:
        lay = self.layout
        size = lay.body_size
        self._text(lay.left, lay.top - size, self.doc.hospital.legal_name, size, bold=True,
                   colour="accent")
        continued = self.words("titles.continued", title=self.title, number=self.doc.number)
        self._text(lay.right, lay.top - size, continued, size, align="right")

    def _footer(self, number: int, total: int) -> None:
        lay, c = self.layout, self.canvas
        rule_y = lay.bottom + lay.footer_height - lay.paragraph_gap
        c.setStrokeColor(lay.colours["rule"])
        c.setLineWidth(0.5)
        c.line(lay.left, rule_y, lay.right, rule_y)
        page = self.words("footer.page", page=number, pages=total)
        page_width = pdfmetrics.stringWidth(page, lay.font, lay.small_size)
        self._text(lay.right, lay.bottom, page, lay.small_size, colour="muted", align="right")
        if self.doc.hospital.footer:
            width = lay.text_width - page_width - 10 * mm
            lines = _wrap(self.doc.hospital.footer, lay.font, lay.small_size, width)[:2]
            self._lines(lay.left, rule_y - 1.5 * mm, lines, lay.small_size, colour="muted")

    # The flow ------------------------------------------------------------------------

    def _intro(self) -> Block:
        """Title, what a credit note corrects or a reminder asks, and the stay."""
        lay, doc, w = self.layout, self.doc, self.words
        paragraphs: list[list[str]] = []
        if doc.kind == "credit_note":
            if doc.credited_number:
                paragraphs.append(self._para(w("credit_note.credits",
                                               number=doc.credited_number)))
            if doc.reason:
                paragraphs.append(self._para(w("credit_note.reason", reason=doc.reason)))
        elif doc.kind == "reminder":
            paragraphs.append(self._para(w("reminder.text")))
        if doc.stay:
            paragraphs.append(self._para(self._stay_text()))
        body_step = lay.line(lay.body_size)
        height = lay.line(lay.title_size) + lay.paragraph_gap + sum(
            len(p) * body_step + lay.paragraph_gap for p in paragraphs
        ) + lay.block_gap

        def draw(canvas: Canvas, top: float) -> None:
            y = self._lines(lay.left, top, [self.title], lay.title_size, bold=True,
                            colour="accent") - lay.paragraph_gap
            for paragraph in paragraphs:
                y = self._lines(lay.left, y, paragraph, lay.body_size) - lay.paragraph_gap

        return Block(height, draw)

    def _para(self, text: str) -> list[str]:
        lay = self.layout
        return _wrap(text, lay.font, lay.body_size, lay.text_width)

    def _stay_text(self) -> str:
        w, stay = self.words, self.doc.stay
        assert stay is not None
        kind = w.texts.get(f"stay.kinds.{stay.kind}", stay.kind)
        discharge = (
            w("stay.discharged_on", date=self._date(stay.discharged_on))
            if stay.discharged_on else w("stay.not_discharged")
        )
        summary = w("stay.summary", kind=kind, admitted=self._date(stay.admitted_on),
                    discharge=discharge)
        period = w("stay.period", start=self._date(stay.period_from),
                   end=self._date(stay.period_to))
        return f"{summary}\n{period}"

    def _table_header(self) -> Block:
        lay, w = self.layout, self.words
        size = lay.table_size
        cells = [
            (column, _wrap(w(f"columns.{column.key}"), lay.bold, size,
                           column.width - 2 * lay.padding))
            for column in lay.columns
        ]
        height = max(len(lines) for _, lines in cells) * lay.line(size) + 2 * lay.padding

        def draw(canvas: Canvas, top: float) -> None:
            self._fill("table_header")
            canvas.rect(lay.left, top - height, lay.text_width, height, stroke=0, fill=1)
            self._cells(top, cells, size, bold=True)

        return Block(height, draw)

    def _rows(self) -> list[Block]:
        return [self._row(line, index) for index, line in enumerate(self.doc.lines)]

    def _row(self, line: DocumentLine, index: int) -> Block:
        lay, w = self.layout, self.words
        size = lay.table_size
        values = {
            "code": line.code,
            "label": line.label,
            "day": w.date(line.day, lay.table_date_format),
            "quantity": w.number(line.quantity),
            "unit_price": self._money(line.unit_price),
            "amount": self._money(line.amount),
            "insurer": self._money(line.insurer),
            "patient": self._money(line.patient),
        }
        cells = [
            (column, _wrap(values[column.key], lay.font, size, column.width - 2 * lay.padding))
            for column in lay.columns
        ]
        height = max(len(lines) for _, lines in cells) * lay.line(size) + 2 * lay.padding

        def draw(canvas: Canvas, top: float) -> None:
            if index % 2:
                self._fill("table_stripe")
                canvas.rect(lay.left, top - height, lay.text_width, height, stroke=0, fill=1)
            self._cells(top, cells, size)

        return Block(height, draw, in_table=True)

    def _cells(self, top: float, cells: list[tuple[Column, list[str]]], size: float,
               bold: bool = False) -> None:
        lay = self.layout
        x = lay.left
        for column, lines in cells:
            if column.align == "right":
                self._lines(x + column.width - lay.padding, top - lay.padding, lines, size,
                            bold=bold, align="right")
            else:
                self._lines(x + lay.padding, top - lay.padding, lines, size, bold=bold)
            x += column.width

    def _closing(self) -> list[Block]:
        blocks = [self._totals(), self._payment()]
        if self.doc.notes:
            blocks.append(self._notes())
        return blocks

    def _totals(self) -> Block:
        lay, doc, w = self.layout, self.doc, self.words
        rows = [
            (w("totals.total"), doc.total),
            (w("totals.insurer"), doc.insurer_total),
            (w("totals.patient"), doc.patient_total),
            (w("totals.paid"), doc.paid),
        ]
        step = lay.line(lay.body_size)
        due_step = lay.line(lay.heading_size)
        height = lay.block_gap + len(rows) * step + lay.paragraph_gap + due_step + lay.block_gap
        x = lay.right - lay.totals_width

        def draw(canvas: Canvas, top: float) -> None:
            y = top - lay.block_gap
            for label, amount in rows:
                self._text(x, y - lay.body_size, label, lay.body_size)
                self._text(lay.right, y - lay.body_size, self._money(amount), lay.body_size,
                           align="right")
                y -= step
            canvas.setStrokeColor(lay.colours["rule"])
            canvas.setLineWidth(0.75)
            canvas.line(x, y - lay.paragraph_gap / 2, lay.right, y - lay.paragraph_gap / 2)
            y -= lay.paragraph_gap
            size = lay.heading_size
            self._text(x, y - size, w("totals.amount_due"), size, bold=True, colour="accent")
            self._text(lay.right, y - size, self._money(doc.amount_due), size, bold=True,
                       colour="accent", align="right")

        return Block(height, draw)

    def _payment(self) -> Block:
        """Where to pay: bank details, the RF reference and the QR code, or why not."""
        lay, doc, w = self.layout, self.doc, self.words
        hospital = doc.hospital
        qr = self._qr()
        text_width = lay.text_width - (lay.qr_size + lay.qr_gap if qr else 0)

        def para(text: str) -> list[str]:
            return _wrap(text, lay.font, lay.body_size, text_width)

        lines: list[tuple[str, bool]] = []      # (text, bold)
        if doc.amount_due <= 0:
            lines += [(line, False) for line in para(w("payment.nothing_to_pay"))]
        else:
            if doc.due_on:
                lines.append((w("payment.due_by", date=self._date(doc.due_on)), True))
            if hospital.iban:
                bank = f"{w('payment.iban')}: {stdnum_iban.format(hospital.iban)}"
                if hospital.bic:
                    bank += f"    {w('payment.bic')}: {hospital.bic}"
                lines.append((bank, False))
            lines.append((f"{w('payment.reference')}: {format_reference(self._reference())}",
                          True))
            lines += [(line, False) for line in para(w("payment.reference_hint"))]
            notice = w("payment.qr_hint") if qr else w("payment.no_bank_details")
            lines += [(line, not qr) for line in para(notice)]
        step = lay.line(lay.body_size)
        heading_step = lay.line(lay.heading_size)
        text_height = heading_step + lay.paragraph_gap + len(lines) * step
        height = max(text_height, lay.qr_size if qr else 0) + lay.block_gap

        def draw(canvas: Canvas, top: float) -> None:
            y = self._lines(lay.left, top, [w("payment.heading")], lay.heading_size,
                            bold=True, colour="accent") - lay.paragraph_gap
            for text, bold in lines:
                y = self._lines(lay.left, y, [text], lay.body_size, bold=bold)
            if qr:
                self._fill("text")
                epc.draw_qr(canvas, qr, lay.right - lay.qr_size, top - lay.qr_size,
                            lay.qr_size)

        return Block(height, draw)

    def _reference(self) -> str:
        return self.doc.reference or creditor_reference(self.doc.number)

    def _qr(self) -> epc.QrMatrix | None:
        """A payment QR code only when there is something to pay, in euros, to an IBAN."""
        doc = self.doc
        hospital = doc.hospital
        if doc.amount_due <= 0 or not hospital.iban or doc.currency != "EUR":
            return None
        payload = epc.epc_payload(hospital.legal_name, hospital.iban, hospital.bic,
                                  doc.amount_due, self._reference())
        return epc.qr_matrix(payload)

    def _notes(self) -> Block:
        lay, w = self.layout, self.words
        lines = [line for note in self.doc.notes for line in self._para(note)]
        height = lay.line(lay.heading_size) + len(lines) * lay.line(lay.body_size)
        height += lay.block_gap

        def draw(canvas: Canvas, top: float) -> None:
            y = self._lines(lay.left, top, [w("notes.heading")], lay.heading_size, bold=True,
                            colour="accent")
            self._lines(lay.left, y, lines, lay.body_size)

        return Block(height, draw)


def _postal_city(address: Address) -> str:
    return " ".join(part for part in (address.postal_code, address.city) if part)


# --- PDF/A-3b ---------------------------------------------------------------------------


_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:pdf="http://ns.adobe.com/pdf/1.3/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/">
   <pdfaid:part>3</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
   <dc:creator><rdf:Seq><rdf:li>{author}</rdf:li></rdf:Seq></dc:creator>
   <pdf:Producer>{producer}</pdf:Producer>
   <xmp:CreatorTool>{producer}</xmp:CreatorTool>
   <xmp:CreateDate>{date}</xmp:CreateDate>
   <xmp:ModifyDate>{date}</xmp:ModifyDate>
   <xmp:MetadataDate>{date}</xmp:MetadataDate>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""


def _xmp(title: str, author: str, issued: datetime) -> bytes:
    return _XMP.format(
        title=xml_escape(title),
        author=xml_escape(author),
        producer=PRODUCER,
        date=issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ).encode("utf-8")

"""The PDF renderer, checked the way a reader and a bank app see its output: text through
pdftotext, the payment QR code through zbarimg, the file's structure through pikepdf."""

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pikepdf
import pytest
from babel.dates import format_date
from babel.numbers import format_currency

from luxfact.billing import epc
from luxfact.billing.document import (
    Address,
    DocumentLine,
    Hospital,
    InvoiceDocument,
    StayPeriod,
)
from luxfact.billing.pdf import render_document
from luxfact.billing.reference import creditor_reference, format_reference

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "invoices"
LOGO = (ROOT / "tenants" / "demo-nord.png").read_bytes()
IBAN = "LU28 0019 4006 4475 0000"
BIC = "BCEELULL"
HOSPITAL_NAME = "Clinique du Nord (démo)"
PATIENT_NAME = "Marie-Thérèse Schmitz"
MATRICULE = "1985031512345"  # a 13-digit national identification number
LOCALES = {"fr": "fr_LU", "de": "de_LU", "en": "en_GB"}
TITLES = {
    "fr": {"invoice": "Facture", "credit_note": "Note de crédit", "reminder": "Rappel"},
    "de": {"invoice": "Rechnung", "credit_note": "Gutschrift", "reminder": "Zahlungserinnerung"},
    "en": {"invoice": "Invoice", "credit_note": "Credit note", "reminder": "Payment reminder"},
}
CENT = Decimal("0.01")

TOOLS = {tool: shutil.which(tool) or tool for tool in ("pdftotext", "pdftoppm", "zbarimg")}
needs_tools = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in TOOLS),
    reason="poppler-utils and zbar-tools missing (`make install` installs them)",
)


def make_lines(count: int, labels: list[str] | None = None) -> tuple[DocumentLine, ...]:
    lines = []
    for i in range(count):
        unit = Decimal("95.50") + Decimal("17.25") * i
        quantity = i % 3 + 1
        amount = unit * quantity
        insurer = (amount * Decimal("0.60")).quantize(CENT)
        label = labels[i % len(labels)] if labels else f"Acte technique n° {i + 1}"
        lines.append(DocumentLine(
            code=f"1C{i:03d}", label=label, day=date(2026, 3, 1) + timedelta(days=i % 9),
            quantity=quantity, unit_price=unit, amount=amount, insurer=insurer,
            patient=amount - insurer,
        ))
    return tuple(lines)


def make_doc(
    language: str = "fr", *, kind: str = "invoice", count: int = 15, iban: str | None = IBAN,
    number: str = "NORD-2026-000123", labels: list[str] | None = None, **changes: object,
) -> InvoiceDocument:
    hospital = Hospital(
        legal_name=HOSPITAL_NAME,
        address=Address(HOSPITAL_NAME, "12, rue de l'Hôpital", "L-9080", "Ettelbruck"),
        cns_provider_code="90000017",
        iban=iban,
        bic=BIC if iban else None,
        logo=LOGO,
        footer="Clinique du Nord (démo) · établissement fictif pour démonstration",
    )
    lines = make_lines(count, labels)
    total = sum((line.amount for line in lines), Decimal("0"))
    insurer = sum((line.insurer for line in lines), Decimal("0"))
    paid = Decimal("25.00")
    doc = InvoiceDocument(
        kind=kind,  # type: ignore[arg-type]
        language=language,  # type: ignore[arg-type]
        number=number,
        issued_on=date(2026, 3, 12),
        due_on=date(2026, 4, 11),
        hospital=hospital,
        patient=Address(PATIENT_NAME, "5, rue des Lilas", "L-1234", "Luxembourg"),
        patient_birth_date=date(1985, 3, 15),
        stay=StayPeriod("inpatient", date(2026, 3, 1), date(2026, 3, 9), date(2026, 3, 1),
                        date(2026, 3, 9)),
        lines=lines,
        total=total,
        insurer_total=insurer,
        patient_total=total - insurer,
        paid=paid,
        amount_due=total - insurer - paid,
        reference=creditor_reference(number),
    )
    return replace(doc, **changes)


def normalise(text: str) -> str:
    # Babel separates with no-break spaces; pdftotext may give them back as either.
    return re.sub(r"[ \u00a0\u202f]+", " ", text)


def pdf_text(pdf: bytes, tmp_path: Path, page: int | None = None) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    result = subprocess.run([TOOLS["pdftotext"], "-layout", *pages, str(path), "-"],
                            capture_output=True, check=True)
    return normalise(result.stdout.decode("utf-8"))


def qr_codes(pdf: bytes, tmp_path: Path) -> list[str]:
    """What a scanner reads on page 1 at 150 dpi (raw bytes, decoded as UTF-8: zbar would
    otherwise guess a legacy charset for the accented name)."""
    path = tmp_path / "doc.pdf"
    path.write_bytes(pdf)
    subprocess.run([TOOLS["pdftoppm"], "-png", "-r", "150", "-f", "1", "-l", "1", str(path),
                    str(tmp_path / "page")], check=True)
    (png,) = tmp_path.glob("page*.png")
    result = subprocess.run([TOOLS["zbarimg"], "--raw", "-q", "-Sbinary", str(png)],
                            capture_output=True)
    if result.returncode != 0:  # 4: no code found
        return []
    return [result.stdout.decode("utf-8").rstrip("\n")]


def page_count(pdf: bytes) -> int:
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        return len(opened.pages)


# --- Content, per language -----------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("language", ["fr", "de", "en"])
def test_a_15_line_invoice_says_it_all_in_its_language(language, tmp_path):
    doc = make_doc(language)
    assert doc.amount_due > 1000  # so the amount shows the locale's grouping
    pdf = render_document(doc, ASSETS)
    text = pdf_text(pdf, tmp_path)
    locale = LOCALES[language]

    assert TITLES[language]["invoice"] in text
    assert normalise(format_currency(doc.amount_due, "EUR", locale=locale)) in text
    assert normalise(format_currency(doc.total, "EUR", locale=locale)) in text
    assert format_date(doc.due_on, format="long", locale=locale) in text
    assert IBAN in text
    assert BIC in text
    assert format_reference(doc.reference) in text
    assert PATIENT_NAME in text
    assert "90000017" in text
    assert page_count(pdf) == 1


@needs_tools
@pytest.mark.parametrize("language", ["fr", "de", "en"])
def test_the_qr_code_is_the_epc_payment_and_nothing_about_the_patient(language, tmp_path):
    # The matricule is printed on the document (in a note), never put in the code.
    doc = make_doc(language, notes=(f"Matricule {MATRICULE}",))
    pdf = render_document(doc, ASSETS)
    assert MATRICULE in pdf_text(pdf, tmp_path)
    (payload,) = qr_codes(pdf, tmp_path)
    lines = payload.split("\n")
    assert lines == [
        "BCD", "002", "1", "SCT", BIC, HOSPITAL_NAME, IBAN.replace(" ", ""),
        f"EUR{doc.amount_due:.2f}", "", doc.reference,
    ]
    assert payload == epc.epc_payload(HOSPITAL_NAME, IBAN, BIC, doc.amount_due,
                                      doc.reference)
    assert "Schmitz" not in payload
    assert MATRICULE not in payload
    # No 13-digit number anywhere but inside the IBAN's own digits.
    assert not [line for line in lines if re.search(r"\d{13}", line) and line != lines[6]]


# --- Determinism ---------------------------------------------------------------------


def test_the_same_document_gives_the_same_bytes():
    doc = make_doc()
    assert render_document(doc, ASSETS) == render_document(make_doc(), ASSETS)
    other = make_doc(number="NORD-2026-000124", reference=creditor_reference("NORD-2026-000124"))
    assert render_document(other, ASSETS) != render_document(doc, ASSETS)


def test_the_bytes_do_not_depend_on_the_process_or_the_clock():
    """Another interpreter, another time and SOURCE_DATE_EPOCH set: the same bytes (the
    colour profile LittleCMS makes is stamped with the time unless we fix it)."""
    here = hashlib.sha256(render_document(make_doc("de"), ASSETS)).hexdigest()
    script = (
        "import hashlib, sys; sys.path.insert(0, sys.argv[1]);"
        "from tests.billing.test_pdf import make_doc, ASSETS;"
        "from luxfact.billing.pdf import render_document;"
        "print(hashlib.sha256(render_document(make_doc('de'), ASSETS)).hexdigest())"
    )
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1234567890", "TZ": "Asia/Tokyo"}
    result = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True,
                            text=True, check=True, env=env, cwd=ROOT)
    assert result.stdout.strip() == here


# --- PDF/A-3b structure ---------------------------------------------------------------


def test_every_font_is_embedded():
    with pikepdf.open(io.BytesIO(render_document(make_doc(count=60), ASSETS))) as pdf:
        seen = 0
        for page in pdf.pages:
            for _, font in page.Resources.Font.items():
                descriptor = (
                    font.DescendantFonts[0].FontDescriptor
                    if font.Subtype == "/Type0" else font.FontDescriptor
                )
                assert any(key in descriptor for key in ("/FontFile", "/FontFile2",
                                                         "/FontFile3")), font.BaseFont
                seen += 1
        assert seen >= 2


def test_pdfa_3b_metadata_and_output_intent():
    doc = make_doc("en")
    with pikepdf.open(io.BytesIO(render_document(doc, ASSETS))) as pdf:
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "3"
        assert meta["pdfaid:conformance"] == "B"
        assert meta["dc:title"] == "Invoice NORD-2026-000123"
        assert meta["xmp:CreateDate"].startswith("2026-03-12")
        # The document info says the same as the XMP.
        assert str(pdf.docinfo.Title) == "Invoice NORD-2026-000123"
        assert str(pdf.docinfo.Author) == HOSPITAL_NAME
        assert str(pdf.docinfo.CreationDate).startswith("D:20260312")
        assert "/Trapped" not in pdf.docinfo
        (intent,) = pdf.Root.OutputIntents
        assert intent.S == "/GTS_PDFA1"
        profile = intent.DestOutputProfile.read_bytes()
        assert profile[36:40] == b"acsp" and intent.DestOutputProfile.N == 3


# --- Payment variants ------------------------------------------------------------------


@needs_tools
def test_without_an_iban_there_is_no_qr_code_but_a_notice(tmp_path):
    doc = make_doc("en", iban=None)
    pdf = render_document(doc, ASSETS)
    assert qr_codes(pdf, tmp_path) == []
    text = pdf_text(pdf, tmp_path)
    assert "bank details are missing" in text
    assert format_reference(doc.reference) in text


@needs_tools
def test_nothing_to_pay_means_no_qr_code(tmp_path):
    doc = make_doc("fr", paid=Decimal("0"), amount_due=Decimal("0.00"))
    pdf = render_document(doc, ASSETS)
    assert qr_codes(pdf, tmp_path) == []
    assert "Aucun montant n'est à payer." in pdf_text(pdf, tmp_path)


# --- Kinds of document -------------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("language", ["fr", "de", "en"])
def test_a_credit_note_names_the_credited_invoice_and_the_reason(language, tmp_path):
    doc = make_doc(language, kind="credit_note", number="NORD-AV-2026-000007",
                   credited_number="NORD-2026-000123", reason="Tarif erroné / Doppelbuchung",
                   amount_due=Decimal("0.00"), due_on=None)
    text = pdf_text(render_document(doc, ASSETS), tmp_path)
    assert TITLES[language]["credit_note"] in text
    assert "NORD-2026-000123" in text
    assert "Tarif erroné / Doppelbuchung" in text


@needs_tools
@pytest.mark.parametrize(
    ("language", "opening"),
    [("fr", "Madame, Monsieur,"), ("de", "Sehr geehrte Damen und Herren,"),
     ("en", "Dear Sir or Madam,")],
)
def test_a_reminder_asks_politely(language, opening, tmp_path):
    doc = make_doc(language, kind="reminder", reminder_on=date(2026, 5, 4))
    text = pdf_text(render_document(doc, ASSETS), tmp_path)
    assert TITLES[language]["reminder"] in text
    assert opening in text
    assert format_date(date(2026, 5, 4), format="long", locale=LOCALES[language]) in text


@needs_tools
def test_a_60_line_invoice_runs_over_pages_numbered_x_of_y(tmp_path):
    long_label = "Séance de kinésithérapie respiratoire avec drainage bronchique et exercices"
    doc = make_doc("en", count=60, labels=[long_label, "Day rate"])
    pdf = render_document(doc, ASSETS)
    pages = page_count(pdf)
    assert pages >= 3
    for page in range(1, pages + 1):
        text = pdf_text(pdf, tmp_path, page)
        assert f"Page {page} of {pages}" in text
        assert "Unit price" in text or page == pages  # column headers repeat with the rows
    # Every line made it, in order.
    text = pdf_text(pdf, tmp_path)
    codes = re.findall(r"\b1C\d{3}\b", text)
    assert codes == [f"1C{i:03d}" for i in range(60)]


@needs_tools
def test_accents_and_umlauts_come_out_as_written(tmp_path):
    labels = ["Prothèse fémorale", "Überwachung Intensivstation", "Gemäß Straße", "Œdème cœur"]
    text = pdf_text(render_document(make_doc("de", count=4, labels=labels), ASSETS), tmp_path)
    for label in labels:
        assert label in text


def test_a_broken_logo_does_not_stop_the_document(caplog):
    doc = make_doc()
    doc = replace(doc, hospital=replace(doc.hospital, logo=b"not an image"))
    assert render_document(doc, ASSETS).startswith(b"%PDF-1.7")
    assert "logo" in caplog.text


# --- The shipped texts -------------------------------------------------------------------


def _flat(data: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_every_language_has_every_text_with_the_same_placeholders():
    texts = {
        language: _flat(tomllib.loads((ASSETS / "texts" / f"{language}.toml").read_text()))
        for language in LOCALES
    }
    keys = set(texts["en"])
    for language, flat in texts.items():
        assert set(flat) == keys, language
        for key in keys:
            assert set(re.findall(r"{(\w+)}", flat[key])) == set(
                re.findall(r"{(\w+)}", texts["en"][key])
            ), (language, key)


# --- The EPC payload itself -----------------------------------------------------------------


def test_epc_payload_cuts_a_long_name_and_checks_amount_and_reference():
    reference = creditor_reference("NORD-2026-000123")
    long_name = "Centre Hospitalier " + "très " * 30
    payload = epc.epc_payload(long_name, IBAN, BIC, Decimal("12.30"), reference)
    assert len(payload.split("\n")[5]) <= 70
    assert payload.split("\n")[7] == "EUR12.30"
    for amount in (Decimal("0"), Decimal("0.001"), Decimal("1000000000.00")):
        with pytest.raises(ValueError):
            epc.epc_payload(HOSPITAL_NAME, IBAN, BIC, amount, reference)
    with pytest.raises(ValueError):  # free text in the reference field is refused
        epc.epc_payload(HOSPITAL_NAME, IBAN, BIC, Decimal("1.00"), f"Patient {MATRICULE}")


@needs_tools
def test_markup_in_any_text_is_printed_as_typed(tmp_path):
    """Names, addresses, labels and a credit note's reason reach the page as plain text:
    what looks like HTML or ReportLab's own markup is printed, never interpreted."""
    hostile = "<script>alert(1)</script> <b>&amp;</b>"
    doc = make_doc("fr", kind="credit_note", labels=[f"Acte {hostile}"] * 15,
                   patient=Address(f"Anne {hostile}", f"5, rue {hostile}", "L-1234",
                                   "Luxembourg"),
                   credited_number="NORD-2026-000100", reason=f"Motif {hostile}")
    text = pdf_text(render_document(doc, ASSETS), tmp_path)
    for where in ("Anne ", "5, rue ", "Acte ", "Motif "):
        assert f"{where}<script>alert(1)</script>" in text, where
    assert "<b>&amp;</b>" in text

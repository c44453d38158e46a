"""The claim writer and the return reader (luxfact/claims/xml.py): valid, streamed,
deterministic output; bad invoices named before anything after them is written; hostile
return files refused quickly with the right exception."""

import io
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from luxfact.claims.document import (
    ClaimHeader,
    ClaimInvoice,
    ClaimLine,
    ClaimStay,
    ClaimTotals,
)
from luxfact.claims.xml import (
    CLAIM_NS,
    MAX_DOCUMENT_BYTES,
    DocumentTooLarge,
    InvalidClaim,
    InvalidDocument,
    InvalidInvoice,
    InvalidReturn,
    TotalsMismatch,
    UnsafeXml,
    parse_return,
    schema,
    validate_document,
    write_claim,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "invoices" / "samples"
C = {"c": CLAIM_NS}

HEADER = ClaimHeader(provider_code="90000017", payer="CNS", sent_on=date(2023, 11, 3),
                     file_reference="LXF-90000017-202310-01", year=2023, month=10)
STAY = ClaimStay(reference="S-2023-0042", kind="inpatient",
                 # 06:15 UTC on a summer-time day is 08:15 in Luxembourg.
                 admitted_at=datetime(2023, 10, 3, 6, 15, tzinfo=UTC),
                 discharged_at=datetime(2023, 10, 7, 11, 0),  # naive: already local
                 unit="Chirurgie B", room_class="second", payer="CNS")


def line(reference: str, gross: str, net: str | None = None, **changes: object) -> ClaimLine:
    values = {"reference": reference, "code": "N101", "modifiers": (), "day": date(2023, 10, 4),
              "quantity": 1, "gross": Decimal(gross), "net": Decimal(net or gross)}
    return ClaimLine(**{**values, **changes})


def invoice(number: str, *lines: ClaimLine, **changes: object) -> ClaimInvoice:
    values = {"number": number, "matricule": "1990093012358", "issued_on": date(2023, 10, 9),
              "stay": STAY, "lines": lines}
    return ClaimInvoice(**{**values, **changes})


def two_invoices() -> list[ClaimInvoice]:
    return [
        invoice("NORD-2023-000101",
                line("1", "38.60", quantity=2),
                line("2", "41.62", code="N202", day=date(2023, 10, 5),
                     performed_at=datetime(2023, 10, 5, 12, 30, tzinfo=UTC))),
        invoice("NORD-2023-000102",
                line("1", "77.21", "67.94", code="C52", modifiers=("WE",),
                     day=date(2023, 10, 14), performer="90000017")),
    ]


TOTALS = ClaimTotals(invoices=2, lines=3, gross=Decimal("157.43"), net=Decimal("148.16"))


def written(invoices: list[ClaimInvoice], totals: ClaimTotals = TOTALS) -> bytes:
    out = io.BytesIO()
    write_claim(out, HEADER, totals, invoices)
    return out.getvalue()


def texts(root: etree._Element, path: str) -> list[str]:
    return [e.text for e in root.xpath(path, namespaces=C)]


# ------------------------------------------------------------------------------- writing


def test_two_invoices_make_a_valid_claim_file() -> None:
    out = io.BytesIO()
    streamed = write_claim(out, HEADER, TOTALS, two_invoices())
    assert streamed == TOTALS

    data = out.getvalue()
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    root = validate_document(data, "claim-1.0.xsd").getroot()
    assert root.tag == f"{{{CLAIM_NS}}}decompteFacturation"
    assert root.nsmap == {None: CLAIM_NS}
    assert root.get("version") == "1.0"
    assert texts(root, "c:typeDecompte/*") == ["AMM", "1", "FAC"]
    assert texts(root, "c:entete/c:demandeDecompte/*") == ["2", "EUR", "157.43", "148.16", "3"]
    assert texts(root, "c:facture/c:referenceFacture") == ["NORD-2023-000101",
                                                          "NORD-2023-000102"]
    assert all(etree.QName(e).namespace == CLAIM_NS for e in root.iter(etree.Element))
    assert texts(root, "c:facture/c:demandeFacture/c:montantBrut") == ["80.22", "77.21"]
    assert texts(root, "c:facture/c:demandeFacture/c:montantNet") == ["80.22", "67.94"]
    assert texts(root, "c:facture/c:demandeFacture/c:nombre") == ["2", "1"]
    assert texts(root, "c:facture[2]/c:prestation/c:acte/*") == ["C52", "WE"]


def test_times_are_luxembourg_local() -> None:
    root = etree.fromstring(written(two_invoices()))
    assert texts(root, "c:facture[1]/c:sejour/c:periodeSejour/*") == [
        "2023-10-03", "08:15:00", "2023-10-07", "11:00:00"]
    # 12:30 UTC in October is 14:30 in Luxembourg.
    assert texts(root, "c:facture[1]/c:prestation[2]/c:periodePrestation/*") == [
        "2023-10-05", "14:30:00"]


FACTURES = {
    "two lines, a time, no performer": two_invoices()[0],
    "modifier, performer, partly claimed": two_invoices()[1],
    "work accident, no discharge, no unit": invoice(
        "NORD-2023-000103", line("1", "10.00", modifiers=("WE", "NU")),
        stay=replace(STAY, discharged_at=None, unit="", member_number="M-77",
                     accident_number="AT-2023-9", accident_on=date(2023, 10, 1))),
    "markup in the unit": invoice(
        "NORD-2023-000104", line("1", "1.00"), stay=replace(STAY, unit="Soins <A&B>")),
}


@pytest.mark.parametrize("claim", FACTURES.values(), ids=FACTURES.keys())
def test_the_fast_text_builder_gives_the_element_builders_bytes(claim: ClaimInvoice) -> None:
    from luxfact.claims import xml

    reference = xml._facture(claim)
    fast = xml._fast_facture(claim, xml._trusted_parser())
    if "<" in claim.stay.unit:
        assert fast is None  # left to the element builder: escaped, then refused by name
        with pytest.raises(InvalidInvoice) as caught:
            written([claim], totals_of([claim]))
        assert caught.value.messages[0].startswith("sejour/unite: ")
    else:
        assert fast is not None
        assert etree.tostring(fast) == etree.tostring(reference)


def totals_of(invoices: list[ClaimInvoice]) -> ClaimTotals:
    lines = [line for item in invoices for line in item.lines]
    return ClaimTotals(invoices=len(invoices), lines=len(lines),
                       gross=sum((x.gross for x in lines), Decimal("0.00")),
                       net=sum((x.net for x in lines), Decimal("0.00")))


def test_same_input_gives_the_same_bytes() -> None:
    assert written(two_invoices()) == written(two_invoices())


def test_amounts_have_exactly_two_decimals() -> None:
    invoices = [invoice("A-1", line("1", "19.3"), line("2", "0"), line("3", "-0.00"))]
    totals = ClaimTotals(invoices=1, lines=3, gross=Decimal("19.3"), net=Decimal("19.30"))
    root = etree.fromstring(written(invoices, totals))
    assert texts(root, "c:facture/c:prestation/c:demandePrestation/c:montantBrut") == [
        "19.30", "0.00", "0.00"]
    assert texts(root, "c:entete/c:demandeDecompte/c:montantBrut") == ["19.30"]


# A generator that records what the writer pulled, to show it stops at the bad invoice.
def recorded(invoices: list[ClaimInvoice], pulled: list[str]) -> Iterator[ClaimInvoice]:
    for item in invoices:
        pulled.append(item.number)
        yield item


BAD_INVOICES: dict[str, tuple[Callable[[ClaimInvoice], ClaimInvoice], str]] = {
    "matricule of 12 digits": (
        lambda i: replace(i, matricule="199009301235"), "identifiantPersonneProtegee"),
    "performer code starting with 0": (
        lambda i: replace(i, lines=(replace(i.lines[0], performer="09000017"),)),
        "line 1, prestation/identifiantExecutant"),
    "negative amount": (
        lambda i: replace(i, lines=(replace(i.lines[0], net=Decimal("-1.00")),)),
        "line 1, prestation/demandePrestation/montantNet"),
    "amount with 3 decimals": (
        lambda i: replace(i, lines=(replace(i.lines[0], gross=Decimal("77.215")),)),
        "line 1, prestation/demandePrestation/montantBrut"),
    "act time on another day": (
        lambda i: replace(i, lines=(replace(
            i.lines[0], performed_at=datetime(2023, 10, 14, 22, 30, tzinfo=UTC)),)),
        "line 1, prestation/periodePrestation/heureDebut"),
    "control character in the unit": (
        lambda i: replace(i, stay=replace(STAY, unit="Urgences\x00")), "sejour/unite"),
    "invoice number used twice": (
        lambda i: replace(i, number="NORD-2023-000101"), "referenceFacture"),
}


@pytest.mark.parametrize(("spoil", "where"), BAD_INVOICES.values(), ids=BAD_INVOICES.keys())
def test_bad_invoice_is_named_and_nothing_after_it_is_written(
        spoil: Callable[[ClaimInvoice], ClaimInvoice], where: str) -> None:
    good, second = two_invoices()
    bad = spoil(second)
    after = invoice("NORD-2023-000103", line("1", "10.00"))
    pulled: list[str] = []
    out = io.BytesIO()
    with pytest.raises(InvalidInvoice) as caught:
        write_claim(out, HEADER, TOTALS, recorded([good, bad, after], pulled))

    error = caught.value
    assert error.number == bad.number
    assert str(error).startswith(f"invoice {bad.number}: ")
    assert any(message.startswith(where) for message in error.messages), error.messages
    assert pulled == [good.number, bad.number]  # the writer stopped at the bad invoice
    data = out.getvalue()
    assert data.count(b"<referenceFacture>") == 1  # the good one, before the bad one
    assert b"NORD-2023-000103" not in data
    assert not data.rstrip().endswith(b"</decompteFacturation>")  # visibly unfinished
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(data)


def test_bad_header_is_refused_before_anything_is_written() -> None:
    out = io.BytesIO()
    header = replace(HEADER, provider_code="09000017", month=13)
    with pytest.raises(InvalidClaim) as caught:
        write_claim(out, header, TOTALS, two_invoices())
    assert not isinstance(caught.value, InvalidInvoice)
    messages = caught.value.messages
    assert any(m.startswith("entete/identifiantFacturier:") for m in messages), messages
    assert any(m.startswith("entete/periodeDecompte/mois:") for m in messages), messages
    assert out.getvalue() == b""


def test_a_file_without_invoices_is_not_written() -> None:
    out = io.BytesIO()
    with pytest.raises(InvalidClaim, match="at least one facture"):
        write_claim(out, HEADER, TOTALS, [])
    assert out.getvalue() == b""


WRONG_TOTALS = {
    "invoices": (replace(TOTALS, invoices=3), "entete/demandeDecompte/nombre"),
    "lines": (replace(TOTALS, lines=4), "entete/demandeDecompte/nombrePrestations"),
    "gross": (replace(TOTALS, gross=Decimal("157.42")), "entete/demandeDecompte/montantBrut"),
    "net": (replace(TOTALS, net=Decimal("148.17")), "entete/demandeDecompte/montantNet"),
}


@pytest.mark.parametrize(("declared", "element"), WRONG_TOTALS.values(),
                         ids=WRONG_TOTALS.keys())
def test_declared_totals_must_match(declared: ClaimTotals, element: str) -> None:
    out = io.BytesIO()
    with pytest.raises(TotalsMismatch) as caught:
        write_claim(out, HEADER, declared, two_invoices())
    assert caught.value.declared == declared
    assert caught.value.streamed == TOTALS
    assert [m.split(":")[0] for m in caught.value.messages] == [element]
    assert not out.getvalue().rstrip().endswith(b"</decompteFacturation>")


def test_schema_is_loaded_once_and_by_name_only() -> None:
    assert schema("claim-1.0.xsd") is schema("claim-1.0.xsd")
    with pytest.raises(ValueError, match="not a path"):
        schema("../schemas/claim-1.0.xsd")


# ------------------------------------------------------------------------ memory and time

# 20,000 invoices take about 7 s plain but over 20 s under tracemalloc (it traces every
# lxml element proxy), so the test writes 5,000; its peak barely grows with the count (the
# invoice numbers kept for the uniqueness check, under 200 bytes each).
MANY = 5_000


def many_invoices(count: int) -> Iterator[ClaimInvoice]:
    for n in range(count):
        yield invoice(f"NORD-2023-{n:06d}",
                      line("1", "38.60", quantity=2),
                      line("2", "41.62", code="N202", performer="90000017",
                           performed_at=datetime(2023, 10, 4, 9, 5, tzinfo=UTC)),
                      line("3", "77.21", "67.94", code="C52", modifiers=("WE", "NUIT")))


def test_memory_stays_flat_for_many_invoices(tmp_path: Path) -> None:
    """Many invoices of 3 lines from a generator: Python's peak memory stays bounded, a small
    fraction of the file (the invoices are never all held). tracemalloc sees Python
    allocations only; libxml2's are per invoice and freed with it."""
    totals = ClaimTotals(invoices=MANY, lines=3 * MANY, gross=Decimal("157.43") * MANY,
                         net=Decimal("148.16") * MANY)
    path = tmp_path / "claim.xml"
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with path.open("wb") as out:
            streamed = write_claim(out, HEADER, totals, many_invoices(MANY))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    print(f"\n{MANY} invoices, {size / 1e6:.1f} MB written in {elapsed:.2f} s "
          f"(under tracemalloc), peak traced memory {peak / 1e6:.2f} MB")
    assert streamed == totals
    assert peak < 30_000_000
    assert peak < size / 5  # streamed: nowhere near the whole document in memory
    with path.open("rb") as written_file:
        written_file.seek(-40, io.SEEK_END)
        assert written_file.read().endswith(b"</facture>\n</decompteFacturation>")


# ------------------------------------------------------------------------------- returns


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_parse_return_sample() -> None:
    answer = parse_return(sample("return-1.0-example.xml"))
    assert (answer.return_id, answer.sent_on) == ("GT-2023-118204", date(2023, 12, 12))
    assert (answer.file_reference, answer.provider_code) == ("LXF-90000017-202310-01",
                                                             "90000017")
    assert answer.insurer_file_id == "FF-2023-553201"
    assert answer.received_on == date(2023, 11, 6)
    assert (answer.paid_gross, answer.paid_net) == (Decimal("104.96"), Decimal("97.00"))
    assert (answer.balance_count, answer.balance_gross, answer.balance_net) == (
        2, Decimal("85.66"), Decimal("77.70"))
    assert (answer.storno_count, answer.storno_gross, answer.storno_net) == (
        1, Decimal("19.30"), Decimal("19.30"))
    assert [(i.reference, i.insurer_id, i.net) for i in answer.invoices] == [
        ("NORD-2023-000101", "UTA-88120031", Decimal("38.60")),
        ("NORD-2023-000102", "UTA-88120032", Decimal("58.40"))]

    paid = {(x.invoice_reference, x.reference): x for x in answer.lines}
    assert len(paid) == 3
    first = paid["NORD-2023-000101", "1"]
    assert (first.insurer_id, first.paid_code, first.count, first.gross, first.net,
            first.anomalies) == ("UTAL-88120031-1", "N101", 2, Decimal("38.60"),
                                 Decimal("38.60"), ())
    refused = paid["NORD-2023-000101", "2"]
    assert (refused.count, refused.net) == (0, Decimal("0.00"))
    assert [(a.type, a.code) for a in refused.anomalies] == [("REJET", "CUMUL_INTERDIT")]
    assert refused.anomalies[0].motif.startswith("N202 non cumulable")
    recoded = paid["NORD-2023-000102", "1"]
    assert (recoded.paid_code, recoded.gross, recoded.net) == ("C1", Decimal("66.36"),
                                                               Decimal("58.40"))
    assert [(a.type, a.code) for a in recoded.anomalies] == [("REDUCTION", "AUTRE")]
    assert all(isinstance(x.net, Decimal) for x in answer.lines)

    [storno] = answer.stornos
    assert (storno.file_reference, storno.invoice_reference, storno.insurer_invoice_id,
            storno.line_reference, storno.insurer_line_id) == (
        "LXF-90000017-202309-01", "NORD-2023-000087", "UTA-87990415", "1", "UTAL-87990415-1")
    assert (storno.matricule, storno.paid_code, storno.gross, storno.net) == (
        "1990093012358", "N101", Decimal("19.30"), Decimal("19.30"))
    assert [(a.type, a.code) for a in storno.anomalies] == [("REJET", "DOUBLON")]


def test_return_without_stornos() -> None:
    data = sample("return-1.0-example.xml")
    data = data[:data.index(b"  <stornos>")] + b"</retourFacturation>\n"
    answer = parse_return(data)
    assert (answer.stornos, answer.storno_count, answer.storno_net) == ((), 0, Decimal("0.00"))


def test_validate_document_names_the_line() -> None:
    data = sample("claim-1.0-example.xml").replace(b"<mois>10</mois>", b"<mois>13</mois>")
    with pytest.raises(InvalidDocument) as caught:
        validate_document(data, "claim-1.0.xsd")
    line = data[:data.index(b"<mois>13")].count(b"\n") + 1
    assert caught.value.messages[0].startswith(f"line {line}: Element 'mois'")


def _with_doctype(doctype: bytes) -> bytes:
    data = sample("return-1.0-example.xml")
    return data.replace(b"<retourFacturation ", doctype + b"\n<retourFacturation ", 1)


BILLION_LAUGHS = _with_doctype(
    b'<!DOCTYPE retourFacturation [\n'
    b' <!ENTITY lol "lol">\n'
    + b"".join(b' <!ENTITY lol%d "%s">\n' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;")
                                              * 10) for n in range(1, 10))
    + b']>').replace(b"<motif>N202", b"<motif>&lol9;N202")
EXTERNAL_ENTITY = _with_doctype(
    b'<!DOCTYPE retourFacturation [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
).replace(b"<motif>N202", b"<motif>&x;N202")
NETWORK_DTD = _with_doctype(
    b'<!DOCTYPE retourFacturation SYSTEM "http://dtd.example.invalid/return.dtd">')
# Past the byte scan (which looks for UTF-8 "<!DOCTYPE"): the check after parsing refuses it.
UTF16_DOCTYPE = _with_doctype(b'<!DOCTYPE retourFacturation [<!ENTITY x "x">]>').replace(
    b'encoding="UTF-8"', b'encoding="UTF-16"', 1).decode("utf-8").encode("utf-16")
INVALID_UTF8 = sample("return-1.0-example.xml").replace(b"non cumulable", b"non \xff\xfe")
THREE_DECIMALS = sample("return-1.0-example.xml").replace(
    b"<montantNet>58.40</montantNet>\n        </paiementPrestation>",
    b"<montantNet>58.401</montantNet>\n        </paiementPrestation>")

HOSTILE: dict[str, tuple[Callable[[], object], type[Exception], str]] = {
    "billion laughs": (lambda: parse_return(BILLION_LAUGHS), UnsafeXml, "DOCTYPE"),
    "external entity": (lambda: parse_return(EXTERNAL_ENTITY), UnsafeXml, "DOCTYPE"),
    "DTD over the network": (lambda: parse_return(NETWORK_DTD), UnsafeXml, "DOCTYPE"),
    "DOCTYPE in UTF-16": (lambda: parse_return(UTF16_DOCTYPE), UnsafeXml, "DOCTYPE"),
    "over the size limit": (
        lambda: parse_return(sample("return-1.0-example.xml"), max_bytes=1000),
        DocumentTooLarge, "at most 1000"),
    "over the default size limit": (
        lambda: parse_return(b"<" + b" " * MAX_DOCUMENT_BYTES), DocumentTooLarge,
        f"at most {MAX_DOCUMENT_BYTES}"),
    "invalid UTF-8": (lambda: parse_return(INVALID_UTF8), InvalidReturn, "line "),
    "not XML": (lambda: parse_return(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
                InvalidReturn, "line 1"),
    "empty": (lambda: parse_return(b""), InvalidReturn, "line 1"),
    "claim file offered as a return": (
        lambda: parse_return(sample("claim-1.0-example.xml")), InvalidReturn,
        "{urn:luxfact:claims:1.0}decompteFacturation"),
    "amount with 3 decimals": (lambda: parse_return(THREE_DECIMALS), InvalidReturn,
                               "Element 'montantNet'"),
}


@pytest.mark.parametrize(("attempt", "expected", "words"), HOSTILE.values(),
                         ids=HOSTILE.keys())
def test_hostile_return_is_refused_quickly(attempt: Callable[[], object],
                                           expected: type[Exception], words: str) -> None:
    started = time.perf_counter()
    with pytest.raises(expected) as caught:
        attempt()
    assert time.perf_counter() - started < 2
    assert words in str(caught.value), caught.value.messages


def test_schema_errors_in_a_return_carry_their_line() -> None:
    with pytest.raises(InvalidReturn) as caught:
        parse_return(THREE_DECIMALS)
    line = THREE_DECIMALS[:THREE_DECIMALS.index(b"58.401")].count(b"\n") + 1
    assert all(m.startswith(f"line {line}: Element 'montantNet'")
               for m in caught.value.messages), caught.value.messages


def test_invalid_utf8_names_its_line() -> None:
    with pytest.raises(InvalidReturn) as caught:
        parse_return(INVALID_UTF8)
    line = INVALID_UTF8[:INVALID_UTF8.index(b"\xff")].count(b"\n") + 1
    assert caught.value.messages[0].startswith(f"line {line}"), caught.value.messages


PAST_THE_SCAN = {
    # libxml2's own amplification limit stops the bomb while the DTD is read.
    "billion laughs": (BILLION_LAUGHS, InvalidReturn),
    "external entity": (EXTERNAL_ENTITY, UnsafeXml),
    "DTD over the network": (NETWORK_DTD, UnsafeXml),
}


@pytest.mark.parametrize(("data", "expected"), PAST_THE_SCAN.values(), ids=PAST_THE_SCAN.keys())
def test_doctype_is_refused_even_past_the_byte_scan(
        data: bytes, expected: type[Exception], monkeypatch: pytest.MonkeyPatch) -> None:
    """The second line of defence alone: the hardened parser neither expands nor fetches,
    and a DOCTYPE it read is refused."""
    monkeypatch.setattr("luxfact.claims.xml._DOCTYPE", b"\x00no byte scan\x00")
    started = time.perf_counter()
    with pytest.raises(expected) as caught:
        parse_return(data)
    assert time.perf_counter() - started < 2
    assert "root:" not in str(caught.value)  # /etc/passwd was not read into the document

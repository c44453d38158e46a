"""Claim files out, return files in, as XML checked against `invoices/schemas/`.

Pure: no database, no network. The writer streams (one invoice in memory at a time) and
validates each invoice on its own before writing it, so a refused invoice is named before
anything after it reaches the file. The reader treats every return as hostile: size limit
first, no DTD at all, a hardened parser, then the schema, and only then the values.
"""

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from lxml import etree

from luxfact.claims.document import (
    ClaimHeader,
    ClaimInvoice,
    ClaimLine,
    ClaimStay,
    ClaimTotals,
)
from luxfact.kit.time import LUXEMBOURG

SCHEMAS = Path(__file__).resolve().parents[2] / "invoices" / "schemas"
CLAIM_XSD = "claim-1.0.xsd"
RETURN_XSD = "return-1.0.xsd"
CLAIM_NS = "urn:luxfact:claims:1.0"
RETURN_NS = "urn:luxfact:claims:return:1.0"
VERSION = "1.0"
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024

_CENT = Decimal("0.01")
_CLAIM_NSMAP = {None: CLAIM_NS}
_R = {"r": RETURN_NS}
# The header is indented, one element per line; each invoice is one line of its own, not
# indented inside: a quarter less to write, hash and store for a month's file (pretty-print
# it with `xmllint --format` to read it), and still one `grep` line per invoice.
_INDENT = tuple("\n" + "  " * depth for depth in range(8))


# ------------------------------------------------------------------------------ exceptions


class ClaimsXmlError(Exception):
    """A claim or return file refused. `messages`: one per problem, for a person to read."""

    def __init__(self, messages: Sequence[str]) -> None:
        self.messages = tuple(messages)
        super().__init__("; ".join(self.messages))


class InvalidClaim(ClaimsXmlError):
    """The claim file cannot be written: its header is invalid or it has no invoice."""


class InvalidInvoice(InvalidClaim):
    """One invoice refused by the schema; nothing from it on was written."""

    def __init__(self, number: str, messages: Sequence[str]) -> None:
        self.number = number
        super().__init__(messages)

    def __str__(self) -> str:
        return f"invoice {self.number}: " + "; ".join(self.messages)


class TotalsMismatch(ClaimsXmlError):
    """The header's control totals (written first) differ from the invoices written."""

    def __init__(self, declared: ClaimTotals, streamed: ClaimTotals) -> None:
        self.declared = declared
        self.streamed = streamed
        super().__init__([
            f"entete/demandeDecompte/{element}: declared {want}, the invoices give {got}"
            for element, want, got in (
                ("nombre", declared.invoices, streamed.invoices),
                ("nombrePrestations", declared.lines, streamed.lines),
                ("montantBrut", declared.gross, streamed.gross),
                ("montantNet", declared.net, streamed.net),
            )
            if want != got
        ])


class UnsafeXml(ClaimsXmlError):
    """A file refused unread or unused: a DTD or entities, which these files never carry."""


class DocumentTooLarge(UnsafeXml):
    """A file over the size limit, refused before parsing."""


class InvalidDocument(ClaimsXmlError):
    """Not well-formed, not UTF-8, or refused by its schema; messages carry line numbers."""


class InvalidReturn(InvalidDocument):
    """A return file that cannot be imported."""


# ---------------------------------------------------------------------------------- schemas


def _trusted_parser() -> etree.XMLParser:
    # Hardened even for our own schemas: a schema file is still a file on disk.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@functools.cache  # lru_cache without bound: a handful of schemas
def _schema_file(name: str, directory: Path | None) -> etree._ElementTree:
    if Path(name).name != name:
        raise ValueError(f"a schema name, not a path: {name!r}")
    return etree.parse(str((directory or SCHEMAS) / name), _trusted_parser())


@functools.cache  # lru_cache without bound: a handful of schemas
def schema(name: str, directory: Path | None = None) -> etree.XMLSchema:
    """The schema `name` (e.g. "claim-1.0.xsd"), compiled once per process, from `directory`
    or else the repository's `invoices/schemas/`."""
    return etree.XMLSchema(_schema_file(name, directory))


def _target_namespace(name: str, directory: Path | None) -> str:
    return _schema_file(name, directory).getroot().get("targetNamespace", "")


# ----------------------------------------------------------------------------- claim: write


class _Unwritable(Exception):
    """A value lxml refuses to put in the tree (control character, wrong type)."""

    def __init__(self, element: etree._Element, reason: str) -> None:
        super().__init__(reason)
        self.element = element


class _Gate:
    """The caller's stream, shut once a claim fails: the closing tags lxml writes while
    unwinding must not reach it, or a truncated file would look whole."""

    __slots__ = ("_open", "_out")

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._open = True

    def write(self, data: bytes) -> int:
        if self._open:
            self._out.write(data)
        return len(data)

    def shut(self) -> None:
        self._open = False


@dataclass(slots=True)
class _Tally:
    """What has been written so far, to compare with the header's totals at the end."""

    invoices: int = 0
    lines: int = 0
    gross: Decimal = Decimal("0.00")
    net: Decimal = Decimal("0.00")

    def add(self, invoice: ClaimInvoice) -> None:
        self.invoices += 1
        self.lines += len(invoice.lines)
        self.gross += sum((line.gross for line in invoice.lines), Decimal("0.00"))
        self.net += sum((line.net for line in invoice.lines), Decimal("0.00"))

    def totals(self) -> ClaimTotals:
        return ClaimTotals(invoices=self.invoices, lines=self.lines, gross=self.gross,
                           net=self.net)


def write_claim(out: BinaryIO, header: ClaimHeader, totals: ClaimTotals,
                invoices: Iterable[ClaimInvoice]) -> ClaimTotals:
    """Write the claim file to `out`, one invoice at a time; return the totals written.

    Raises InvalidInvoice (nothing from that invoice on is written), InvalidClaim (header,
    or no invoice: nothing written) or TotalsMismatch (the root is left unclosed). After an
    exception `out` holds a partial file that the caller discards.
    """
    xsd = schema(CLAIM_XSD)
    head = _head(header, totals)
    checked = _checked_invoices(xsd, invoices)
    first = next(checked, None)
    if first is None:
        raise InvalidClaim(["decompteFacturation: a claim file needs at least one facture"])
    # The header has no global element of its own: check it in a document with the first
    # invoice (already valid alone), so a bad header is refused before a byte is written.
    _check_head(xsd, head, first[1])
    gate = _Gate(out)
    with etree.xmlfile(gate, encoding="UTF-8") as xf:
        xf.write_declaration()
        with xf.element(f"{{{CLAIM_NS}}}decompteFacturation", version=VERSION,
                        nsmap=_CLAIM_NSMAP):
            try:
                streamed = _write_body(xf, head, chain([first], checked))
                if streamed != totals:
                    raise TotalsMismatch(totals, streamed)
            except ClaimsXmlError:
                try:
                    xf.flush()  # what was valid stays readable in the partial file
                finally:
                    gate.shut()
                raise
            except BaseException:
                gate.shut()
                raise
            xf.write("\n")
    return streamed


# `_Writer`: what `etree.xmlfile` yields (lxml's _IncrementalFileWriter, not exported).
_Writer = Any


def _write_body(xf: _Writer, head: Sequence[etree._Element],
                invoices: Iterable[tuple[ClaimInvoice, etree._Element]]) -> ClaimTotals:
    for part in head:
        xf.write(_INDENT[1])
        _emit(xf, part, 1)
    tally = _Tally()
    for invoice, element in invoices:
        xf.write(_INDENT[1])
        # Written whole: each facture carries its own xmlns (lxml's incremental writer
        # repeats it), which keeps every invoice a self-contained, valid fragment.
        xf.write(element)
        tally.add(invoice)
    return tally.totals()


def _emit(xf: _Writer, element: etree._Element, depth: int) -> None:
    """Write a small element through the writer's contexts, so that it inherits the root's
    namespace declaration instead of repeating it (used for the header)."""
    with xf.element(element.tag):
        if len(element):
            for child in element:
                xf.write(_INDENT[depth + 1])
                _emit(xf, child, depth + 1)
            xf.write(_INDENT[depth])
        else:
            xf.write(element.text or "")


def _checked_invoices(xsd: etree.XMLSchema, invoices: Iterable[ClaimInvoice],
                      ) -> Iterator[tuple[ClaimInvoice, etree._Element]]:
    """Each invoice with its `facture` element, valid on its own, or InvalidInvoice."""
    # Uniqueness across the file is the root's xs:unique, which a lone facture cannot
    # check: the numbers seen so far are kept (under 200 bytes per invoice, the only part
    # of the memory that grows with the file).
    seen: set[str] = set()
    parser = _trusted_parser()
    for invoice in invoices:
        element = _fast_facture(invoice, parser)
        if element is None:
            # Something the text cannot carry: the element builder names the field.
            try:
                element = _facture(invoice)
            except _Unwritable as error:
                raise InvalidInvoice(invoice.number, [f"{_where(error.element)}: {error}"]) \
                    from None
        messages = _schema_messages(xsd, element)
        if invoice.number in seen:
            messages.insert(0, "referenceFacture: this invoice number is already in the file")
        if messages:
            raise InvalidInvoice(invoice.number, messages)
        seen.add(invoice.number)
        yield invoice, element


def _check_head(xsd: etree.XMLSchema, head: Sequence[etree._Element],
                invoice: etree._Element) -> None:
    document = etree.Element(f"{{{CLAIM_NS}}}decompteFacturation", version=VERSION,
                             nsmap=_CLAIM_NSMAP)
    document.extend(deepcopy(part) for part in head)
    document.append(deepcopy(invoice))
    messages = _schema_messages(xsd, document)
    if messages:
        raise InvalidClaim(messages)


def _schema_messages(xsd: etree.XMLSchema, element: etree._Element) -> list[str]:
    """The schema's objections to an element built in memory, each naming where it is."""
    try:
        xsd.assertValid(element)  # its own error log: safe when threads share the schema
    except etree.DocumentInvalid as invalid:
        tree = element.getroottree()
        return [_describe(tree, error) for error in invalid.error_log]
    return []


def _describe(tree: etree._ElementTree, error: etree._LogEntry) -> str:
    reason = _REASON_PREFIX.sub("", error.message.replace(f"{{{CLAIM_NS}}}", ""), count=1)
    found = tree.xpath(error.path) if error.path else []
    if not found:
        return reason
    return f"{_where(found[0])}: {reason}"


# lxml's "Element '{ns}name': " prefix: the location written before it already names it.
_REASON_PREFIX = re.compile(r"^Element '[^']*': ")


def _where(element: etree._Element) -> str:
    """`line 2, prestation/demandePrestation/montantNet`: the invoice line (its reference)
    and the path below the invoice, as a billing officer looks it up."""
    names, line = [], None
    for node in chain([element], element.iterancestors()):
        name = etree.QName(node).localname
        if name == "prestation":
            line = node.findtext(f"{{{CLAIM_NS}}}referencePrestation")
        names.append(name)
    path = "/".join(reversed(names[:-1])) or names[-1]  # below the root of the tree
    return path if line is None else f"line {line}, {path}"


def _leaf(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CLAIM_NS}}}{name}")
    try:
        element.text = text
    except (TypeError, ValueError) as error:
        raise _Unwritable(element, f"cannot be written as XML text ({error})") from None
    return element


def _node(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{CLAIM_NS}}}{name}")


def _head(header: ClaimHeader, totals: ClaimTotals) -> tuple[etree._Element, etree._Element]:
    kind = etree.Element(f"{{{CLAIM_NS}}}typeDecompte", nsmap=_CLAIM_NSMAP)
    _leaf(kind, "cadreLegal", "AMM")
    _leaf(kind, "layout", VERSION.split(".")[0])
    _leaf(kind, "type", "FAC")
    entete = etree.Element(f"{{{CLAIM_NS}}}entete", nsmap=_CLAIM_NSMAP)
    try:
        _leaf(entete, "identifiantFacturier", header.provider_code)
        _leaf(entete, "organisme", header.payer)
        _leaf(entete, "dateEnvoi", header.sent_on.isoformat())
        _leaf(entete, "referenceFichierFacturation", header.file_reference)
        period = _node(entete, "periodeDecompte")
        _leaf(period, "exercice", str(header.year))
        _leaf(period, "mois", str(header.month))
        demande = _demande(entete, "demandeDecompte", totals.invoices, totals.gross, totals.net)
        _leaf(demande, "nombrePrestations", str(totals.lines))
    except _Unwritable as error:
        raise InvalidClaim([f"entete/{_where(error.element)}: {error}"]) from None
    return kind, entete


def _facture(invoice: ClaimInvoice) -> etree._Element:
    facture = etree.Element(f"{{{CLAIM_NS}}}facture", nsmap=_CLAIM_NSMAP)
    _leaf(facture, "referenceFacture", invoice.number)
    _leaf(facture, "identifiantPersonneProtegee", invoice.matricule)
    _leaf(facture, "dateEtablissementFacture", invoice.issued_on.isoformat())
    _sejour(facture, invoice.stay)
    for line in invoice.lines:
        _prestation(facture, line)
    # The invoice's totals are its lines' sums, never a separate figure that could differ.
    _demande(facture, "demandeFacture", len(invoice.lines),
             sum((line.gross for line in invoice.lines), Decimal("0.00")),
             sum((line.net for line in invoice.lines), Decimal("0.00")))
    return facture


def _sejour(facture: etree._Element, stay: ClaimStay) -> None:
    sejour = _node(facture, "sejour")
    _leaf(sejour, "referenceSejour", stay.reference)
    _leaf(sejour, "typeSejour", stay.kind)
    period = _node(sejour, "periodeSejour")
    admitted = _local(stay.admitted_at)
    _leaf(period, "dateDebut", admitted.date().isoformat())
    _leaf(period, "heureDebut", _clock(admitted))
    if stay.discharged_at is not None:
        discharged = _local(stay.discharged_at)
        _leaf(period, "dateFin", discharged.date().isoformat())
        _leaf(period, "heureFin", _clock(discharged))
    if stay.unit:
        _leaf(sejour, "unite", stay.unit)
    _leaf(sejour, "classeChambre", stay.room_class)
    cover = _node(sejour, "couverture")
    _leaf(cover, "organisme", stay.payer)
    if stay.member_number:
        _leaf(cover, "numeroAffilie", stay.member_number)
    if stay.accident_number:
        accident = _node(cover, "accident")
        _leaf(accident, "numeroAccident", stay.accident_number)
        if stay.accident_on is not None:
            _leaf(accident, "dateAccident", stay.accident_on.isoformat())


def _prestation(facture: etree._Element, line: ClaimLine) -> None:
    prestation = _node(facture, "prestation")
    _leaf(prestation, "referencePrestation", line.reference)
    acte = _node(prestation, "acte")
    _leaf(acte, "codeTarif", line.code)
    for modifier in line.modifiers:
        _leaf(acte, "complementTarif", modifier)
    period = _node(prestation, "periodePrestation")
    _leaf(period, "dateDebut", line.day.isoformat())
    if line.performed_at is not None:
        performed = _local(line.performed_at)
        start = _leaf(period, "heureDebut", _clock(performed))
        if performed.date() != line.day:
            # The schema cannot see it; a time on another day would misdate the act.
            raise _Unwritable(start, f"the act's time is on {performed.date().isoformat()} "
                                     f"in Luxembourg, not on its day {line.day.isoformat()}")
    _demande(prestation, "demandePrestation", line.quantity, line.gross, line.net)
    if line.performer:
        _leaf(prestation, "identifiantExecutant", line.performer)


def _demande(parent: etree._Element, name: str, count: int, gross: Decimal,
             net: Decimal) -> etree._Element:
    demande = _node(parent, name)
    _leaf(demande, "nombre", str(count))
    _leaf(demande, "devise", "EUR")
    _leaf(demande, "montantBrut", _amount(gross))
    _leaf(demande, "montantNet", _amount(net))
    return demande


def _amount(value: Decimal) -> str:
    """Exactly two decimals: `12.50`. An amount that is not a whole number of cents is
    written as it is, for the schema to refuse by name: rounding money here would hide an
    error upstream."""
    try:
        cents = value.quantize(_CENT)
    except InvalidOperation:  # infinity, or more digits than the context holds
        return str(value)
    if cents != value:  # also NaN, which equals nothing
        return f"{value:f}"
    if cents.is_zero():
        cents = Decimal("0.00")  # never "-0.00", which the schema refuses
    return f"{cents:f}"


# ------------------------------------------------------------ claim: the fast text builder
#
# Building a facture element by element costs most of a month's file (about 14 s of 25 for
# a million lines). The same element is written as text and parsed back by libxml2 (C),
# then validated as before: half the time. `_facture` above stays the reference; a test
# holds the two to the same bytes, and whatever the text cannot carry (a control character,
# a time on another day) goes back to it, which names the field.
#
# No whitespace inside an invoice (see _INDENT).
_UNSAFE = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_FACTURE_OPEN = f'<facture xmlns="{CLAIM_NS}">'


class _NotPlain(Exception):
    """A value the fast builder leaves to the element builder."""


def _t(value: str) -> str:
    # Markup characters are rare in these fields: escaped by the element builder's path.
    if _UNSAFE.search(value):
        raise _NotPlain
    return value


def _fast_facture(invoice: ClaimInvoice, parser: etree.XMLParser) -> etree._Element | None:
    try:
        text = _facture_text(invoice)
    except _NotPlain:
        return None
    return etree.fromstring(text.encode(), parser)


def _demande_text(name: str, count: int, gross: Decimal, net: Decimal) -> str:
    # Amounts are digits, a sign and a dot: nothing to escape.
    return (f"<{name}><nombre>{count}</nombre><devise>EUR</devise><montantBrut>"
            f"{_amount(gross)}</montantBrut><montantNet>{_amount(net)}</montantNet></{name}>")


def _facture_text(invoice: ClaimInvoice) -> str:
    parts = [f"{_FACTURE_OPEN}<referenceFacture>{_t(invoice.number)}</referenceFacture>"
             f"<identifiantPersonneProtegee>{_t(invoice.matricule)}"
             f"</identifiantPersonneProtegee><dateEtablissementFacture>"
             f"{invoice.issued_on.isoformat()}</dateEtablissementFacture>"]
    _sejour_text(parts, invoice.stay)
    gross = net = Decimal("0.00")
    for line in invoice.lines:
        modifiers = "".join(f"<complementTarif>{_t(modifier)}</complementTarif>"
                            for modifier in line.modifiers) if line.modifiers else ""
        clock = ""
        if line.performed_at is not None:
            performed = _local(line.performed_at)
            if performed.date() != line.day:
                raise _NotPlain
            clock = f"<heureDebut>{_clock(performed)}</heureDebut>"
        performer = (f"<identifiantExecutant>{_t(line.performer)}</identifiantExecutant>"
                      if line.performer else "")
        parts.append(
            f"<prestation><referencePrestation>{_t(line.reference)}</referencePrestation>"
            f"<acte><codeTarif>{_t(line.code)}</codeTarif>{modifiers}</acte>"
            f"<periodePrestation><dateDebut>{line.day.isoformat()}</dateDebut>{clock}"
            f"</periodePrestation>"
            f"{_demande_text('demandePrestation', line.quantity, line.gross, line.net)}"
            f"{performer}</prestation>")
        gross += line.gross
        net += line.net
    parts.append(_demande_text("demandeFacture", len(invoice.lines), gross, net))
    parts.append("</facture>")
    return "".join(parts)


def _sejour_text(parts: list[str], stay: ClaimStay) -> None:
    admitted = _local(stay.admitted_at)
    parts.append(f"<sejour><referenceSejour>{_t(stay.reference)}</referenceSejour>"
                 f"<typeSejour>{_t(stay.kind)}</typeSejour><periodeSejour>"
                 f"<dateDebut>{admitted.date().isoformat()}</dateDebut>"
                 f"<heureDebut>{_clock(admitted)}</heureDebut>")
    if stay.discharged_at is not None:
        discharged = _local(stay.discharged_at)
        parts.append(f"<dateFin>{discharged.date().isoformat()}</dateFin>"
                     f"<heureFin>{_clock(discharged)}</heureFin>")
    parts.append("</periodeSejour>")
    if stay.unit:
        parts.append(f"<unite>{_t(stay.unit)}</unite>")
    parts.append(f"<classeChambre>{_t(stay.room_class)}</classeChambre>"
                 f"<couverture><organisme>{_t(stay.payer)}</organisme>")
    if stay.member_number:
        parts.append(f"<numeroAffilie>{_t(stay.member_number)}</numeroAffilie>")
    if stay.accident_number:
        parts.append(f"<accident><numeroAccident>{_t(stay.accident_number)}"
                     "</numeroAccident>")
        if stay.accident_on is not None:
            parts.append(f"<dateAccident>{stay.accident_on.isoformat()}</dateAccident>")
        parts.append("</accident>")
    parts.append("</couverture></sejour>")


def _local(moment: datetime) -> datetime:
    """Luxembourg local time: an aware datetime is converted, a naive one is taken as local."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment
    return moment.astimezone(LUXEMBOURG)


def _clock(moment: datetime) -> str:
    return moment.time().isoformat(timespec="seconds")  # hh:mm:ss, faster than strftime


# ------------------------------------------------------------------------ documents: read


_DOCTYPE = b"<!DOCTYPE"
_MAX_MESSAGES = 100


def _untrusted_parser() -> etree.XMLParser:
    # A new parser per document: parsers keep an error log and are not thread-safe.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True, remove_pis=True)


def validate_document(data: bytes, name: str, *, max_bytes: int = MAX_DOCUMENT_BYTES,
                      directory: Path | None = None) -> etree._ElementTree:
    """Parse a whole document as untrusted input and validate it against the schema `name`;
    return the tree. Raises DocumentTooLarge, UnsafeXml or InvalidDocument."""
    return _load(data, name, max_bytes, directory, InvalidDocument)


def _load(data: bytes, name: str, max_bytes: int, directory: Path | None,
          invalid: type[InvalidDocument]) -> etree._ElementTree:
    tree = _parse_untrusted(data, max_bytes, invalid)
    try:
        schema(name, directory).assertValid(tree)
    except etree.DocumentInvalid as error:
        namespace = _target_namespace(name, directory)
        entries = list(error.error_log)
        messages = [_located(entry, namespace) for entry in entries[:_MAX_MESSAGES]]
        if len(entries) > _MAX_MESSAGES:  # a wholly wrong file: the first ones tell enough
            messages.append(f"... and {len(entries) - _MAX_MESSAGES} more errors")
        raise invalid(messages) from None
    return tree


def _parse_untrusted(data: bytes, max_bytes: int,
                     invalid: type[InvalidDocument]) -> etree._ElementTree:
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"a document is bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise DocumentTooLarge([f"the file has {len(data)} bytes; at most {max_bytes} "
                                "are accepted"])
    # These files never have a DTD: refuse any before the parser sees it (entity bombs,
    # external entities, network DTDs). UTF-8 is required below, so a byte scan is enough;
    # in any other encoding the hardened parser neither expands nor fetches (libxml2 also
    # caps entity amplification) and the check after parsing refuses the DOCTYPE.
    if _DOCTYPE in data:
        raise UnsafeXml(["the file declares a DOCTYPE (DTD or entities), which these files "
                         "never have"])
    parser = _untrusted_parser()
    try:
        tree = etree.fromstring(data, parser).getroottree()
    except etree.XMLSyntaxError as error:
        raise invalid(_syntax_messages(error, parser)) from None
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise UnsafeXml(["the file declares a DOCTYPE (DTD or entities), which these files "
                         "never have"])
    if (info.encoding or "").upper() != "UTF-8":
        raise invalid([f"line 1: the file is encoded in {info.encoding}; it must be UTF-8"])
    return tree


def _syntax_messages(error: etree.XMLSyntaxError, parser: etree.XMLParser) -> list[str]:
    # The parser's own log: the exception's is the thread's, holding earlier unrelated errors.
    entries = [entry for entry in parser.error_log if entry.level_name != "WARNING"]
    if not entries:
        return [f"line {error.lineno}: {error.msg}"]
    return [f"line {entry.line}, column {entry.column}: {entry.message}" for entry in entries]


def _located(entry: etree._LogEntry, namespace: str) -> str:
    """A schema error with its line. The expected namespace is dropped so that element
    names read plainly; a foreign one (a claim offered as a return) stays visible."""
    return f"line {entry.line}: {entry.message.replace(f'{{{namespace}}}', '')}"


# ---------------------------------------------------------------------------- return: read


@dataclass(frozen=True, slots=True)
class Anomaly:
    type: str                     # REJET, REDUCTION, INFORMATION
    code: str                     # T_CodeAnomalie: PERSONNE_INCONNUE, ..., AUTRE
    motif: str                    # the insurer's words; "" when absent


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """What is paid for one claimed line."""

    invoice_reference: str        # echoed referenceFacture
    reference: str                # echoed referencePrestation
    insurer_id: str               # identifiantPrestationOrganisme
    paid_code: str                # codeActePaye: may differ from the code claimed
    count: int
    gross: Decimal
    net: Decimal                  # compare with the net claimed to tell paid, partly, rejected
    anomalies: tuple[Anomaly, ...]


@dataclass(frozen=True, slots=True)
class ReturnInvoice:
    reference: str                # echoed referenceFacture
    insurer_id: str               # identifiantFactureOrganisme
    received_on: date | None
    gross: Decimal
    net: Decimal
    anomalies: tuple[Anomaly, ...]  # about the whole invoice: they concern all its lines
    lines: tuple[ReturnLine, ...]


@dataclass(frozen=True, slots=True)
class Storno:
    """One line paid in an earlier return, taken back now."""

    file_reference: str           # the earlier claim file that carried the invoice
    invoice_reference: str
    insurer_invoice_id: str
    matricule: str
    line_reference: str
    insurer_line_id: str
    paid_code: str                # the code that had been paid
    count: int
    gross: Decimal                # taken back, positive
    net: Decimal
    anomalies: tuple[Anomaly, ...]          # why this line
    invoice_anomalies: tuple[Anomaly, ...]  # why, for the whole invoice


@dataclass(frozen=True, slots=True)
class ReturnFile:
    return_id: str                # identifiantGroupeTraitementOrganisme
    sent_on: date
    balance_count: int            # invoices answered
    balance_gross: Decimal        # paid less taken back: may be negative
    balance_net: Decimal
    file_reference: str           # echoed referenceFichierFacturation
    provider_code: str            # echoed identifiantFacturier
    insurer_file_id: str          # identifiantFichierFacturationOrganisme
    received_on: date             # dateEntreeOrganisme
    paid_gross: Decimal
    paid_net: Decimal
    invoices: tuple[ReturnInvoice, ...]
    storno_count: int             # lines taken back
    storno_gross: Decimal
    storno_net: Decimal
    stornos: tuple[Storno, ...]

    @property
    def lines(self) -> tuple[ReturnLine, ...]:
        return tuple(line for invoice in self.invoices for line in invoice.lines)


def parse_return(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES,
                 directory: Path | None = None) -> ReturnFile:
    """Read an insurer's return file. Raises DocumentTooLarge or UnsafeXml (refused unread
    or unused), InvalidReturn (not well-formed, not UTF-8, or refused by return-1.0.xsd,
    with line numbers). The schema has checked every value read below."""
    root = _load(data, RETURN_XSD, max_bytes, directory, InvalidReturn).getroot()
    entete = root.find("r:entete", _R)
    balance = entete.find("r:paiementGroupeTraitement", _R)
    claim = root.find("r:fichierFacturation", _R)
    stornos = root.find("r:stornos", _R)
    taken_back = stornos.find("r:paiementStornos", _R) if stornos is not None else None
    return ReturnFile(
        return_id=_text(entete, "identifiantGroupeTraitementOrganisme"),
        sent_on=_date(entete, "dateEnvoi"),
        balance_count=_int(balance, "nombre"),
        balance_gross=_decimal(balance, "montantBrut"),
        balance_net=_decimal(balance, "montantNet"),
        file_reference=_text(claim, "referenceFichierFacturation"),
        provider_code=_text(claim, "identifiantFacturier"),
        insurer_file_id=_text(claim, "identifiantFichierFacturationOrganisme"),
        received_on=_date(claim, "dateEntreeOrganisme"),
        paid_gross=_decimal(claim, "montantBrut"),
        paid_net=_decimal(claim, "montantNet"),
        invoices=tuple(_return_invoice(e) for e in claim.iterfind("r:facture", _R)),
        storno_count=_int(taken_back, "nombre") if taken_back is not None else 0,
        storno_gross=(_decimal(taken_back, "montantBrut") if taken_back is not None
                      else Decimal("0.00")),
        storno_net=(_decimal(taken_back, "montantNet") if taken_back is not None
                    else Decimal("0.00")),
        stornos=() if stornos is None else tuple(
            storno for invoice in stornos.iterfind("r:facture", _R)
            for storno in _stornos(invoice)),
    )


def _return_invoice(facture: etree._Element) -> ReturnInvoice:
    reference = _text(facture, "referenceFacture")
    return ReturnInvoice(
        reference=reference,
        insurer_id=_text(facture, "identifiantFactureOrganisme"),
        received_on=_optional_date(facture, "dateEntreeFacture"),
        gross=_decimal(facture, "montantBrut"),
        net=_decimal(facture, "montantNet"),
        anomalies=_anomalies(facture, "anomalieFacture"),
        lines=tuple(_return_line(reference, e) for e in facture.iterfind("r:prestation", _R)),
    )


def _return_line(invoice_reference: str, prestation: etree._Element) -> ReturnLine:
    paid = prestation.find("r:paiementPrestation", _R)
    return ReturnLine(
        invoice_reference=invoice_reference,
        reference=_text(prestation, "referencePrestation"),
        insurer_id=_text(prestation, "identifiantPrestationOrganisme"),
        paid_code=_text(prestation, "codeActePaye"),
        count=_int(paid, "nombre"),
        gross=_decimal(paid, "montantBrut"),
        net=_decimal(paid, "montantNet"),
        anomalies=_anomalies(prestation, "anomaliePrestation"),
    )


def _stornos(facture: etree._Element) -> Iterator[Storno]:
    invoice = {
        "file_reference": _text(facture, "referenceFichierFacturation"),
        "invoice_reference": _text(facture, "referenceFacture"),
        "insurer_invoice_id": _text(facture, "identifiantFactureOrganisme"),
        "matricule": _text(facture, "identifiantPersonneProtegee"),
        "invoice_anomalies": _anomalies(facture, "anomalieFacture"),
    }
    for prestation in facture.iterfind("r:prestation", _R):
        taken = prestation.find("r:paiementPrestation", _R)
        yield Storno(
            line_reference=_text(prestation, "referencePrestation"),
            insurer_line_id=_text(prestation, "identifiantPrestationOrganisme"),
            paid_code=_text(prestation, "codeActePaye"),
            count=_int(taken, "nombre"),
            gross=_decimal(taken, "montantBrut"),
            net=_decimal(taken, "montantNet"),
            anomalies=_anomalies(prestation, "anomaliePrestation"),
            **invoice,
        )


def _anomalies(parent: etree._Element, name: str) -> tuple[Anomaly, ...]:
    return tuple(Anomaly(type=_text(e, "type"), code=_text(e, "code"),
                         motif=e.findtext("r:motif", "", _R))
                 for e in parent.iterfind(f"r:{name}", _R))


def _text(parent: etree._Element, name: str) -> str:
    return parent.findtext(f"r:{name}", None, _R)


# Dates, counts and decimals are whitespace-collapsed by XSD: " 12.50 " is valid, so strip.
def _date(parent: etree._Element, name: str) -> date:
    return date.fromisoformat(_text(parent, name).strip())


def _optional_date(parent: etree._Element, name: str) -> date | None:
    text = parent.findtext(f"r:{name}", None, _R)
    return None if text is None else date.fromisoformat(text.strip())


def _int(parent: etree._Element, name: str) -> int:
    return int(_text(parent, name).strip())


def _decimal(parent: etree._Element, name: str) -> Decimal:
    return Decimal(_text(parent, name).strip())

"""HL7 v2 (ER7) messages read into plain values. Pure: no database, no clock but `today`.

Two steps:

1. `read(raw)`: the bytes as one message of the `hl7` library (python-hl7). The encoding
   characters come from MSH-1/MSH-2; segments may end with CR, LF or CRLF; the charset is
   MSH-18's (UTF-8 when absent, Latin-1 when the bytes are not UTF-8 and nothing is declared).
   What cannot be read at all raises `Rejected` (answered AR): no MSH, broken encoding
   characters, an unsupported version, message type or event.
2. `interpret(message)`: the segments mapped to the values the domain needs (a patient, a
   visit, coverages, charges, a merge). A value that is present but wrong raises `Refused`
   (answered AE) naming the HL7 field, e.g. `PV1-44: not an HL7 date-time`.

Escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\, formatting ones, \\Xhh..\\) are decoded by the
library, except \\X..\\, decoded here as bytes of the message's charset (the library reads each
byte as a Latin-1 character, which breaks UTF-8 text).
"""

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import hl7
import hl7.containers
import hl7.util
from hl7.datatypes import parse_datetime

from luxfact.kit.time import LUXEMBOURG
from luxfact.patients import matricule as mat

# The library logs the content of fields it cannot unescape: patient data never reaches a log.
for _module in (hl7.util, hl7.containers):
    logging.getLogger(_module.__file__).disabled = True

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
ADT_EVENTS = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13",
              "A40")
EVENTS = {("ADT", e) for e in ADT_EVENTS} | {("DFT", "P03")}
PROCESSING_IDS = ("P", "T", "D", "")

# HL7 table 0357 (message error condition codes).
SEGMENT_SEQUENCE = "100"
REQUIRED_MISSING = "101"
DATA_TYPE = "102"
TABLE_VALUE = "103"
UNSUPPORTED_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION = "203"
UNKNOWN_KEY = "204"
DUPLICATE_KEY = "205"
INTERNAL_ERROR = "207"
ERROR_TEXTS = {
    SEGMENT_SEQUENCE: "Segment sequence error", REQUIRED_MISSING: "Required field missing",
    DATA_TYPE: "Data type error", TABLE_VALUE: "Table value not found",
    UNSUPPORTED_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNSUPPORTED_VERSION: "Unsupported version id", UNKNOWN_KEY: "Unknown key identifier",
    DUPLICATE_KEY: "Duplicate key identifier", INTERNAL_ERROR: "Application internal error",
}

CHARSETS = {"": None, "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8",
            "8859/1": "latin-1", "8859/15": "iso8859-15", "UNICODE": "utf-8"}
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# Characters no field of ours may hold once decoded (a \X00\ or \X0D\ sequence): PostgreSQL
# refuses NUL in text, and a line break or escape code in a name or an id is never meant.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Formatting commands (2.10.6) say how to lay text out, which none of our fields is: each is
# read as one space at most, never as many as its count asks (\.sk1000000000\ would be a
# gigabyte of spaces), and highlighting (\H\, \N\) as nothing.
_FORMATTING = {".br": " ", ".sp": " ", ".ce": " ", ".in": " ", ".ti": " ", ".sk": " ",
               ".fi": "", ".nf": ""}
# A quantity (NM): a whole number, "2.0" allowed, nothing else ("1e2", "inf", "nan", "٢").
_WHOLE = re.compile(r"^\+?0*(\d{1,6})(?:\.0*)?$", re.ASCII)
_TS = re.compile(r"^(\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?)"
                 r"([+-]\d{4})?$")


@dataclass(frozen=True)
class Location:
    """Where a problem is: segment, its occurrence (1-based), field, component."""

    segment: str
    field: int | None = None
    component: int | None = None
    occurrence: int = 1

    def __str__(self) -> str:
        if self.field is None:
            return self.segment
        text = f"{self.segment}-{self.field}"
        if self.component:
            text += f".{self.component}"
        return text


class MessageProblem(Exception):
    code = INTERNAL_ERROR

    def __init__(self, reason: str, location: Location | None = None,
                 code: str | None = None, header: "Header | None" = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location
        self.code = code or self.code
        self.header = header


class Rejected(MessageProblem):
    """The message cannot be processed at all (ACK AR)."""

    # Refused for how it was delivered (framing, size) rather than for its content.
    transport = False
    # Its header was read from the raw MSH line, the library having failed on it: enough to
    # echo MSH-10 and find the hospital, not to hold the control id (see `raw_header`).
    header_from_raw = False


class TransportRejected(Rejected):
    transport = True


class Refused(MessageProblem):
    """The message is understood but cannot be applied as it is (ACK AE)."""


@dataclass(frozen=True)
class Header:
    field_separator: str = "|"
    encoding_characters: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    message_type: str = ""
    trigger: str = ""
    control_id: str = ""
    processing_id: str = ""
    version: str = ""
    charset: str = "utf-8"
    declared_charset: str = ""  # MSH-18 as sent (one of CHARSETS), echoed by the ACK

    @property
    def type_code(self) -> str:
        return f"{self.message_type}^{self.trigger}" if self.trigger else self.message_type


@dataclass(frozen=True)
class Parsed:
    header: Header
    message: Any  # hl7.Message
    text: str


# --- reading ----------------------------------------------------------------------------

def same_message(first: bytes, second: bytes) -> bool:
    """Whether two deliveries under one control id are the same message: the same segments,
    whatever ends them (CR, LF, CRLF), and whatever MSH-7 says (an engine sending a message
    again may stamp it anew). Anything else makes them two messages."""
    return first == second or _content(first) == _content(second)


def _content(raw: bytes) -> list[str]:
    try:
        text = decode(raw)[0]
    except Rejected:
        text = raw.decode("latin-1")
    segments = [segment for segment in re.split(r"\r\n|\r|\n", text) if segment]
    if segments and segments[0].startswith("MSH") and len(segments[0]) > 3:
        fields = segments[0].split(segments[0][3])
        if len(fields) > 6:
            fields[6] = ""  # MSH-7, the time of the message (fields[1] is MSH-2)
        segments[0] = segments[0][3].join(fields)
    return segments


def decode(raw: bytes) -> tuple[str, str]:
    """The text and the charset it was read with (MSH-18, else UTF-8, else Latin-1)."""
    declared = _declared_charset(raw)
    if declared is None:
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return raw.decode("latin-1"), "latin-1"
    try:
        return raw.decode(declared), declared
    except UnicodeDecodeError:
        raise Rejected(f"MSH-18: the message is not valid {declared}",
                       Location("MSH", 18), DATA_TYPE) from None


def _declared_charset(raw: bytes) -> str | None:
    """MSH-18 read from the bytes (the header is ASCII whatever the charset)."""
    first = re.split(rb"\r\n|\r|\n", raw.lstrip(b"\xef\xbb\xbf \t\r\n"), maxsplit=1)[0]
    if not first.startswith(b"MSH") or len(first) < 4:
        return None
    fields = first.decode("latin-1").split(first[3:4].decode("latin-1"))
    if len(fields) < 18:
        return None
    value = fields[17].split(fields[1][:1] if fields[1] else "^")[0].strip().upper()
    if value not in CHARSETS:
        raise Rejected(f"MSH-18: unknown character set {value[:20]!r}", Location("MSH", 18),
                       TABLE_VALUE)
    return CHARSETS[value]


def normalise(text: str) -> str:
    """Segments separated by CR whatever the sender used (CR, LF or CRLF); no blank lines."""
    text = text.lstrip("\ufeff \t\r\n").replace("\r\n", "\r").replace("\n", "\r")
    return "\r".join(segment for segment in text.split("\r") if segment.strip())


# The largest message taken (MLLP and HTTP alike): an ADT or DFT is a few kilobytes, and the
# library's containers take some two hundred times a message's size in memory.
MAX_BYTES = 1024 * 1024
# What is kept of a message refused for its size: enough for its header and the log.
KEPT_BYTES = 64 * 1024
# Fields, components, repetitions and subcomponents a message may have: the library takes
# some 6 µs for each (a megabyte of short segments, 3 s, during which the listener serves
# no one else; a thread does not help, the parse holding the interpreter). A DFT of fifty
# charges has about 2,000.
MAX_PIECES = 20_000


def header_of(payload: bytes) -> Header | None:
    """The header of a message refused for its framing or size, for its ACK, if readable."""
    try:
        return read(payload[:KEPT_BYTES].split(b"\x1c")[0]).header
    except Rejected as exc:
        return exc.header
    except Exception:  # the library raises several kinds on malformed input
        return None


def read(raw: bytes) -> Parsed:
    """One message read with the library, its header checked; `Rejected` otherwise.

    A rejection carries the header whenever it can be read, from the raw MSH line if the
    library could not read it: the ACK then echoes MSH-10 and the message is kept under its
    hospital."""
    try:
        return _read(raw)
    except Rejected as exc:
        if exc.header is None:
            exc.header = raw_header(raw)
            exc.header_from_raw = exc.header is not None
        raise


def raw_header(raw: bytes) -> Header | None:
    """MSH read from its bytes with no library and no escape sequences decoded, each field
    cut to its limit and stripped of control characters: for a message whose header the
    library could not read (a field too long, a bad character set, a NUL elsewhere)."""
    try:
        charset = _declared_charset(raw) or "utf-8"
    except Rejected:  # an unknown MSH-18
        charset = "utf-8"
    try:
        raw.decode(charset)
    except UnicodeDecodeError:
        charset = "latin-1"  # what `decode` falls back to; any byte reads
    first = re.split(rb"\r\n|\r|\n", raw.lstrip(b"\xef\xbb\xbf \t\r\n"), maxsplit=1)[0]
    text = first[:4096].decode(charset, errors="replace")
    if not text.startswith("MSH"):
        return None
    try:
        separator, encoding = _delimiters(text, truncation=True)
    except Rejected:
        return None
    fields = text.split(separator)

    def field(number: int, component: int = 1, limit: int = 100) -> str:
        value = fields[number - 1] if number - 1 < len(fields) else ""  # MSH-1 is the separator
        parts = value.split(encoding[1])[0].split(encoding[0])
        value = parts[component - 1] if component - 1 < len(parts) else ""
        value = value.split(encoding[3])[0]  # its first subcomponent, as the library reads
        # Escape sequences left out, not decoded: decoding is what failed (the ACK would
        # otherwise escape their escape character a second time).
        escape = re.escape(encoding[2])
        value = re.sub(f"{escape}[^{escape}]*{escape}", "", value)
        return _CONTROL.sub("", value).strip()[:limit]

    return Header(
        field_separator=separator, encoding_characters=encoding,
        sending_application=field(3), sending_facility=field(4) or field(4, 2),
        receiving_application=field(5), receiving_facility=field(6),
        message_type=field(9, limit=3).upper(), trigger=field(9, 2, limit=3).upper(),
        control_id=field(10), processing_id=field(11, limit=3).upper(),
        version=field(12, limit=10), charset=charset,
        # Not what the ACK is written in when the bytes were not in it (read as Latin-1).
        declared_charset=declared if CHARSETS.get(declared := _known_charset(
            field(18, limit=20))) in (charset, None) else "")


def _read(raw: bytes) -> Parsed:
    if not raw.strip():
        raise Rejected("the message is empty", Location("MSH"), SEGMENT_SEQUENCE)
    text, charset = decode(raw)
    if "\x00" in text:
        raise Rejected("the message contains NUL bytes: it is not HL7 text", Location("MSH"),
                       DATA_TYPE)
    text = normalise(text)
    if not text.startswith("MSH"):
        raise Rejected("the message does not start with an MSH segment", Location("MSH"),
                       SEGMENT_SEQUENCE)
    separator, encoding = _delimiters(text)
    pieces = sum(text.count(c) for c in (separator, encoding[0], encoding[1], encoding[3]))
    if pieces > MAX_PIECES:
        raise Rejected(f"the message has {pieces} fields and components, more than the "
                       f"{MAX_PIECES} a message may have: send it as several messages",
                       Location("MSH"), SEGMENT_SEQUENCE)
    segments = text.split("\r")
    problem: Rejected | None = None
    if sum(1 for s in segments if s[:4] == "MSH" + separator) > 1:
        problem = Rejected("one message per delivery: this one holds several MSH segments",
                           Location("MSH", occurrence=2), SEGMENT_SEQUENCE)
    for n, segment in enumerate(segments, 1):
        name = segment.split(separator, 1)[0]
        if problem is None and not _SEGMENT_ID.match(name):
            problem = Rejected(f"line {n} is not a segment (it starts with {name[:10]!r}): is "
                               f"the field separator {separator!r} of MSH-1 used throughout?",
                               Location(name[:3] or "?"), SEGMENT_SEQUENCE)
    try:
        message = hl7.parse(text) if problem is None else None
    except Exception as exc:  # the library raises several kinds on malformed input
        problem = Rejected(f"the message cannot be parsed: {exc}", Location("MSH"),
                           SEGMENT_SEQUENCE)
    if problem is not None:
        # The header alone, if it can be read: the ACK then echoes MSH-10.
        try:
            problem.header = _header(hl7.parse(segments[0]), separator, encoding, charset)
        except Exception:  # the library raises several kinds on malformed input
            problem.header = None
        raise problem
    header = _header(message, separator, encoding, charset)
    _check_header(header)
    return Parsed(header, message, text)


def _delimiters(text: str, *, truncation: bool = False) -> tuple[str, str]:
    """MSH-1 and the four encoding characters of MSH-2. `truncation`: a fifth one (the
    truncation character of v2.7 and later) is allowed, and left out: enough to read the
    header of a message refused for its version, so that its ACK can echo MSH-10."""
    separator = text[3:4]
    end = text.find(separator, 4) if separator else -1
    encoding = text[4:end] if end > 0 else ""
    if (not separator or not separator.isprintable() or separator.isalnum()
            or separator.isspace() or len(encoding) not in ((4, 5) if truncation else (4,))
            or len(set(encoding)) != len(encoding) or separator in encoding
            or any(c.isalnum() or c.isspace() or not c.isprintable() for c in encoding)):
        if len(encoding) == 5 and not truncation:
            raise Rejected("MSH-2: five encoding characters (a truncation character, HL7 "
                           f"v2.7 and later): the versions read here are "
                           f"{', '.join(SUPPORTED_VERSIONS)}, with four (e.g. ^~\\&)",
                           Location("MSH", 2), DATA_TYPE)
        raise Rejected("MSH-1/MSH-2: the field separator and the four encoding characters "
                       "(e.g. |^~\\&) are missing or malformed", Location("MSH", 2),
                       DATA_TYPE)
    return separator, encoding[:4]


def _header(message: Any, separator: str, encoding: str, charset: str) -> Header:
    try:
        return _read_header(message, separator, encoding, charset)
    except Refused as exc:
        raise Rejected(exc.reason, exc.location, exc.code) from None


def _read_header(message: Any, separator: str, encoding: str, charset: str) -> Header:
    msh = message.segment("MSH")
    get = Fields(msh, charset)
    return Header(
        field_separator=separator, encoding_characters=encoding,
        sending_application=get.text(3, limit=100),
        sending_facility=get.text(4, limit=100) or get.text(4, component=2, limit=100),
        receiving_application=get.text(5, limit=100),
        receiving_facility=get.text(6, limit=100),
        message_type=get.text(9, limit=3).upper(),
        trigger=get.text(9, component=2, limit=3).upper(),
        control_id=get.text(10, limit=100),
        processing_id=get.text(11, limit=3).upper(),
        version=get.text(12, limit=10),
        charset=charset, declared_charset=_known_charset(get.text(18, limit=20)))


def _known_charset(value: str) -> str:
    """MSH-18 when it names a character set read here ("" otherwise): what the ACK, written
    in that set, declares in turn (undeclared, HL7 means ASCII)."""
    value = value.strip().upper()
    return value if value and value in CHARSETS else ""


def _check_header(header: Header) -> None:
    if not header.control_id:
        raise Rejected("MSH-10 (message control id) is missing", Location("MSH", 10),
                       REQUIRED_MISSING, header)
    if header.version not in SUPPORTED_VERSIONS:
        raise Rejected(f"MSH-12: version {header.version or '(none)'!r} is not supported "
                       f"(supported: {', '.join(SUPPORTED_VERSIONS)})", Location("MSH", 12),
                       UNSUPPORTED_VERSION, header)
    if header.processing_id not in PROCESSING_IDS:
        raise Rejected(f"MSH-11: processing id {header.processing_id!r} is not supported",
                       Location("MSH", 11), UNSUPPORTED_PROCESSING_ID, header)
    if header.message_type not in ("ADT", "DFT"):
        raise Rejected(f"MSH-9: message type {header.message_type or '(none)'!r} is not "
                       "handled (ADT and DFT are)", Location("MSH", 9, 1), UNSUPPORTED_TYPE,
                       header)
    if (header.message_type, header.trigger) not in EVENTS:
        raise Rejected(f"MSH-9: event {header.type_code!r} is not handled", Location("MSH", 9, 2),
                       UNSUPPORTED_EVENT, header)


# --- field access -------------------------------------------------------------------------

class Fields:
    """Values of one segment by HL7 position, escape sequences decoded, `""` read as empty."""

    def __init__(self, segment: Any, charset: str = "utf-8", occurrence: int = 1) -> None:
        self.segment = segment
        self.charset = charset
        self.name = str(segment[0][0]) if len(segment) and len(segment[0]) else "?"
        self.occurrence = occurrence

    def where(self, field_no: int, component: int | None = None) -> Location:
        return Location(self.name, field_no, component, self.occurrence)

    def repetitions(self, field_no: int) -> int:
        if field_no >= len(self.segment):
            return 0
        value = self.segment[field_no]
        if self.name == "MSH" and field_no <= 2:
            return 1
        if value and isinstance(value[0], hl7.containers.Repetition):
            return len(value)
        return 1 if _leaf_text(value) else 0

    def text(self, field_no: int, repetition: int = 1, component: int = 1,
             subcomponent: int = 1, *, limit: int | None = None) -> str:
        leaf = _leaf(self.segment, field_no, repetition, component, subcomponent)
        if leaf in ("", '""'):
            return ""
        named = self.where(field_no, component if component > 1 else None)
        try:
            value = unescape(self.segment, leaf, self.charset).strip()
        except ValueError:  # the library's reading of a malformed sequence
            raise Refused(f"{named}: an escape sequence cannot be read",
                          self.where(field_no, component), DATA_TYPE) from None
        if _CONTROL.search(value):
            raise Refused(f"{named}: contains a control character",
                          self.where(field_no, component), DATA_TYPE)
        if limit is not None and len(value) > limit:
            raise Refused(f"{named}: longer than {limit} characters",
                          self.where(field_no, component), DATA_TYPE)
        return value

    def timestamp(self, field_no: int, repetition: int = 1, component: int = 1,
                  subcomponent: int = 1) -> datetime | None:
        value = self.text(field_no, repetition, component, subcomponent)
        if not value:
            return None
        try:
            return to_datetime(value, str(self.where(field_no)))
        except Refused as exc:
            exc.location = self.where(field_no)
            raise

    def day(self, field_no: int) -> date | None:
        value = self.text(field_no)
        if not value:
            return None
        if not re.match(r"^\d{8}", value):
            raise Refused(f"{self.where(field_no)}: not a date (YYYYMMDD)",
                          self.where(field_no), DATA_TYPE)
        try:
            day = date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        except ValueError:
            raise Refused(f"{self.where(field_no)}: {value[:8]} is not a date",
                          self.where(field_no), DATA_TYPE) from None
        if not 1850 <= day.year <= 2200:
            raise Refused(f"{self.where(field_no)}: the year is not plausible",
                          self.where(field_no), DATA_TYPE)
        return day


# The library's containers are lists whose __getitem__ (Python code, there for slices)
# costs ten times the list's own: a message's fields are read with the list's.
_item = list.__getitem__
_REPETITION, _COMPONENT = hl7.containers.Repetition, hl7.containers.Component


def _leaf(segment: Any, field_no: int, repetition: int, component: int,
          subcomponent: int) -> str:
    """The raw (still escaped) text at a position, "" when absent (mirrors the library's
    extract_field, without its unescaping)."""
    if field_no >= len(segment):
        return ""
    value = _item(segment, field_no)
    if field_no <= 2 and str(segment[0][0]) == "MSH":
        return str(_item(value, 0)) if value else ""
    if not value:
        return ""
    first = _item(value, 0)
    if not isinstance(first, _REPETITION):
        return first if repetition == component == subcomponent == 1 else ""
    if repetition > len(value):
        return ""
    rep = _item(value, repetition - 1)
    if not rep:
        return ""
    if len(rep) == 1 and not isinstance(_item(rep, 0), _COMPONENT):
        return _item(rep, 0) if component == subcomponent == 1 else ""
    if component > len(rep):
        return ""
    comp = _item(rep, component - 1)
    if not isinstance(comp, _COMPONENT):
        return comp if subcomponent == 1 else ""
    return _item(comp, subcomponent - 1) if subcomponent <= len(comp) else ""


def _leaf_text(value: Any) -> str:
    return str(value) if value is not None else ""


def unescape(container: Any, text: str, charset: str = "utf-8") -> str:
    """Escape sequences decoded: \\X..\\ as bytes of the message's charset (consecutive ones
    together, so a UTF-8 character split over two sequences is read whole), every other one
    by the library."""
    esc = container.esc
    if esc not in text:
        return text
    parts = text.split(esc)
    if len(parts) % 2 == 0:  # an escape character never closed: kept as it is
        parts[-2:] = [parts[-2] + esc + parts[-1]]
    out: list[str] = []
    pending = bytearray()
    for n, part in enumerate(parts):
        if n % 2 == 1 and part[:1] == "X" and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", part):
            pending.extend(bytes.fromhex(part[1:]))
            continue
        if pending:
            out.append(pending.decode(charset, errors="replace"))
            pending.clear()
        if n % 2 == 1:
            if part[:1] == ".":
                out.append(_FORMATTING.get(part[:3], ""))
            elif part not in ("", "H", "N"):
                out.append(hl7.util.unescape(container, esc + part + esc))
        else:
            out.append(part)
    if pending:
        out.append(pending.decode(charset, errors="replace"))
    return "".join(out)


def to_datetime(value: str, where: str) -> datetime:
    """An HL7 TS/DTM, in Europe/Luxembourg local time unless it carries an offset."""
    match = _TS.match(value)
    if not match:
        raise Refused(f"{where}: {value[:30]!r} is not an HL7 date-time "
                      "(YYYYMMDD[HHMM[SS]][+/-ZZZZ])", None, DATA_TYPE)
    try:
        moment = parse_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=LUXEMBOURG)
        else:  # 9999-12-31 23:59 at -12:00 is past the last day a datetime holds
            moment = moment.astimezone(LUXEMBOURG)
    except (ValueError, OverflowError):
        raise Refused(f"{where}: {value[:30]!r} is not a valid date-time", None,
                      DATA_TYPE) from None
    if not 1850 <= moment.year <= 2200:
        raise Refused(f"{where}: the year is not plausible", None, DATA_TYPE)
    return moment


# --- the values the domain needs ------------------------------------------------------------

PATIENT_CLASSES = {"I": "inpatient", "B": "inpatient", "O": "outpatient", "R": "outpatient",
                   "E": "emergency", "P": "inpatient"}
SEXES = {"F": "F", "M": "M", "O": "X", "U": "X", "A": "X", "N": "X", "X": "X"}
LANGUAGES = {"FR": "fr", "FRE": "fr", "FRA": "fr", "DE": "de", "GER": "de", "DEU": "de",
             "EN": "en", "ENG": "en", "LB": "de", "LTZ": "de"}
COUNTRIES = {"LUX": "LU", "FRA": "FR", "DEU": "DE", "BEL": "BE", "PRT": "PT", "NLD": "NL",
             "ITA": "IT", "ESP": "ES", "AUT": "AT", "CHE": "CH", "GBR": "GB", "POL": "PL"}
ROOM_CLASSES = {"1": "first", "FIRST": "first", "P": "first", "PRIV": "first", "SINGLE": "first",
                "2": "second", "SECOND": "second", "S": "second", "W": "second"}
# PID-3 repetitions taken as the matricule: by identifier type (CX-5) or assigning
# authority (CX-4); otherwise the first 13- (or 11-) digit identifier.
MATRICULE_TYPES = {"NN", "SS", "SSN", "NNLUX"}
MATRICULE_AUTHORITIES = {"CNS", "CCSS", "LU", "LUX", "RNPP", "MATRICULE"}
COVERAGE_KINDS = {"statutory", "other_fund", "accident", "foreign", "complementary",
                  "social_tiers_payant"}
COVERAGE_ALIASES = {"STAT": "statutory", "S": "statutory", "ACC": "accident", "A": "accident",
                    "AAA": "accident", "COMP": "complementary", "C": "complementary",
                    "FOR": "foreign", "EU": "foreign", "F": "foreign", "OTH": "other_fund",
                    "O": "other_fund", "STP": "social_tiers_payant"}
PAYER_KINDS = {"CNS": "statutory", "AAA": "accident"}


@dataclass(frozen=True)
class Identity:
    """A patient's national identifier as the message gives it (validated)."""

    matricule: str | None = None
    legacy_matricule: str | None = None


@dataclass(frozen=True)
class PatientData:
    identity: Identity
    values: dict[str, Any]  # PatientIn field -> value, only what the message gives


@dataclass(frozen=True)
class VisitData:
    visit_number: str = ""
    kind: str | None = None
    patient_class: str = ""
    unit: str = ""
    room: str = ""
    bed: str = ""
    room_class: str | None = None
    attending_doctor: str | None = None
    admitting_doctor: str | None = None
    admitted_at: datetime | None = None
    discharged_at: datetime | None = None
    expected_admit_at: datetime | None = None
    childbirth: bool = False
    psychiatric: bool = False

    @property
    def located(self) -> bool:
        return bool(self.unit or self.room or self.bed)


@dataclass(frozen=True)
class CoverageData:
    occurrence: int
    values: dict[str, Any]  # CoverageIn field -> value


@dataclass(frozen=True)
class ChargeData:
    occurrence: int
    values: dict[str, Any]  # ActIn field -> value


@dataclass(frozen=True)
class MergeData:
    identity: Identity
    visit_number: str = ""


@dataclass(frozen=True)
class Event:
    header: Header
    occurred_at: datetime
    patient: PatientData | None
    visit: VisitData | None
    coverages: list[CoverageData] = field(default_factory=list)
    charges: list[ChargeData] = field(default_factory=list)
    merge: MergeData | None = None

    @property
    def trigger(self) -> str:
        return self.header.trigger


# Segments each event needs.
REQUIRED = {"A40": ("PID", "MRG"), "P03": ("PID", "PV1", "FT1"), "A08": ("PID",)}


def interpret(parsed: Parsed, today: date) -> Event:
    """The event's values; `Refused` names the first field that is wrong."""
    header, message = parsed.header, parsed.message
    trigger = header.trigger
    names = [str(s[0][0]) for s in message]
    for needed in REQUIRED.get(trigger, ("PID", "PV1")):
        if needed not in names:
            raise Refused(f"the {needed} segment is missing ({header.type_code} needs it)",
                          Location(needed), SEGMENT_SEQUENCE)
    charset = header.charset

    def first(name: str) -> Fields | None:
        return Fields(message.segment(name), charset) if name in names else None

    msh = Fields(message.segment("MSH"), charset)
    evn = first("EVN")
    occurred = ((evn.timestamp(6) or evn.timestamp(2)) if evn else None) or msh.timestamp(7)
    if occurred is None:
        raise Refused("EVN-6, EVN-2 and MSH-7 give no event time", Location("MSH", 7),
                      REQUIRED_MISSING)
    pid = first("PID")
    pv1 = first("PV1")
    pv2 = first("PV2")
    patient = _patient(pid, today) if pid else None
    visit = _visit(pv1, pv2) if pv1 else None
    coverages = [_coverage(Fields(s, charset, n)) for n, s in
                 enumerate((s for s in message if str(s[0][0]) == "IN1"), 1)]
    charges = [_charge(Fields(s, charset, n)) for n, s in
               enumerate((s for s in message if str(s[0][0]) == "FT1"), 1)]
    merge = None
    if trigger == "A40":
        mrg = first("MRG")
        assert mrg is not None
        merge = MergeData(_identity(mrg, 1, today),
                          mrg.text(5, limit=40))
        if not (merge.identity.matricule or merge.identity.legacy_matricule
                or merge.visit_number):
            raise Refused("MRG-1 (prior matricule) or MRG-5 (prior visit number) must name "
                          "the duplicate", mrg.where(1), REQUIRED_MISSING)
    return Event(header, occurred, patient, visit, coverages, charges, merge)


def _identity(seg: Fields, field_no: int, today: date) -> Identity:
    """The matricule among the identifiers: the one tagged as such (by type or assigning
    authority; refused when it is not valid), else the first untagged number that is a
    valid matricule (13 digits) or old number (11 digits); others are the sender's own."""
    tagged, untagged = [], []
    for rep in range(1, seg.repetitions(field_no) + 1):
        number = seg.text(field_no, rep, 1).replace(" ", "")
        if not number:
            continue
        authority = seg.text(field_no, rep, 4).upper()
        kind = seg.text(field_no, rep, 5).upper()
        if kind in MATRICULE_TYPES or authority in MATRICULE_AUTHORITIES:
            tagged.append(number)
        elif number.isascii() and number.isdigit() and len(number) in (11, 13):
            untagged.append(number)
    where = seg.where(field_no)
    for number in tagged:
        if len(number) == 11 and mat.is_legacy(number):
            return Identity(legacy_matricule=number)
        try:
            return Identity(matricule=mat.parse(number, today=today).number)
        except mat.InvalidMatricule as exc:
            # The reason says what is wrong, never the number (it goes to ACKs and logs).
            raise Refused(f"{where}: not a valid matricule ({exc})", where,
                          DATA_TYPE) from None
    for number in untagged:
        if len(number) == 11 and mat.is_legacy(number):
            return Identity(legacy_matricule=number)
        try:
            return Identity(matricule=mat.parse(number, today=today).number)
        except mat.InvalidMatricule:
            continue
    return Identity()


def _patient(pid: Fields, today: date) -> PatientData:
    values: dict[str, Any] = {}
    rep = 1
    for n in range(1, pid.repetitions(5) + 1):
        if pid.text(5, n, 7).upper() == "L":
            rep = n
            break
    family = pid.text(5, rep, 1, 1)
    given = " ".join(p for p in (pid.text(5, rep, 2), pid.text(5, rep, 3)) if p)
    if family:
        values["family_name"] = family
    if given:
        values["given_name"] = given
    birth = pid.day(7)
    if birth:
        values["birth_date"] = birth
    sex = pid.text(8).upper()
    if sex:
        if sex not in SEXES:
            raise Refused(f"PID-8: sex {sex[:5]!r} is not in table 0001 (F, M, O, U, A, N)",
                          pid.where(8), TABLE_VALUE)
        values["sex"] = SEXES[sex]
    street = pid.text(11, 1, 1)
    if street:
        values["street"] = street
    city, postal, country = pid.text(11, 1, 3), pid.text(11, 1, 5), pid.text(11, 1, 6).upper()
    if city:
        values["city"] = city
    if postal:
        values["postal_code"] = postal
    if country:
        code = COUNTRIES.get(country, country)
        if re.fullmatch(r"[A-Z]{2}", code):
            values["country"] = code
    phone = _phone(pid)
    if phone:
        values["phone"] = phone
    language = pid.text(15).upper()
    if language in LANGUAGES:
        values["language"] = LANGUAGES[language]
    death = pid.day(29)
    if death:
        values["death_date"] = death
    return PatientData(_identity(pid, 3, today), values)


def _phone(pid: Fields) -> str:
    """PID-13, home phone: its first repetition as written (XTN-1), else the unformatted
    number (XTN-12), else country, area and local number (XTN-5, -6, -7) put together."""
    written = pid.text(13, 1, 1) or pid.text(13, 1, 12)
    if written:
        return written
    country, area, local = pid.text(13, 1, 5), pid.text(13, 1, 6), pid.text(13, 1, 7)
    if not local:
        return ""
    return " ".join(part for part in (f"+{country.lstrip('+')}" if country else "", area,
                                      local) if part)


def _visit(pv1: Fields, pv2: Fields | None) -> VisitData:
    patient_class = pv1.text(2).upper()
    kind = None
    if patient_class:
        if patient_class not in PATIENT_CLASSES:
            raise Refused(f"PV1-2: patient class {patient_class[:5]!r} is not handled "
                          "(I inpatient, O outpatient, E emergency, B obstetrics, "
                          "R recurring, P pre-admit)", pv1.where(2), TABLE_VALUE)
        kind = PATIENT_CLASSES[patient_class]
    room_class = None
    if pv2 is not None:
        accommodation = pv2.text(2).upper()
        if accommodation:
            if accommodation not in ROOM_CLASSES:
                raise Refused(f"PV2-2: accommodation code {accommodation[:10]!r} is not "
                              "handled (1 or P: first class, 2 or W: second class)",
                              pv2.where(2), TABLE_VALUE)
            room_class = ROOM_CLASSES[accommodation]
    return VisitData(
        visit_number=pv1.text(19, limit=40),
        kind=kind, patient_class=patient_class,
        unit=pv1.text(3, 1, 1), room=pv1.text(3, 1, 2), bed=pv1.text(3, 1, 3),
        room_class=room_class,
        attending_doctor=pv1.text(7) or None, admitting_doctor=pv1.text(17) or None,
        admitted_at=pv1.timestamp(44), discharged_at=pv1.timestamp(45),
        expected_admit_at=pv2.timestamp(8) if pv2 is not None else None,
        childbirth=patient_class == "B", psychiatric=pv1.text(10).upper() in ("PSY", "PSYCH"))


def _coverage(in1: Fields) -> CoverageData:
    payer = in1.text(3) or in1.text(4)
    plan = in1.text(15)
    kind = None
    if plan:
        kind = plan.lower() if plan.lower() in COVERAGE_KINDS else \
            COVERAGE_ALIASES.get(plan.upper())
        if kind is None:
            raise Refused(f"IN1-15: plan type {plan[:20]!r} is not handled (statutory, "
                          "other_fund, accident, foreign, complementary, "
                          "social_tiers_payant)", in1.where(15), TABLE_VALUE)
    elif payer.upper() in PAYER_KINDS:
        kind = PAYER_KINDS[payer.upper()]
    else:
        raise Refused("IN1-15: give the plan type (statutory, accident, complementary, ...)",
                      in1.where(15), REQUIRED_MISSING)
    values: dict[str, Any] = {"kind": kind, "payer": payer}
    if kind == "accident":
        values["accident_number"] = in1.text(36) or None
        values["member_number"] = in1.text(49)
    else:
        values["member_number"] = in1.text(36) or in1.text(49)
    valid_from, valid_to = in1.day(12), in1.day(13)
    if valid_from:
        values["valid_from"] = valid_from
    if valid_to:
        values["valid_to"] = valid_to
    return CoverageData(in1.occurrence, values)


_SPECIALTY = re.compile(r"[a-z_]{1,40}")


def _charge(ft1: Fields) -> ChargeData:
    transaction = ft1.text(6).upper()
    if transaction not in ("", "CG"):
        raise Refused(f"FT1-6: transaction type {transaction[:5]!r} is not handled (CG: "
                      "charge); cancel a charge with the API", ft1.where(6), TABLE_VALUE)
    values: dict[str, Any] = {}
    performed = ft1.timestamp(4, 1, 1, 1)
    if performed is None:
        raise Refused(f"{ft1.where(4)}: the transaction date is missing", ft1.where(4),
                      REQUIRED_MISSING)
    values["performed_at"] = performed
    code = ft1.text(7, 1, 1)
    if not code:
        raise Refused(f"{ft1.where(7)}: the transaction code is missing", ft1.where(7),
                      REQUIRED_MISSING)
    values["code"] = code
    quantity = ft1.text(10)
    if quantity:
        whole = _WHOLE.match(quantity)
        if whole is None or int(whole[1]) < 1:
            raise Refused(f"{ft1.where(10)}: quantity {quantity[:10]!r} is not a whole "
                          "number of 1 or more", ft1.where(10), DATA_TYPE)
        values["quantity"] = int(whole[1])
    performer = ft1.text(20, 1, 1)
    if performer:
        values["performer"] = performer
    # The performing department, when the sender names it as the catalogue names
    # specialties: what a code restricted to some specialties (the F-forfaits) is checked
    # against. Another department code (`300`, `CARD-1`) is the sender's own: left aside,
    # and a restricted code then says which specialties it needs.
    specialty = ft1.text(13, 1, 1).lower()
    if _SPECIALTY.fullmatch(specialty):
        values["specialty"] = specialty
    modifiers = [m for n in range(1, ft1.repetitions(26) + 1) if (m := ft1.text(26, n, 1))]
    if modifiers:
        values["modifiers"] = modifiers
    return ChargeData(ft1.occurrence, values)


def event_time(event: Event, moment: datetime | None) -> datetime:
    return moment or event.occurred_at


def is_recent(moment: datetime, now: datetime, days: int) -> bool:
    return now - moment <= timedelta(days=days)

"""HL7 v2 acknowledgements (original mode), pure: the text of an ACK for a message.

    MSH|^~\\&|<MSH-5>|<MSH-6>|<MSH-3>|<MSH-4>|<now>||ACK^<event>^ACK|<id>|<MSH-11>|<MSH-12>
                                                             (then ||||||<MSH-18>, when given)
    MSA|AA|<MSH-10>
    MSA|AE|<MSH-10>|<reason>            (AE and AR: the reason in MSA-3, and an ERR segment)
    ERR||<segment>^<n>^<field>|<code>^<text>^HL70357|E||||<reason>      (v2.5, v2.5.1)
    ERR|<segment>^<n>^<field>^<code>&<text>&HL70357                     (v2.3, v2.4)

The ACK uses the message's own delimiters (MSH-1/MSH-2) and version; when the message gives
none (no MSH at all), the standard ones and v2.5.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from luxfact.hl7.parse import ERROR_TEXTS, Header, Location

ACCEPT, ERROR, REJECT = "AA", "AE", "AR"
STATUS = {ACCEPT: "accepted", ERROR: "error", REJECT: "rejected"}


@dataclass(frozen=True)
class Outcome:
    code: str  # AA, AE, AR
    reason: str = ""
    error_code: str = ""  # HL7 table 0357
    location: Location | None = None

    @property
    def status(self) -> str:
        return STATUS[self.code]


def escape(text: str, header: Header) -> str:
    """Text made safe for a field: delimiters as escape sequences, no line breaks."""
    text = " ".join(text.split())  # CR or LF in a field would end the segment
    return text.translate(_escapes(header.field_separator, header.encoding_characters))


@lru_cache(maxsize=32)
def _escapes(separator: str, encoding: str) -> dict[int, str]:
    """Each delimiter's escape sequence, as a str.translate table (one per set of
    delimiters: every ACK of a sender uses the same)."""
    component, repetition, esc, subcomponent = encoding
    return str.maketrans({esc: f"{esc}E{esc}", separator: f"{esc}F{esc}",
                          component: f"{esc}S{esc}", repetition: f"{esc}R{esc}",
                          subcomponent: f"{esc}T{esc}"})


def timestamp(moment: datetime) -> str:
    """An HL7 TS with its offset: 20260302101500+0100."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def build(header: Header | None, outcome: Outcome, control_id: str, now: datetime) -> str:
    """The ACK's text, segments ending with CR."""
    h = header or Header()
    sep = h.field_separator
    component, _, _, subcomponent = h.encoding_characters

    def esc(text: str) -> str:
        return escape(text, h)

    version = h.version if header and h.version else "2.5"
    trigger = esc(h.trigger)
    msh = sep.join([
        "MSH", h.encoding_characters, esc(h.receiving_application or "LUXFACT"),
        esc(h.receiving_facility), esc(h.sending_application), esc(h.sending_facility),
        timestamp(now), "", f"ACK{component}{trigger}{component}ACK" if trigger else "ACK",
        esc(control_id), esc(h.processing_id or "P"), esc(version),
        # MSH-13 to MSH-17 empty, MSH-18: the message's character set, which the ACK is
        # written in (a receiver reading an ACK that declares none takes it for ASCII).
        *(["", "", "", "", "", esc(h.declared_charset)] if h.declared_charset else [])])
    reason = outcome.reason[:400]
    msa = sep.join(["MSA", outcome.code, esc(h.control_id)]
                   + ([esc(reason)] if outcome.code != ACCEPT and reason else []))
    segments = [msh, msa]
    if outcome.code != ACCEPT:
        segments.append(_err(h, outcome, version, esc, component, subcomponent))
    return "\r".join(segments) + "\r"


def _err(h: Header, outcome: Outcome, version: str, esc, component: str,  # type: ignore[no-untyped-def]
         subcomponent: str) -> str:
    sep = h.field_separator
    code = outcome.error_code or "207"
    text = ERROR_TEXTS.get(code, "Application internal error")
    where = outcome.location
    location = [esc(where.segment), str(where.occurrence),
                str(where.field) if where.field is not None else ""] if where else ["", "", ""]
    if where and where.component:
        location.append(str(where.component))
    if not version.startswith(("2.1", "2.2", "2.3", "2.4")):  # ERR as of v2.5
        return sep.join(["ERR", "", component.join(location).rstrip(component),
                         component.join([code, esc(text), "HL70357"]), "E", "", "", "",
                         esc(outcome.reason[:400])])
    # v2.3/v2.4: ERR-1 (ELD): segment^sequence^field^code&text&table.
    return sep.join(["ERR", component.join([*location[:3], subcomponent.join(
        [code, esc(text), "HL70357"])])])


def parse_code(ack: str) -> str:
    """MSA-1 of an ACK built here (for tests and the benchmark)."""
    for segment in ack.replace("\n", "\r").split("\r"):
        if segment.startswith("MSA"):
            return segment[4:6]
    return ""

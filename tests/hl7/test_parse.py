"""Reading HL7 v2 messages and building ACKs: pure, no database."""

import contextlib
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from luxfact.hl7 import ack, parse
from luxfact.patients.matricule import legacy_check_digit
from tests.hl7 import messages as m

TODAY = date(2026, 11, 26)


def read(raw: bytes) -> parse.Event:
    return parse.interpret(parse.read(raw), TODAY)


def a01(*extra: str, separator: str = "\r", **pid_fields: str) -> bytes:
    return m.message(m.msh("ADT^A01", "CTRL1"), m.evn("A01", "20260302080000"),
                     m.pid("1990093012358", **pid_fields), m.pv1("V1", admit="20260302080000"),
                     *extra, separator=separator)


def test_a01_values() -> None:
    event = read(a01(m.in1("CNS", policy="123"), address="Rue A^^Ettelbruck^^L-9080^LUX"))
    assert event.trigger == "A01" and event.header.control_id == "CTRL1"
    assert event.header.sending_facility == "NORDHIS" and event.header.version == "2.5"
    assert event.patient is not None and event.visit is not None
    assert event.patient.identity.matricule == "1990093012358"
    assert event.patient.values == {
        "family_name": "Muller", "given_name": "Anne", "birth_date": date(1980, 1, 1),
        "sex": "F", "street": "Rue A", "city": "Ettelbruck", "postal_code": "L-9080",
        "country": "LU"}
    visit = event.visit
    assert (visit.visit_number, visit.kind, visit.unit, visit.room, visit.bed) == \
        ("V1", "inpatient", "MED", "204", "A")
    # Local time in Luxembourg (CET in March): 08:00 is 07:00 UTC.
    assert visit.admitted_at is not None
    assert visit.admitted_at.astimezone(UTC) == datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    assert event.coverages[0].values["kind"] == "statutory"
    assert event.coverages[0].values["member_number"] == "123"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_segment_separators_cr_lf_crlf(separator: str) -> None:
    event = read(a01(separator=separator))
    assert event.visit is not None and event.visit.visit_number == "V1"


def test_time_with_an_offset_is_kept() -> None:
    raw = m.message(m.msh("ADT^A01", "C"), m.evn("A01", "20260302080000"),
                    m.pid("1990093012358"), m.pv1("V1", admit="202607010800+0000"))
    visit = read(raw).visit
    assert visit is not None and visit.admitted_at is not None
    assert visit.admitted_at.astimezone(UTC) == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)


def test_escape_sequences_are_decoded() -> None:
    raw = a01(identifiers="1990093012358^^^CNS^NN", family="M\\XC3BC\\ller",
              given="Ana\\T\\Maria", address="Rue \\E\\ du Nord \\T\\ Sud^^Esch\\S\\Nord")
    values = read(raw).patient.values  # type: ignore[union-attr]
    assert values["family_name"] == "Müller"
    assert values["given_name"] == "Ana&Maria"
    assert values["street"] == "Rue \\ du Nord & Sud"
    assert values["city"] == "Esch^Nord"


def test_formatting_escapes_are_one_space_at_most_whatever_their_count() -> None:
    # \.sk1000000000\ was a gigabyte of spaces from the library; \.spx\ a ValueError.
    raw = a01(family="Mul\\.sk1000000000\\ler", given="Ana\\.spx\\Maria\\H\\X\\N\\")
    values = read(raw).patient.values  # type: ignore[union-attr]
    assert values["family_name"] == "Mul ler"
    assert values["given_name"] == "Ana MariaX"


@pytest.mark.parametrize(("field", "reason"), [
    ("family", "PID-5: contains a control character"),
    ("given", "PID-5.2: contains a control character"),
])
def test_a_decoded_control_character_is_refused_with_its_field(field: str, reason: str) -> None:
    with pytest.raises(parse.Refused, match=reason):
        read(a01(**{field: "Ab\\X00\\cd"}))


def test_escape_of_the_field_separator_and_repetition() -> None:
    raw = a01(family="A\\F\\B\\R\\C")
    assert read(raw).patient.values["family_name"] == "A|B~C"  # type: ignore[union-attr]


def test_encoding_characters_come_from_msh() -> None:
    text = ("MSH#*!/%#HIS#NORDHIS#LUX#LUX#20260302080000##ADT*A01*ADT_A01#C9#P#2.4\r"
            "PID#1##1990093012358*****CNS*NN!X1*****HIS*MR##Weber/S/*Paul##19700505#M\r"
            "PV1#1#O#ER*1*2################V9")
    event = read(text.encode())
    assert event.header.encoding_characters == "*!/%" and event.header.field_separator == "#"
    assert event.patient is not None and event.visit is not None
    assert event.patient.identity.matricule == "1990093012358"
    assert event.patient.values["family_name"] == "Weber*"
    assert event.patient.values["given_name"] == "Paul"
    assert (event.visit.kind, event.visit.unit, event.visit.visit_number) == \
        ("outpatient", "ER", "V9")


def test_repetitions_the_tagged_identifier_wins() -> None:
    raw = a01(identifiers="H123^^^HIS^MR~1990093012358^^^CNS^NN")
    assert read(raw).patient.identity.matricule == "1990093012358"  # type: ignore[union-attr]
    legacy = "1990093010" + str(legacy_check_digit("1990093010"))
    old = a01(identifiers=f"H123^^^HIS^MR~{legacy}")
    identity = read(old).patient.identity  # type: ignore[union-attr]
    assert identity == parse.Identity(legacy_matricule=legacy)
    # An untagged number that is no matricule is the sender's own: not an identity.
    other = a01(identifiers="12345678901^^^HIS^PI~H123^^^HIS^MR")
    assert read(other).patient.identity == parse.Identity()  # type: ignore[union-attr]
    # A tagged one that is not valid is refused.
    with pytest.raises(parse.Refused, match="PID-3: not a valid matricule"):
        read(a01(identifiers="12345678901^^^CNS^NN"))


def test_latin1_without_declaration_and_declared_charset() -> None:
    raw = a01(family="Müller").decode().encode("latin-1")
    assert read(raw).patient.values["family_name"] == "Müller"  # type: ignore[union-attr]
    declared = (m.msh("ADT^A01", "C", charset="8859/1") + "\r" + m.pid("1990093012358",
                family="Gonçalves") + "\r" + m.pv1("V1")).encode("latin-1")
    assert read(declared).patient.values["family_name"] == "Gonçalves"  # type: ignore[union-attr]
    wrong = (m.msh("ADT^A01", "C", charset="UNICODE UTF-8") + "\r" +
             m.pid("1990093012358", family="Gonçalves")).encode("latin-1")
    with pytest.raises(parse.Rejected, match="MSH-18"):
        parse.read(wrong)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty"),
    (b"\x00\x01\x02\xff\xfe garbage \x00", "NUL"),
    (b"PID|1||1990093012358\rPV1|1|I", "does not start with an MSH"),
    (b"MSH#^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.5\r", "MSH-1/MSH-2"),
    (b"MSH|^~|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.5\r", "MSH-1/MSH-2"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01||P|2.5\r", "MSH-10"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.6\r", "MSH-12"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A28|C1|P|2.5\r", "A28"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ORU^R01|C1|P|2.5\r", "ORU"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.5\rthis is not a segment\r",
     "not a segment"),
    (b"MSH|^~\\&|A|B|C|D|1||ADT^A01|C1|P|2.5\rMSH|^~\\&|A|B|C|D|1||ADT^A01|C2|P|2.5\r",
     "several MSH"),
])
def test_what_cannot_be_read_is_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(parse.Rejected, match=reason):
        parse.read(raw)


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"])
def test_supported_versions(version: str) -> None:
    raw = m.message(m.msh("ADT^A03", "C", version=version), m.pid("1990093012358"),
                    m.pv1("V1"))
    assert read(raw).header.version == version


@pytest.mark.parametrize(("segment", "reason"), [
    (m.pid("1990093012359"), "PID-3: not a valid matricule"),
    (m.pid("1990093012358", birth="1990-09-30"), "PID-7: not a date"),
    (m.pid("1990093012358", sex="Q"), "PID-8"),
])
def test_wrong_values_are_refused_with_their_field(segment: str, reason: str) -> None:
    raw = m.message(m.msh("ADT^A01", "C"), segment, m.pv1("V1"))
    with pytest.raises(parse.Refused, match=reason) as caught:
        read(raw)
    assert "1990093012359" not in caught.value.reason  # a matricule never in a reason


def test_refused_visit_and_charge_fields() -> None:
    bad_time = m.message(m.msh("ADT^A01", "C"), m.pid("1990093012358"),
                         m.pv1("V1", admit="2026-03-02"))
    with pytest.raises(parse.Refused, match="PV1-44"):
        read(bad_time)
    bad_class = m.message(m.msh("ADT^A01", "C"), m.pid("1990093012358"),
                          m.pv1("V1", patient_class="Z"))
    with pytest.raises(parse.Refused, match="PV1-2"):
        read(bad_class)
    no_pv1 = m.message(m.msh("ADT^A01", "C"), m.pid("1990093012358"))
    with pytest.raises(parse.Refused, match="PV1 segment is missing"):
        read(no_pv1)
    quantity = m.message(m.msh("DFT^P03", "C"), m.pid("1990093012358"), m.pv1("V1"),
                         m.ft1("N101", "20260302100000", quantity="1.5"))
    with pytest.raises(parse.Refused, match="FT1-10"):
        read(quantity)
    # Whole numbers only, as digits: never what float() would also take.
    for text in ("inf", "1e400", "nan", "1e2", "1_0", "\u0662", "0", "-1"):
        charge = m.message(m.msh("DFT^P03", "C"), m.pid("1990093012358"), m.pv1("V1"),
                           m.ft1("N101", "20260302100000", quantity=text))
        with pytest.raises(parse.Refused, match="FT1-10: quantity"):
            read(charge)
    two = m.message(m.msh("DFT^P03", "C"), m.pid("1990093012358"), m.pv1("V1"),
                    m.ft1("N101", "20260302100000", quantity="2.00"))
    assert read(two).charges[0].values["quantity"] == 2
    for moment in ("99991231235959-1200", "20260302100000+2400"):
        late = m.message(m.msh("DFT^P03", "C"), m.pid("1990093012358"), m.pv1("V1"),
                         m.ft1("N101", moment))
        with pytest.raises(parse.Refused, match="FT1-4"):
            read(late)


@pytest.mark.parametrize(("msh", "reason"), [
    ("MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|" + "C" * 150 + "|P|2.5",
     "MSH-10: longer than 100"),
    ("MSH|^~\\&|" + "H" * 150 + "|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.5",
     "MSH-3: longer than 100"),
    ("MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1\\X00\\|P|2.5",
     "MSH-10: contains a control"),
    ("MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A011|C1|P|2.5", "MSH-9.2: longer than 3"),
    ("MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C1|P|2.5||||||8859/2",
     "MSH-18: unknown character set"),
    ("MSH|^~\\&|" + "H" * 150 + "|NORDHIS&1.2.3&ISO|LUX|LUX|20260302||ADT^A01|C1|P|2.5",
     "MSH-3: longer than 100"),
])
def test_a_header_field_refused_still_gives_the_hospital_and_control_id(
        msh: str, reason: str) -> None:
    raw = m.message(msh, m.pid("1990093012358"), m.pv1("V1"))
    with pytest.raises(parse.Rejected, match=reason) as caught:
        parse.read(raw)
    header = caught.value.header
    assert header is not None and caught.value.header_from_raw
    assert header.sending_facility == "NORDHIS" and header.type_code.startswith("ADT^A01")
    assert header.control_id == ("C" * 100 if "C" * 150 in msh else "C1")
    assert header.charset == "utf-8"
    ack_text = ack.build(header, ack.Outcome(ack.REJECT, caught.value.reason), "A1",
                         datetime(2026, 3, 2, tzinfo=UTC))
    assert ack_text.split("\r")[1].split("|")[2] == header.control_id  # MSA-2


def test_dft_charges() -> None:
    raw = m.message(m.msh("DFT^P03", "C"), m.evn("P03", "20260302120000"),
                    m.pid("1990093012358"), m.pv1("V1"),
                    m.ft1("N101", "20260302100000", quantity="2"),
                    m.ft1("C1", "20260302110000^20260302113000", performer="12345678^Dr^X"))
    event = read(raw)
    first, second = (c.values for c in event.charges)
    assert first["code"] == "N101" and first["quantity"] == 2
    assert second["code"] == "C1" and second["performer"] == "12345678"
    assert second["performed_at"].astimezone(UTC) == datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_ack_accept_and_error_structure() -> None:
    header = parse.read(a01()).header
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    text = ack.build(header, ack.Outcome("AA"), "ACK1", now)
    msh, msa = text.rstrip("\r").split("\r")
    fields = msh.split("|")
    assert fields[1] == "^~\\&" and fields[2:6] == ["LUXFACT", "LUX", "HIS", "NORDHIS"]
    assert fields[8] == "ACK^A01^ACK" and fields[9] == "ACK1" and fields[11] == "2.5"
    assert msa == "MSA|AA|CTRL1"
    error = ack.build(header, ack.Outcome("AE", "PV1-19: no stay | here", "204",
                                          parse.Location("PV1", 19)), "ACK2", now)
    segments = error.rstrip("\r").split("\r")
    assert segments[1] == "MSA|AE|CTRL1|PV1-19: no stay \\F\\ here"
    err = segments[2].split("|")
    assert err[0] == "ERR" and err[2] == "PV1^1^19"
    assert err[3] == "204^Unknown key identifier^HL70357" and err[4] == "E"
    assert err[8] == "PV1-19: no stay \\F\\ here"


def test_ack_for_old_versions_and_unreadable_messages() -> None:
    raw = m.message(m.msh("ADT^A03", "C23", version="2.3"), m.pid("1990093012358"),
                    m.pv1("V1"))
    header = parse.read(raw).header
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    text = ack.build(header, ack.Outcome("AE", "nope", "204", parse.Location("PV1", 19)),
                     "X", now)
    assert "\rERR|PV1^1^19^204&Unknown key identifier&HL70357\r" in text
    assert text.split("\r")[0].split("|")[11] == "2.3"
    blind = ack.build(None, ack.Outcome("AR", "no MSH", "100"), "X", now)
    assert blind.startswith("MSH|^~\\&|LUXFACT|") and "\rMSA|AR||no MSH\r" in blind


SAMPLES = [
    m.admit("F1", "1990093012358", "V1"),
    m.dft("F2", "1990093012358", "V1", ("N101", "20260302100000"), ("C1", "20260302110000")),
    m.message(m.msh("ADT^A40", "F3"), m.pid("1990093012358"), m.mrg("1990093012358", "V9")),
]


def test_a_header_read_raw_keeps_a_utf8_control_id_as_sent() -> None:
    msh = "MSH|^~\\&|" + "H" * 150 + "|NORDHIS|LUX|LUX|20260302||ADT^A01|Ré-1|P|2.5"
    with pytest.raises(parse.Rejected) as caught:
        parse.read(m.message(msh, m.pid("1990093012358"), m.pv1("V1")))
    header = caught.value.header
    assert header is not None and header.control_id == "Ré-1"
    ack_text = ack.build(header, ack.Outcome(ack.REJECT, "x"), "A1",
                         datetime(2026, 3, 2, tzinfo=UTC))
    assert ack_text.encode(header.charset).split(b"\r")[1].split(b"|")[2] == "Ré-1".encode()


@pytest.mark.parametrize("msh", ["MSH|^~\x00&|HIS|NORDHIS|LUX|LUX|1||ADT^A01|C1|P|2.5",
                                 "MSH\x00^~\\&\x00HIS\x00NORDHIS\x00LUX\x00LUX\x001\x00\x00"
                                 "ADT^A01\x00C1\x00P\x002.5"])
def test_control_characters_as_delimiters_leave_no_header(msh: str) -> None:
    # Read from the raw line, they would have been the ACK's delimiters (a NUL PostgreSQL
    # refuses in the log row): no header, so the ACK takes the standard ones.
    with pytest.raises(parse.Rejected, match="NUL") as caught:
        parse.read(m.message(msh, m.pid("1990093012358")))
    assert caught.value.header is None


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(sample=st.sampled_from(SAMPLES), cuts=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 6),
              st.binary(max_size=6) | st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r",
                                                       b"\\X", b"\\XC3\\", b'""', b"MSH|"])),
    max_size=4))
def test_mangled_messages_fail_only_as_ar_or_ae(
    sample: bytes, cuts: list[tuple[int, int, bytes]]
) -> None:
    raw = bytearray(sample)
    for at, length, insert in cuts:
        at = min(at, len(raw))
        raw[at:at + length] = insert
    try:
        parsed = parse.read(bytes(raw))
    except parse.Rejected:
        return
    with contextlib.suppress(parse.Refused):
        parse.interpret(parsed, TODAY)
    ack.build(parsed.header, ack.Outcome("AE", "x", "207"), "X", datetime.now(UTC))


@pytest.mark.parametrize("declared", ["8859/1", "UNICODE UTF-8", ""])
def test_the_ack_declares_the_character_set_the_message_declared(declared: str) -> None:
    """The ACK is written in the message's character set, and says so in MSH-18 as the
    message did (read without one, an ACK is taken for ASCII), whether the header was read
    by the library or, refused, from its raw bytes."""
    msh = m.msh("ADT^A01", "CS1", facility="HÔPITAL", charset=declared)
    codec = {"8859/1": "latin-1"}.get(declared, "utf-8")
    good = (msh + "\r" + m.pid("1990093012358") + "\r" + m.pv1("V1") + "\r").encode(codec)
    header = parse.read(good).header
    long = msh.replace("|HIS|", "|" + "H" * 150 + "|")  # MSH-3 over its limit: read raw
    with pytest.raises(parse.Rejected) as caught:
        parse.read((long + "\r" + m.pid("1990093012358") + "\r").encode(codec))
    assert caught.value.header is not None
    for read in (header, caught.value.header):
        text = ack.build(read, ack.Outcome(ack.ACCEPT), "A1", datetime(2026, 3, 2, tzinfo=UTC))
        fields = text.encode(read.charset).decode(codec).split("\r")[0].split("|")
        assert fields[5] == "HÔPITAL"  # MSH-6: the message's MSH-4
        assert (fields[17] if len(fields) > 17 else "") == declared


def test_a_truncation_character_is_refused_with_its_control_id_echoed() -> None:
    """MSH-2 of HL7 v2.7 and later has a fifth character: refused, saying so, and the header
    still read so that the ACK answers the right message."""
    msh = "MSH|^~\\&#|HIS|NORDHIS|LUX|LUX|20260302080000||ADT^A01^ADT_A01|C27|P|2.7"
    with pytest.raises(parse.Rejected, match="five encoding characters") as caught:
        parse.read(m.message(msh, m.pid("1990093012358"), m.pv1("V1")))
    header = caught.value.header
    assert header is not None and header.control_id == "C27"
    assert header.encoding_characters == "^~\\&"
    text = ack.build(header, ack.Outcome(ack.REJECT, caught.value.reason), "A1",
                     datetime(2026, 3, 2, tzinfo=UTC))
    assert text.split("\r")[1].split("|")[:3] == ["MSA", "AR", "C27"]


def test_an_ack_read_in_latin1_does_not_declare_the_utf8_the_message_claimed() -> None:
    """A message declaring UTF-8 in bytes that are not: refused, its header read as Latin-1,
    and its ACK, written in Latin-1, declares no character set rather than a wrong one."""
    msh = m.msh("ADT^A01", "CS8", facility="HÔPITAL", charset="UNICODE UTF-8")
    raw = (msh + "\r" + m.pid("1990093012358") + "\r").encode("latin-1")
    with pytest.raises(parse.Rejected, match="MSH-18") as caught:
        parse.read(raw)
    header = caught.value.header
    assert header is not None and header.charset == "latin-1"
    assert header.declared_charset == ""
    text = ack.build(header, ack.Outcome(ack.REJECT, "x"), "A1", datetime(2026, 3, 2, tzinfo=UTC))
    assert len(text.split("\r")[0].split("|")) == 12  # MSH-12 last: no MSH-18
    assert text.encode("latin-1").decode("latin-1").split("|")[5] == "HÔPITAL"

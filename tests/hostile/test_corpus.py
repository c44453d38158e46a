"""Every entry of tests/hostile/corpus sent to every place it could go.

Each is answered with a 4xx (never a 5xx) and nothing is stored, except the strings a field
legitimately accepts as text: those are stored and returned exactly as sent and escaped in the
desk's HTML. The rule per field is in corpus/README.md.
"""

import json
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Uuid, bindparam, text

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.http.endpoint import parse_body
from luxfact.kit import context
from luxfact.kit.errors import BadRequest
from luxfact.patients.schemas import PatientIn
from tests.claims.test_returns import post_return, sent_batch
from tests.conftest import Hospital, make_hospital
from tests.patients.test_api import patient_body
from tests.stays.test_api import admit
from tests.web.desk import signed_in

pytestmark = pytest.mark.usefixtures("catalogue")

CORPUS = Path(__file__).resolve().parent / "corpus"
STRINGS: list[dict[str, str]] = json.loads((CORPUS / "strings.json").read_text("ascii"))
XML_FILES = sorted((CORPUS / "xml").glob("*.xml"))
XML_BODIES = [pytest.param(p.read_bytes(), id=p.name) for p in XML_FILES]
JSON_FILES = sorted((CORPUS / "json").glob("*.json"))
HL7_FILES = sorted((CORPUS / "hl7").glob("*.hl7"))
MAX_BODY = 64 * 1024  # tests/conftest.py: max_body_bytes
MAX_HL7_BODY = 12 * 1024 * 1024  # tests/conftest.py: max_hl7_body_bytes
PROBLEM = "application/problem+json"

# Characters a name never has (luxfact/patients/schemas.py `_name`).
NAME_REFUSES = set("<>{}[]\\|;=@#$%^*_~`")
# Free-text fields: any printable text, markup included (escaped when shown).
FREE_TEXT = ("street", "postal_code", "city")
NAMES = ("family_name", "given_name")
# Fields with a closed form (pattern, table, date, checksum): every hostile string refused.
CLOSED = ("country", "phone", "matricule", "legacy_matricule", "no_matricule_reason",
          "birth_date", "sex", "language")
PATIENT_FIELDS = (*NAMES, *FREE_TEXT, "email", *CLOSED)

MAX_LENGTH = {"family_name": 100, "given_name": 100, "street": 200, "postal_code": 20,
              "city": 100, "email": 254}



def _is_control(value: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def _sent(field: str, value: str) -> str:
    # An e-mail address needs an @: the hostile part is the local part.
    return f"{value}@example.lu" if field == "email" else value


def _as_text(field: str, value: str) -> str | None:
    """What the field stores for `value` under its rule, control characters aside."""
    value = _sent(field, value)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return None  # a lone surrogate is no text
    if field in NAMES:
        value = unicodedata.normalize("NFC", " ".join(value.split()))
        if not value or NAME_REFUSES & set(value):
            return None
    elif field in FREE_TEXT:
        value = value.strip()
    elif field == "email":
        value = value.strip()
        if " " in value:
            return None
    else:
        return None
    return value if len(value) <= MAX_LENGTH[field] else None


def expected(field: str, value: str) -> str | None:
    """What the field stores for `value`, or None when it must be refused: the README's
    rule (control characters and NUL refused; markup, SQL and look-alikes are text)."""
    stored = _as_text(field, value)
    return None if stored is None or _is_control(stored) else stored


def _cases() -> list[Any]:
    cases = []
    for field in PATIENT_FIELDS:
        for entry in STRINGS:
            cases.append(pytest.param(field, entry["value"], id=f"{field}-{entry['name']}"))
    return cases


# --- fixtures and helpers -----------------------------------------------------------------

@pytest.fixture(scope="module")
async def hospital(owner_db: Database) -> Hospital:
    """One hospital for the module: counts are compared before and after each request."""
    return await make_hospital(owner_db, "hostile")


async def counts(db: Database, hospital: Hospital) -> dict[str, int]:
    tables = ("patients", "coverages", "stays", "movements", "acts", "claim_batches",
              "hl7_messages")
    found: dict[str, int] = {}
    with context.tenant_scope(hospital.id, actor="test"):
        async with db.transaction() as session:
            for table in tables:
                query = text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"
                             ).bindparams(bindparam("t", type_=Uuid()))
                result = await session.execute(query, {"t": hospital.id})
                found[table] = int(result.scalar_one())
    return found


def raw_json(body: dict[str, Any]) -> bytes:
    """JSON with every non-ASCII character escaped: lone surrogates survive the trip."""
    return json.dumps(body, ensure_ascii=True).encode("ascii")


def assert_refused(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM), response.headers


# --- every text field of POST /api/v1/patients ---------------------------------------------

@pytest.mark.parametrize(("field", "value"), _cases())
async def test_patient_field(client: httpx.AsyncClient, owner_db: Database, hospital: Hospital,
                             field: str, value: str) -> None:
    # No matricule (its 3 random digits would collide among a hundred patients here).
    body = patient_body(matricule=None, no_matricule_reason="foreign")
    body[field] = _sent(field, value)
    before = await counts(owner_db, hospital)
    response = await client.post("/api/v1/patients", content=raw_json(body), headers={
        **hospital.auth(Role.clerk), "Content-Type": "application/json"})
    after = await counts(owner_db, hospital)
    want = expected(field, value)
    if want is None:
        assert_refused(response)
        assert after == before
        return
    assert response.status_code == 201, response.text
    assert response.json()[field] == want
    assert after["patients"] == before["patients"] + 1
    read = await client.get(f"/api/v1/patients/{response.json()['id']}",
                            headers=hospital.auth(Role.clerk))
    assert read.status_code == 200 and read.json()[field] == want


async def test_markup_is_escaped_on_the_desk(app: object, client: httpx.AsyncClient,
                                             owner_db: Database, hospital: Hospital) -> None:
    """Markup accepted as text (street, city, e-mail) is escaped in the patient's page."""
    script, img = "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>"
    body = patient_body(matricule=None, no_matricule_reason="foreign", street=img, city=script,
                        email=f"{script}@example.lu", given_name="javascript:alert(1)",
                        postal_code="'; DROP TABLE x; --")
    created = await client.post("/api/v1/patients", json=body,
                                headers=hospital.auth(Role.clerk))
    assert created.status_code == 201, created.text
    patient = created.json()
    assert (patient["street"], patient["city"]) == (img, script)
    async with signed_in(app, owner_db, hospital, Role.clerk) as desk:
        page = await desk.get(f"/desk/patients/{patient['id']}")
        listing = await desk.get("/desk/patients/search", params={"q": patient["family_name"]})
    assert page.status_code == 200, page.text[:300]
    for html in (page.text, listing.text):
        assert "<script>alert(1)" not in html
        assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


# --- the same strings in the text fields of stays, acts and claim batches -----------------

OTHER_FIELDS = ("stays.unit", "stays.room", "stays.bed", "stays.external_id", "acts.code",
                "acts.note", "acts.specialty", "claim-batches.payer")


def _other_cases() -> list[Any]:
    cases = []
    for where in OTHER_FIELDS:
        for entry in STRINGS:
            cases.append(pytest.param(where, entry["value"], id=f"{where}-{entry['name']}"))
    return cases


@pytest.mark.parametrize(("where", "value"), _other_cases())
async def test_other_text_fields(client: httpx.AsyncClient, owner_db: Database,
                                 hospital: Hospital, stay: dict, where: str,
                                 value: str) -> None:
    """Refused (4xx, nothing stored) or stored exactly; control characters always refused."""
    route, field = where.split(".")
    if route == "stays":
        # A patient of its own: a patient has one open stay at a time.
        patient = await client.post("/api/v1/patients", json=patient_body(
            matricule=None, no_matricule_reason="foreign"), headers=hospital.auth(Role.clerk))
        assert patient.status_code == 201, patient.text
        url, role = "/api/v1/stays", Role.clerk
        body: dict[str, Any] = {"patient_id": patient.json()["id"], "kind": "outpatient",
                                "admitted_at": "2026-03-02T08:00:00+01:00"}
    elif route == "acts":
        url, role = f"/api/v1/stays/{stay['id']}/acts", Role.clerk
        body = {"code": "N101", "performed_at": "2026-03-02T10:00:00+01:00"}
    else:
        url, role = "/api/v1/claim-batches", Role.billing
        body = {"payer": "CNS", "period": "2019-01"}
    body[field] = value
    before = await counts(owner_db, hospital)
    response = await client.post(url, content=raw_json(body), headers={
        **hospital.auth(role), "Content-Type": "application/json"})
    after = await counts(owner_db, hospital)
    assert response.status_code < 500, response.text[:300]
    if _is_control(value.strip()) or not 200 <= response.status_code < 300:
        assert_refused(response)
        before["patients"] = after["patients"]  # the stay's own patient
        assert after == before
        return
    assert response.json()[field] == value.strip(), response.text[:300]


# --- JSON bodies on POST routes ---------------------------------------------------------------

def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def _nested_objects(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


JSON_BODIES = [pytest.param(p.read_bytes(), id=p.name) for p in JSON_FILES] + [
    pytest.param(_nested(25_000), id="nested-arrays-25k"),
    pytest.param(_nested_objects(10_000), id="nested-objects-10k"),
    pytest.param(b'{"n": ' + b"9" * 5000 + b"}", id="huge-integer"),
    pytest.param(b"", id="empty"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"just a string"', id="string"),
]


@pytest.fixture(scope="module")
async def stay(client: httpx.AsyncClient, hospital: Hospital) -> dict:
    return await admit(client, hospital)


def _routes(stay: dict) -> dict[str, tuple[str, Role, dict[str, Any]]]:
    """route -> (url, role, a body with NUL inside one of its text fields)."""
    return {
        "patients": ("/api/v1/patients", Role.clerk,
                     patient_body(given_name="An\u0000ne")),
        "stays": ("/api/v1/stays", Role.clerk,
                  {"patient_id": stay["patient_id"], "kind": "inpatient",
                   "admitted_at": "2026-03-02T08:00:00+01:00", "unit": "MED\u00002"}),
        "acts": (f"/api/v1/stays/{stay['id']}/acts", Role.clerk,
                 {"code": "N1\u000001", "performed_at": "2026-03-02T10:00:00+01:00"}),
        "acts-note": (f"/api/v1/stays/{stay['id']}/acts", Role.clerk,
                      {"code": "N101", "performed_at": "2026-03-02T10:00:00+01:00",
                       "note": "a\u0000b"}),
        "claim-batches": ("/api/v1/claim-batches", Role.billing,
                          {"payer": "CN\u0000S", "period": "2026-03"}),
    }


ROUTES = ("patients", "stays", "acts", "claim-batches")


@pytest.mark.parametrize("body", JSON_BODIES)
@pytest.mark.parametrize("route", ROUTES)
async def test_hostile_json(client: httpx.AsyncClient, owner_db: Database, hospital: Hospital,
                            stay: dict, route: str, body: bytes) -> None:
    url, role, _ = _routes(stay)[route]
    before = await counts(owner_db, hospital)
    response = await client.post(url, content=body, headers={
        **hospital.auth(role), "Content-Type": "application/json"})
    assert_refused(response)
    assert await counts(owner_db, hospital) == before


NUL_CASES = ["patients", "stays", "acts", "acts-note", "claim-batches"]


@pytest.mark.parametrize("route", NUL_CASES)
async def test_nul_in_a_text_field(client: httpx.AsyncClient, owner_db: Database,
                                   hospital: Hospital, stay: dict, route: str) -> None:
    url, role, body = _routes(stay)[route]
    before = await counts(owner_db, hospital)
    response = await client.post(url, content=raw_json(body), headers={
        **hospital.auth(role), "Content-Type": "application/json"})
    assert_refused(response)
    assert await counts(owner_db, hospital) == before


def test_nesting_of_100000_levels_is_a_bad_request() -> None:
    """Beyond the test limit of 64 KB over HTTP (413, below), so the parser is tried alone."""
    headers = {"content-type": "application/json"}
    for body in (_nested(100_000), _nested_objects(100_000)):
        with pytest.raises(BadRequest):
            parse_body(body, headers, PatientIn)


# --- the insurer's return (XML) -------------------------------------------------------------

@pytest.fixture(scope="module")
async def batch(client: httpx.AsyncClient, hospital: Hospital) -> dict:
    sent, _ = await sent_batch(client, hospital, 1)
    return sent


@pytest.mark.parametrize("body", XML_BODIES)
async def test_hostile_return_xml(client: httpx.AsyncClient, hospital: Hospital, batch: dict,
                                  body: bytes) -> None:
    response = await post_return(client, hospital, batch, body)
    assert response.status_code == 422, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    assert "root:" not in response.text  # no line of /etc/passwd echoed back
    state = await client.get(f"/api/v1/claim-batches/{batch['id']}",
                             headers=hospital.auth(Role.billing))
    assert state.json()["state"] == "sent"


async def test_quadratic_blowup_return(client: httpx.AsyncClient, hospital: Hospital,
                                       batch: dict) -> None:
    """One entity of 10 KB used 5,000 times (generated: the file would be large)."""
    body = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "' + b"x" * 10_000 + b'">]><r>'
            + b"&a;" * 5_000 + b"</r>")
    response = await post_return(client, hospital, batch, body)
    assert response.status_code == 422, response.text[:300]
    state = await client.get(f"/api/v1/claim-batches/{batch['id']}",
                             headers=hospital.auth(Role.billing))
    assert state.json()["state"] == "sent"


# --- HL7 v2 over HTTP ---------------------------------------------------------------------

def _msa(ack: str) -> list[str]:
    separator = ack[3] if ack.startswith("MSH") and len(ack) > 3 else "|"
    for line in ack.split("\r"):
        if line.startswith("MSA" + separator):
            return line.split(separator)
    raise AssertionError(f"no MSA in {ack!r}")


HL7_BODIES = [pytest.param(p.read_bytes(), id=p.name) for p in HL7_FILES] + [
    pytest.param(b"", id="empty"),
    pytest.param(b"\r\n\r\n", id="blank-lines"),
    pytest.param(b"MSH|^~\\&|" + b"A" * 60_000, id="one-huge-field"),
    pytest.param(b"MSH|^~\\&|HIS|NORDHIS|LUXFACT|LUX|20260302080000||ADT^A01^ADT_A01|H1|P|2.5"
                 b"\rPID|" + b"^" * 20_000, id="many-components"),
]


@pytest.mark.parametrize("body", HL7_BODIES)
async def test_hl7_garbage(client: httpx.AsyncClient, owner_db: Database, hospital: Hospital,
                           body: bytes) -> None:
    before = await counts(owner_db, hospital)
    response = await client.post("/api/v1/hl7/v2", content=body, headers={
        **hospital.auth(Role.integration), "Content-Type": "text/plain"})
    assert response.status_code < 500, response.text[:300]
    if response.status_code == 200:
        assert _msa(response.text)[1] in ("AR", "AE"), response.text
    else:
        assert 400 <= response.status_code < 500
    after = await counts(owner_db, hospital)
    assert (after["patients"], after["stays"], after["acts"]) == \
        (before["patients"], before["stays"], before["acts"])


# --- a body over the limit ----------------------------------------------------------------

async def _stream(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * 8192
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)


@pytest.mark.parametrize(("url", "role", "media"), [
    ("/api/v1/patients", Role.clerk, "application/json"),
    ("/api/v1/claim-batches", Role.billing, "application/json"),
    ("/api/v1/hl7/v2", Role.integration, "text/plain"),
])
@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, owner_db: Database,
                                            hospital: Hospital, url: str, role: Role,
                                            media: str, streamed: bool) -> None:
    before = await counts(owner_db, hospital)
    # An HL7 message has its own limit: under it, a large one is answered AR (test_log.py).
    size = (MAX_HL7_BODY if url.startswith("/api/v1/hl7/") else MAX_BODY) + 1
    content: Any = _stream(size) if streamed else b'{"x": "' + b"a" * size + b'"}'
    response = await client.post(url, content=content,
                                 headers={**hospital.auth(role), "Content-Type": media})
    assert response.status_code == 413, response.text[:300]
    assert await counts(owner_db, hospital) == before


async def test_a_huge_nested_body_is_413(client: httpx.AsyncClient, hospital: Hospital) -> None:
    """100,000 levels of nesting are 200 KB: over the limit before any parsing."""
    response = await client.post("/api/v1/patients", content=_nested(100_000), headers={
        **hospital.auth(Role.clerk), "Content-Type": "application/json"})
    assert response.status_code == 413


def test_the_corpus_is_small_and_listed() -> None:
    readme = (CORPUS / "README.md").read_text("utf-8")
    for path in sorted(CORPUS.rglob("*")):
        if path.is_file() and path.name != "README.md":
            assert path.stat().st_size <= 4096, path
            assert f"`{path.relative_to(CORPUS)}`" in readme, f"{path.name} not in README.md"
    for entry in STRINGS:
        assert f"`{entry['name']}`" in readme, entry["name"]

"""The HTTP endpoint's answers, the message log: duplicates, listing, replay, retention."""

import asyncio
import logging
import uuid
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import update

from luxfact.app import create_app
from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.hl7.models import HL7Message
from luxfact.kit import context
from luxfact.kit.time import utcnow
from luxfact.settings import Settings
from tests.cli.test_commands import invoke
from tests.conftest import Hospitals
from tests.hl7 import messages as m
from tests.hl7.helpers import (
    ER7,
    accepted,
    code,
    messages,
    patient,
    reason,
    refused,
    segment,
    send,
    stay,
    stays_of,
)
from tests.patients.test_api import create as create_patient

pytestmark = pytest.mark.usefixtures("catalogue")


@pytest.mark.parametrize(("raw", "why"), [
    (bytes(range(256)) * 4, "not HL7 text"),
    (b"PID|1||1990093012358\rPV1|1|I\r", "does not start with an MSH"),
    # MSH-1 says '#', the segments use '|'.
    (b"MSH#^~\\&#HIS#NORDHIS#LUX#LUX#20260302##ADT^A01#C-SEP#P#2.5\rPID|1||X\r",
     "field separator"),
    (b"MSH|^~|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C-ENC|P|2.5\r", "MSH-1/MSH-2"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A28^ADT_A05|C-A28|P|2.5\rPID|1\r",
     "A28"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ORU^R01|C-ORU|P|2.5\r", "ORU"),
    (b"MSH|^~\\&|HIS|NORDHIS|LUX|LUX|20260302||ADT^A01|C-V|P|2.7\r", "version"),
])
async def test_what_cannot_be_processed_is_rejected_ar(
    client: httpx.AsyncClient, hospitals: Hospitals, raw: bytes, why: str
) -> None:
    ack = await send(client, hospitals.a, raw)
    assert code(ack) == "AR" and why in reason(ack)
    msa = segment(ack, "MSA")
    control = raw.split(raw[3:4])[9].decode() if raw.startswith(b"MSH") and b"^~\\&" in raw \
        else ""
    assert msa[2] == control  # MSA-2 echoes MSH-10 when there is one
    logged = (await messages(client, hospitals.a))[0]
    assert logged["status"] == "rejected" and logged["ack"] == ack
    assert logged["raw"] is not None and logged["size"] == len(raw)


@pytest.mark.parametrize("separator", ["\n", "\r\n"])
async def test_lf_and_crlf_segment_separators(
    client: httpx.AsyncClient, hospitals: Hospitals, separator: str
) -> None:
    matricule = m.new_matricule()
    raw = m.admit("C1", matricule, "V1").decode().replace("\r", separator).encode()
    await accepted(client, hospitals.a, raw)
    assert (await stay(client, hospitals.a, matricule, "V1"))["unit"] == "MED"


async def test_text_plain_is_accepted_and_other_types_are_not(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    raw = m.admit("C1", m.new_matricule(), "V1")
    ack = await send(client, hospitals.a, raw, content_type="text/plain")
    assert code(ack) == "AA"
    for media in ("application/json", "application/xml", ""):
        response = await client.post("/api/v1/hl7/v2", content=raw, headers={
            **hospitals.a.auth(Role.integration), "content-type": media})
        assert response.status_code == 415, media


async def test_roles(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    raw = m.admit("C1", m.new_matricule(), "V1")
    for role, status in ((Role.clerk, 403), (Role.billing, 403)):
        response = await client.post("/api/v1/hl7/v2", content=raw, headers={
            **hospitals.a.auth(role), "content-type": ER7})
        assert response.status_code == status
    assert code(await send(client, hospitals.a, raw, role=Role.admin)) == "AA"
    anonymous = await client.post("/api/v1/hl7/v2", content=raw,
                                  headers={"content-type": ER7})
    assert anonymous.status_code == 401


async def test_a_message_of_10_mb_is_answered_ar_as_over_mllp(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """Over the API's body limit (64 KB in the tests) and what a message may be (1 MB): read
    to its end, answered AR echoing MSH-10, its beginning kept, its control id left free."""
    matricule = m.new_matricule()
    raw = (m.admit("BIGHTTP", matricule, "V1") + b"NTE|1||" + b"x" * (10 * 1024 * 1024)
           + b"\r")
    ack = await send(client, hospitals.a, raw)
    assert code(ack) == "AR" and f"over 1048576 bytes ({len(raw)})" in reason(ack)
    assert segment(ack, "MSA")[2] == "BIGHTTP"
    kept = await messages(client, hospitals.a, status="rejected")
    assert kept[0]["size"] == len(raw) and len(kept[0]["raw"]) <= 64 * 1024
    assert kept[0]["raw"].startswith("MSH|")
    again = await send(client, hospitals.a, m.admit("BIGHTTP", matricule, "V1"))
    assert code(again) == "AA"


async def test_a_slow_upload_holds_up_no_other_request(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The message is read before its transaction opens: while a sender trickles one in,
    another request writes at once (on SQLite an open transaction holds the only write
    lock; on PostgreSQL it holds a pooled connection idle)."""
    raw = m.admit("SLOW", m.new_matricule(), "V1")
    arrived = asyncio.Event()

    async def trickle():  # type: ignore[no-untyped-def]
        yield raw[:20]
        arrived.set()
        await asyncio.sleep(2.0)
        yield raw[20:]

    sending = asyncio.create_task(client.post("/api/v1/hl7/v2", content=trickle(), headers={
        **hospitals.a.auth(Role.integration), "content-type": ER7}))
    await asyncio.wait_for(arrived.wait(), 5)
    await asyncio.sleep(0.2)  # the endpoint is reading the body by now
    started = asyncio.get_running_loop().time()
    await create_patient(client, hospitals.b)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert not sending.done()
    ack = (await sending).text
    assert code(ack) == "AA"


async def test_a_body_over_the_hl7_limit_is_413(settings: Settings, hospitals: Hospitals) -> None:
    app = create_app(settings.model_copy(update={"max_hl7_body_bytes": 2 * 1024 * 1024}))
    async with LifespanManager(app) as manager, httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app),  # type: ignore[arg-type]
            base_url="http://testserver") as client:
        raw = m.admit("C1", m.new_matricule(), "V1") + b"NTE|1||" + b"x" * (3 * 1024 * 1024)
        response = await client.post("/api/v1/hl7/v2", content=raw, headers={
            **hospitals.a.auth(Role.integration), "content-type": ER7})
        assert response.status_code == 413
        assert response.json()["type"].endswith("payload-too-large")
        assert await messages(client, hospitals.a) == []
        # Just under it: a message again, answered AR.
        raw = m.admit("C2", m.new_matricule(), "V1") + b"NTE|1||" + b"x" * (1024 * 1024)
        assert code(await send(client, hospitals.a, raw)) == "AR"


async def test_values_the_library_could_not_take_are_refused_not_crashed(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    # Each was a 500 (or an AR "internal error" over MLLP), nothing kept.
    matricule = m.new_matricule()
    assert code(await send(client, hospitals.a, m.admit("ADM", matricule, "V1"))) == "AA"
    for n, (quantity, moment, field) in enumerate([
            ("inf", "20260302100000", "FT1-10"), ("1e400", "20260302100000", "FT1-10"),
            ("1", "99991231235959-1200", "FT1-4")]):
        dft = m.message(m.msh("DFT^P03", f"DFT{n}"), m.pid(matricule), m.pv1("V1"),
                        m.ft1("N101", moment, quantity=quantity))
        ack = await send(client, hospitals.a, dft)
        assert code(ack) == "AE" and field in reason(ack), ack
    nul = m.admit("N\\X00\\UL", m.new_matricule(), "V2")
    ack = await send(client, hospitals.a, nul)
    assert code(ack) == "AR" and "MSH-10: contains a control character" in reason(ack)
    assert "\x00" not in ack
    assert len(await messages(client, hospitals.a, status="error")) == 3


async def test_a_repeated_control_id_is_applied_once(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    raw = m.admit("DUP-1", matricule, "V1")
    first = await accepted(client, a, raw)
    again = await send(client, a, raw)
    assert again == first  # the same ACK, byte for byte
    # Sent again with the segments ended by LF and a new MSH-7: the same message.
    restamped = raw.replace(b"\r", b"\n").replace(b"|20260302080000||ADT",
                                                  b"|20260302090500||ADT")
    assert b"|20260302090500||ADT" in restamped and await send(client, a, restamped) == first
    assert len(await messages(client, a)) == 1
    # Another message under that control id: neither applied nor answered as if it had been
    # (the first ACK would say AA), but refused, and kept without the control id.
    reused = await send(client, a, m.admit("DUP-1", matricule, "V2"))
    assert code(reused) == "AE" and "MSH-10: control id DUP-1 was used by another message" \
        in reason(reused)
    found = await patient(client, a, matricule)
    assert [s["external_id"] for s in await stays_of(client, a, found["id"])] == ["V1"]
    logged = await messages(client, a)
    assert [(x["control_id"], x["status"]) for x in logged] == [(None, "error"),
                                                                ("DUP-1", "accepted")]
    assert b"V2" in logged[0]["raw"].encode()
    # Another sending facility has its own control ids.
    other = m.admit("DUP-1", matricule, "V3").replace(b"|NORDHIS|", b"|NORDLAB|")
    await accepted(client, a, other)


@pytest.mark.postgres
async def test_ten_concurrent_deliveries_apply_once(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    raw = m.admit("RACE-1", matricule, "V1")
    acks = await asyncio.gather(*(send(client, a, raw) for _ in range(10)))
    assert len(set(acks)) == 1 and code(acks[0]) == "AA"
    found = await patient(client, a, matricule)
    assert len(await stays_of(client, a, found["id"])) == 1
    assert len(await messages(client, a)) == 1
    # Ten concurrent deliveries of a refused message: one refusal, logged once.
    ghost = m.adt("A03", "RACE-2", matricule, "GHOST", "20260305110000")
    refusals = await asyncio.gather(*(send(client, a, ghost) for _ in range(10)))
    assert len(set(refusals)) == 1 and code(refusals[0]) == "AE"
    assert len(await messages(client, a, status="error")) == 1


async def test_concurrent_admissions_of_one_new_patient(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """Two visits of one new patient delivered at once: one patient, two stays."""
    a, matricule = hospitals.a, m.new_matricule()
    acks = await asyncio.gather(*(send(client, a, m.admit(f"P-{n}", matricule, f"V{n}"))
                                  for n in range(4)))
    assert [code(x) for x in acks] == ["AA"] * 4
    found = await patient(client, a, matricule)
    assert len(await stays_of(client, a, found["id"])) == 4


async def test_listing_is_per_hospital_and_raw_for_admins_only(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, b = hospitals.a, hospitals.b
    matricule = m.new_matricule()
    await accepted(client, a, m.admit("L1", matricule, "V1"))
    await refused(client, a, m.adt("A03", "L2", matricule, "NOPE", "20260305110000"))
    admin = await messages(client, a)
    assert [x["control_id"] for x in admin] == ["L2", "L1"]
    assert matricule in admin[1]["raw"]
    integration = await messages(client, a, role=Role.integration)
    assert all(x["raw"] is None for x in integration)
    assert matricule not in str(integration)
    assert [x["control_id"] for x in await messages(client, a, status="error")] == ["L2"]
    page = (await client.get("/api/v1/hl7/messages?limit=1",
                             headers=a.auth(Role.admin))).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = (await client.get(f"/api/v1/hl7/messages?limit=1&cursor={page['next_cursor']}",
                             headers=a.auth(Role.admin))).json()
    assert rest["items"][0]["control_id"] == "L1"
    for role in (Role.clerk, Role.billing):
        response = await client.get("/api/v1/hl7/messages", headers=a.auth(role))
        assert response.status_code == 403
    # The other hospital sees none of them, and cannot replay them.
    assert await messages(client, b) == []
    response = await client.post(f"/api/v1/hl7/messages/{admin[0]['id']}/replay",
                                 headers=b.auth(Role.admin))
    assert response.status_code == 404
    bad = await client.get("/api/v1/hl7/messages?status=nope", headers=a.auth(Role.admin))
    assert bad.status_code == 422


async def test_replay_applies_a_refused_message_once(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    charge = m.dft("R1", matricule, "V1", ("N101", "20260302100000"))
    await refused(client, a, charge)
    [message] = await messages(client, a)
    url = f"/api/v1/hl7/messages/{message['id']}/replay"
    # Still refused: the visit is unknown; the reason is kept, attempts counted.
    response = await client.post(url, headers=a.auth(Role.admin))
    assert response.status_code == 200
    body = response.json()
    assert body["applied"] is True and body["message"]["status"] == "error"
    assert body["message"]["attempts"] == 2
    # The missing admission arrives; the replay now applies the charge.
    await accepted(client, a, m.admit("R2", matricule, "V1"))
    body = (await client.post(url, headers=a.auth(Role.admin))).json()
    assert body["applied"] is True and body["message"]["status"] == "accepted"
    assert body["message"]["ack_code"] == "AA" and len(body["message"]["act_ids"]) == 1
    admitted = await stay(client, a, matricule, "V1")
    acts = (await client.get(f"/api/v1/stays/{admitted['id']}/acts",
                             headers=a.auth(Role.clerk))).json()["items"]
    assert len(acts) == 1
    # Replayed again, or delivered again: not applied twice.
    body = (await client.post(url, headers=a.auth(Role.admin))).json()
    assert body["applied"] is False and body["message"]["attempts"] == 3
    ack = await send(client, a, charge)
    assert code(ack) == "AA"
    assert len((await client.get(f"/api/v1/stays/{admitted['id']}/acts",
                                 headers=a.auth(Role.clerk))).json()["items"]) == 1
    assert (await client.post(url, headers=a.auth(Role.integration))).status_code == 403
    missing = await client.post(f"/api/v1/hl7/messages/{uuid.uuid4()}/replay",
                                headers=a.auth(Role.admin))
    assert missing.status_code == 404


async def test_the_matricule_never_reaches_the_logs(
    client: httpx.AsyncClient, hospitals: Hospitals, caplog: pytest.LogCaptureFixture
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    wrong = matricule[:-1] + str((int(matricule[-1]) + 1) % 10)
    # An escape sequence the library cannot decode: it would log the field, matricule and all.
    odd = m.message(m.msh("ADT^A08", "G4"), m.pid(
        matricule, address=f"{matricule} rue \\C2842\\ \\Zq\\^^Esch"), m.pv1("V1"))
    with caplog.at_level(logging.INFO):
        await accepted(client, a, m.admit("G1", matricule, "V1"))
        await refused(client, a, m.admit("G2", wrong, "V2"))
        await refused(client, a, m.dft("G3", matricule, "V1", ("N101", "x\\Xzz\\y")))
        await send(client, a, odd)
    assert caplog.records
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert matricule not in text and wrong not in text


async def test_purge_keeps_the_retention_period(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database,
    cli_env: dict[str, str]
) -> None:
    a = hospitals.a
    await accepted(client, a, m.admit("OLD", m.new_matricule(), "V1"))
    await accepted(client, a, m.admit("NEW", m.new_matricule(), "V2"))
    table = HL7Message.__table__  # type: ignore[attr-defined]
    with context.tenant_scope(a.id):
        async with owner_db.transaction() as session:
            await session.execute(update(table).where(
                table.c.tenant_id == a.id, table.c.control_id == "OLD")
                .values(received_at=utcnow() - timedelta(days=91)))
    # The command runs its own event loop: in a thread of its own, as from a shell.
    result = await asyncio.to_thread(invoke, cli_env, "hl7", "purge")
    assert result.exit_code == 0, result.output
    assert f"{a.slug}: 1 message(s) removed" in result.output
    assert [x["control_id"] for x in await messages(client, a)] == ["NEW"]
    result = await asyncio.to_thread(invoke, {**cli_env, "LUXFACT_HL7_RETENTION_DAYS": "1"},
                                     "hl7", "purge", "--days", "400")
    assert f"{a.slug}: 0 message(s) removed" in result.output


async def test_reading_the_raw_messages_is_audited(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """An administrator's list shows each message whole (names, matricules): recorded as a
    read of the patients it names. The integration key's list carries no raw message."""
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("AU1", matricule, "V1"))
    found = await patient(client, a, matricule)

    async def reads() -> list[dict]:
        events = (await client.get("/api/v1/audit-events", params={"action": "hl7.read"},
                                   headers=a.auth(Role.admin))).json()["items"]
        return [e for e in events if found["id"] in e["details"]["results"]]

    before = len(await reads())
    listed = await messages(client, a, limit="5")
    assert matricule in listed[0]["raw"]
    after = await reads()
    assert len(after) == before + 1 and after[0]["details"]["messages"] == len(listed)
    assert after[0]["actor"].startswith("key:")
    without_raw = await messages(client, a, Role.integration, limit="5")
    assert without_raw[0]["raw"] is None
    assert len(await reads()) == before + 1


async def test_a_replay_that_history_has_overtaken_asks_to_be_forced(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """A refused A03, then the visit admitted, discharged and the discharge cancelled: the
    old A03 replayed would discharge the stay again. A refused charge delivered again under
    another control id: replayed, it would be recorded twice. Both refused with the
    messages that came since, and applied only when forced."""
    a, matricule = hospitals.a, m.new_matricule()
    stale = m.adt("A03", "S1", matricule, "V1", "20260304110000", discharge="20260304110000")
    await refused(client, a, stale)
    charge = ("N101", "20260302100000")
    await refused(client, a, m.dft("S2", matricule, "V1", charge))
    old_discharge, old_charge = [x["id"] for x in await messages(client, a, limit="2")][::-1]
    await accepted(client, a, m.admit("S3", matricule, "V1"))
    await accepted(client, a, m.dft("S4", matricule, "V1", charge))  # the same, again
    await accepted(client, a, m.adt("A03", "S5", matricule, "V1", "20260305110000",
                                    discharge="20260305110000"))
    await accepted(client, a, m.adt("A13", "S6", matricule, "V1", "20260305120000"))
    admin = a.auth(Role.admin)
    for message_id, since in ((old_discharge, ["DFT^P03 S4", "ADT^A03 S5", "ADT^A13 S6"]),
                              (old_charge, ["DFT^P03 S4", "ADT^A03 S5", "ADT^A13 S6"])):
        refused_replay = await client.post(f"/api/v1/hl7/messages/{message_id}/replay",
                                           headers=admin)
        assert refused_replay.status_code == 409, refused_replay.text
        detail = refused_replay.json()["detail"]
        assert all(name in detail for name in since) and "S3" not in detail
        assert len(refused_replay.json()["applied_since"]) == 3
    current = await stay(client, a, matricule, "V1")
    assert current["state"] == "admitted"
    assert len((await client.get(f"/api/v1/stays/{current['id']}/acts",
                                 headers=a.auth(Role.clerk))).json()["items"]) == 1
    # Forced after checking: applied (here the charge, which the administrator wants twice).
    forced = await client.post(f"/api/v1/hl7/messages/{old_charge}/replay",
                               params={"force": "true"}, headers=admin)
    assert forced.status_code == 200 and forced.json()["message"]["status"] == "accepted"
    assert len((await client.get(f"/api/v1/stays/{current['id']}/acts",
                                 headers=a.auth(Role.clerk))).json()["items"]) == 2


def _a08(control: str, matricule: str, family: str) -> bytes:
    """A patient update naming no visit."""
    return m.message(m.msh("ADT^A08", control), m.evn("A08", "20260302090000"),
                     m.pid(matricule, family=family), m.pv1(""))


async def test_a_replay_older_than_the_patients_last_update_asks_to_be_forced(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """An A08 refused (the patient not registered yet), then the patient registered and
    updated again: the old A08 replayed would put the older name back. Refused, naming the
    later update (not the registration it was waiting for); applied only when forced."""
    a, matricule = hospitals.a, m.new_matricule()
    await refused(client, a, _a08("PU1", matricule, "Oldname"))
    [old] = await messages(client, a)
    await accepted(client, a, m.admit("PU2", matricule, "V1"))
    await accepted(client, a, _a08("PU3", matricule, "Newname"))
    url = f"/api/v1/hl7/messages/{old['id']}/replay"
    response = await client.post(url, headers=a.auth(Role.admin))
    assert response.status_code == 409, response.text
    assert "ADT^A08 PU3" in response.json()["detail"]
    assert "PU2" not in response.json()["detail"]
    assert (await patient(client, a, matricule))["family_name"] == "Newname"
    forced = await client.post(url, params={"force": "true"}, headers=a.auth(Role.admin))
    assert forced.status_code == 200 and forced.json()["message"]["status"] == "accepted"
    assert (await patient(client, a, matricule))["family_name"] == "Oldname"


def _registration(event: str, control: str, matricule: str, family: str,
                  visit: str) -> bytes:
    """An A01 (inpatient) or A04 (outpatient) of a visit, the patient named `family`."""
    at = "20260302080000" if event == "A01" else "20260303080000"
    return m.message(m.msh(f"ADT^{event}", control), m.evn(event, at),
                     m.pid(matricule, family=family),
                     m.pv1(visit, patient_class="I" if event == "A01" else "O", admit=at))


async def test_a_later_registration_of_the_patient_counts_but_the_awaited_one_does_not(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The A01 that registered the patient is what a refused A08 waited for; an A04 of the
    same patient for another visit, later, updated the name again: the replay would undo
    it. Refused, naming the A04 only."""
    a, matricule = hospitals.a, m.new_matricule()
    await refused(client, a, _a08("RG1", matricule, "Oldname"))
    [old] = await messages(client, a)
    await accepted(client, a, _registration("A01", "RG2", matricule, "Regname", "VR1"))
    await accepted(client, a, _registration("A04", "RG3", matricule, "Newname", "VR2"))
    response = await client.post(f"/api/v1/hl7/messages/{old['id']}/replay",
                                 headers=a.auth(Role.admin))
    assert response.status_code == 409, response.text
    assert "ADT^A04 RG3" in response.json()["detail"]
    assert "RG2" not in response.json()["detail"]
    assert (await patient(client, a, matricule))["family_name"] == "Newname"
    # Without the A04, the A01 alone is what it waited for: applied.
    b, other = hospitals.b, m.new_matricule()
    await refused(client, b, _a08("RG4", other, "Later"))
    [waiting] = await messages(client, b)
    await accepted(client, b, _registration("A01", "RG5", other, "First", "VR3"))
    replayed = await client.post(f"/api/v1/hl7/messages/{waiting['id']}/replay",
                                 headers=b.auth(Role.admin))
    assert replayed.status_code == 200, replayed.text
    assert (await patient(client, b, other))["family_name"] == "Later"


async def test_a_replays_answer_is_a_read_of_its_patients(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The replay's answer shows the raw message (names, matricules), whether it applied it
    again or found it applied already: each is a read of its patients, audited."""
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("RA1", matricule, "V1"))
    found = await patient(client, a, matricule)
    [message] = await messages(client, a)

    async def reads() -> int:
        events = (await client.get("/api/v1/audit-events", params={"action": "hl7.read"},
                                   headers=a.auth(Role.admin))).json()["items"]
        return sum(1 for e in events if e["object_id"] == message["id"]
                   and e["details"]["results"] == [found["id"]])

    before = await reads()
    answer = await client.post(f"/api/v1/hl7/messages/{message['id']}/replay",
                               headers=a.auth(Role.admin))
    assert answer.status_code == 200 and answer.json()["applied"] is False
    assert matricule in answer.json()["message"]["raw"]
    assert await reads() == before + 1

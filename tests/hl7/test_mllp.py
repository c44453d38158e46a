"""The MLLP listener over real sockets: in-process on a free port, and as `luxfact mllp`."""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import text

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.hl7.mllp import END, START, Listener, frame
from luxfact.kit import context
from luxfact.patients import service as patients
from luxfact.patients.matricule import complete
from luxfact.patients.merge import merge_patients
from luxfact.patients.schemas import PatientIn
from luxfact.settings import Settings
from luxfact.stays import service as stays
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import StayIn
from luxfact.tenancy.repository import TenantRepository
from tests.conftest import Hospital, Hospitals, make_hospital
from tests.hl7 import messages as m
from tests.hl7.helpers import (
    accepted,
    code,
    messages,
    patient,
    reason,
    segment,
    send,
    stay,
    stays_of,
)
from tests.live import alive, children, connections_of, free_port

pytestmark = pytest.mark.usefixtures("catalogue")


@pytest.fixture(scope="module")
async def app_db(settings: Settings) -> AsyncIterator[Database]:
    """The listener's database: the application role, as `luxfact mllp` connects."""
    db = Database(settings.effective_app_database_url, pool_size=12)
    yield db
    await db.dispose()


@asynccontextmanager
async def listening(db: Database, hospital: Hospital | None = None,
                    **options: float) -> AsyncIterator[int]:
    listener = Listener(db, tenant=(hospital.id, hospital.slug) if hospital else None,
                        **options)  # type: ignore[arg-type]
    server = await listener.start("127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        await listener.close()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def ack(self) -> str:
        async with asyncio.timeout(20):
            data = await self.reader.readuntil(END)
        assert data.startswith(START), data[:20]
        return data[1:-2].decode()

    async def send(self, raw: bytes) -> str:
        await self.write(frame(raw))
        return await self.ack()

    async def closed_within(self, seconds: float) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(), seconds) == b""
        except ConnectionResetError:
            return True  # closed with bytes of ours unread: the kernel resets, no FIN
        except TimeoutError:
            return False

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


async def test_messages_are_applied_and_acknowledged(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    async with listening(app_db, a) as port:
        conn = await Connection.open(port)
        ack = await conn.send(m.admit("M1", matricule, "V1"))
        assert segment(ack, "MSA")[:3] == ["MSA", "AA", "M1"]
        charge = m.dft("M2", matricule, "V1", ("N101", "20260302100000"))
        ack = await conn.send(charge)
        assert code(ack) == "AA"
        # The same message again: the same ACK, nothing applied twice.
        assert await conn.send(charge) == ack
        await conn.close()
    admitted = await stay(client, a, matricule, "V1")
    assert admitted["state"] == "admitted"
    acts = (await client.get(f"/api/v1/stays/{admitted['id']}/acts",
                             headers=a.auth("clerk"))).json()["items"]
    assert len(acts) == 1
    logged = await messages(client, a)
    assert [x["channel"] for x in logged] == ["mllp", "mllp"]
    # Logged with its outcome and what it touched, as the API's path logs it.
    dft_log = next(x for x in logged if x["control_id"] == "M2")
    assert (dft_log["status"], dft_log["ack_code"], dft_log["ack"]) == ("accepted", "AA", ack)
    assert dft_log["stay_ids"] == [admitted["id"]] and dft_log["act_ids"] == [acts[0]["id"]]
    # The audit trail names the sender.
    events = (await client.get(f"/api/v1/audit-events?object_id={admitted['id']}",
                               headers=a.auth("admin"))).json()["items"]
    assert {e["actor"] for e in events} == {"hl7:NORDHIS"}


async def test_refused_messages_over_mllp_leave_nothing_and_are_logged_once(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The listener applies a message before logging it; a refusal undoes that attempt and
    the message is logged refused, with the same ACK on every delivery."""
    a, matricule = hospitals.a, m.new_matricule()
    async with listening(app_db, a) as port:
        conn = await Connection.open(port)
        assert code(await conn.send(m.admit("R1", matricule, "V1"))) == "AA"
        # Two charges, the second unknown: the first is not kept either.
        bad = m.dft("R2", matricule, "V1", ("N101", "20260302100000"),
                    ("NOPE99", "20260302110000"))
        refusal = await conn.send(bad)
        assert code(refusal) == "AE" and "NOPE99" in reason(refusal)
        assert await conn.send(bad) == refusal  # the same ACK, logged once
        # The same visit admitted again under a new control id: refused, no second patient.
        again = await conn.send(m.admit("R3", matricule, "V1"))
        assert code(again) == "AE" and "exists already" in reason(again)
        await conn.close()
    admitted = await stay(client, a, matricule, "V1")
    assert (await client.get(f"/api/v1/stays/{admitted['id']}/acts",
                             headers=a.auth("clerk"))).json()["items"] == []
    errors = await messages(client, a, status="error")
    assert sorted(x["control_id"] for x in errors) == ["R2", "R3"]
    assert all(x["stay_ids"] == [] and x["act_ids"] == [] for x in errors)
    assert next(x for x in errors if x["control_id"] == "R2")["ack"] == refusal


async def test_concurrent_admissions_of_one_new_patient_over_mllp(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """Four visits of one new patient on four connections at once: on PostgreSQL all but
    one first attempt collide on the patient's matricule, and are applied again."""
    a, matricule = hospitals.a, m.new_matricule()

    async def deliver(n: int, port: int) -> str:
        conn = await Connection.open(port)
        try:
            return await conn.send(m.admit(f"NP-{n}", matricule, f"NP{n}"))
        finally:
            await conn.close()

    async with listening(app_db, a) as port:
        acks = await asyncio.gather(*(deliver(n, port) for n in range(4)))
    assert [code(x) for x in acks] == ["AA"] * 4
    found = await patient(client, a, matricule)
    assert sorted(s["external_id"] for s in await stays_of(client, a, found["id"])) == [
        "NP0", "NP1", "NP2", "NP3"]
    assert len(await messages(client, a, status="accepted")) == 4


async def test_many_connections_at_once(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a

    async def visit(n: int, port: int) -> list[str]:
        conn = await Connection.open(port)
        matricule = complete(f"19800101{n:03d}")
        acks = [await conn.send(m.admit(f"MC{n}-1", matricule, f"MC{n}")),
                await conn.send(m.dft(f"MC{n}-2", matricule, f"MC{n}",
                                      ("N101", "20260302100000"))),
                await conn.send(m.adt("A03", f"MC{n}-3", matricule, f"MC{n}",
                                      "20260305110000"))]
        await conn.close()
        return [code(x) for x in acks]

    async with listening(app_db, a) as port:
        results = await asyncio.gather(*(visit(n, port) for n in range(24)))
    assert results == [["AA", "AA", "AA"]] * 24
    assert len(await messages(client, a, limit="200")) == 72


async def test_bytes_outside_a_frame_are_kept_unanswered_and_the_connection_goes_on(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """Bytes outside a frame are no message: kept in the log, not answered (a sender waiting
    for one ACK per message would take an answer to them for its next message's, and stay
    one behind for the rest of the connection)."""
    a, matricule = hospitals.a, m.new_matricule()
    async with listening(app_db, a) as port:
        conn = await Connection.open(port)
        # Garbage, then a good frame, in one write: the first ACK is the frame's.
        await conn.write(b"GET / HTTP/1.1\r\n\r\n" + frame(m.admit("G1", matricule, "V1")))
        first = await conn.ack()
        assert code(first) == "AA" and segment(first, "MSA")[2] == "G1"
        # A stray byte between frames: each ACK still answers its own message.
        await conn.write(b"\x00")
        assert segment(await conn.send(m.adt("A08", "G0", matricule, "V1", "20260305100000")),
                       "MSA")[1:3] == ["AA", "G0"]
        # Binary garbage inside a frame.
        garbage = await conn.send(bytes(range(1, 11)) * 50)
        assert code(garbage) == "AR"
        # A frame restarted before its end: the broken part is answered, the next applied.
        await conn.write(START + b"MSH|^~\\&|HIS|NORD" + frame(m.adt(
            "A03", "G2", matricule, "V1", "20260305110000")))
        assert code(await conn.ack()) == "AR"
        assert code(await conn.ack()) == "AA"
        # Whitespace between frames is no garbage.
        await conn.write(b"\r\n")
        assert code(await conn.send(m.adt("A13", "G3", matricule, "V1",
                                          "20260305120000"))) == "AA"
        await conn.close()
    listed = await messages(client, a)
    statuses = [x["status"] for x in listed]
    assert statuses.count("rejected") == 4 and statuses.count("accepted") == 4
    outside = [x for x in listed if "outside an MLLP frame" in x["reason"]]
    assert len(outside) == 2 and outside[-1]["raw"].startswith("GET / HTTP/1.1")


async def test_a_start_block_without_end_is_closed_after_the_idle_timeout(
    app_db: Database, hospitals: Hospitals
) -> None:
    async with listening(app_db, hospitals.a, idle_timeout=1.0) as port:
        stuck = await Connection.open(port)
        idle = await Connection.open(port)
        busy = await Connection.open(port)
        started = time.monotonic()
        await stuck.write(START + m.admit("S1", m.new_matricule(), "V1")[:40])

        async def keep_busy() -> list[str]:
            # A connection that keeps talking is not disturbed by the others' timeouts.
            acks = []
            for n in range(10):
                acks.append(code(await busy.send(m.admit(f"S2-{n}", m.new_matricule(),
                                                         f"V2-{n}"))))
                await asyncio.sleep(0.2)
            return acks

        # The unfinished message is answered (its sender may be waiting), then closed.
        answered = asyncio.wait_for(stuck.reader.read(), 5)
        closed = asyncio.gather(answered, idle.closed_within(5))
        assert await keep_busy() == ["AA"] * 10
        last_words, idle_closed = await closed
        last = _unframed(last_words)
        assert idle_closed and code(last) == "AR"
        assert "its end block (0x1C 0x0D) never came" in reason(last)
        assert time.monotonic() - started >= 0.9
        await busy.close()


async def test_unfinished_messages_are_kept_and_a_trickle_is_cut_off(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """A message that never ends is kept in the log (its sender heard nothing: the log says
    why): ended by 0x1C alone, cut by the connection's close, or sent so slowly that no
    message is whole within twice the idle timeout, though bytes keep coming."""
    a = hospitals.a
    async with listening(app_db, a, idle_timeout=1.0) as port:
        lone = await Connection.open(port)
        await lone.write(START + m.admit("U1", m.new_matricule(), "V1") + b"\x1c")
        ack = await asyncio.wait_for(lone.reader.read(), 5)
        assert "a 0x1C came without the 0x0D" in reason(_unframed(ack))
        cut = await Connection.open(port)
        await cut.write(START + m.admit("U2", m.new_matricule(), "V2")[:60])
        await cut.close()
        trickle = await Connection.open(port)
        started = time.monotonic()
        body = START + m.admit("U3", m.new_matricule(), "V3")


        async def trickling() -> None:  # a byte every 0.15 s: never idle, never whole
            for n in range(len(body)):
                await trickle.write(body[n:n + 1])
                await asyncio.sleep(0.15)

        writing = asyncio.create_task(trickling())
        answer = await asyncio.wait_for(trickle.reader.read(), 10)  # to the close
        writing.cancel()
        with suppress(asyncio.CancelledError, ConnectionError):
            await writing
        assert time.monotonic() - started < 8.0  # 2 s, with room for a busy machine
        assert "never came (no message was whole within 2 s)" in reason(_unframed(answer))
        await trickle.close()
    reasons = [x["reason"] for x in await messages(client, a, status="rejected")]
    assert sum("a 0x1C came without the 0x0D" in r for r in reasons) == 1
    assert sum("(the connection was closed)" in r for r in reasons) == 1
    assert sum("never came (no message was whole within 2 s)" in r for r in reasons) == 1


@pytest.mark.parametrize("filler", [b" ", START])
async def test_bytes_that_make_no_message_keep_no_connection_open(
    app_db: Database, hospitals: Hospitals, filler: bytes
) -> None:
    """A blank or a start block every half second is never silence, and never a message:
    the connection is closed within twice the idle timeout, its place free for a sender
    with messages (one place here)."""
    async with listening(app_db, hospitals.a, idle_timeout=1.0, max_connections=1) as port:
        squatter = await Connection.open(port)
        started = time.monotonic()

        async def squatting() -> None:
            while True:
                await squatter.write(filler)
                await asyncio.sleep(0.5)

        filling = asyncio.create_task(squatting())
        try:
            assert await squatter.closed_within(10)
        finally:
            filling.cancel()
            with suppress(asyncio.CancelledError, ConnectionError):
                await filling
        # Twice the idle timeout (bytes kept coming: never idle), with room for a busy
        # machine; without the rule it stays open for ever.
        assert 1.9 <= time.monotonic() - started < 8.0
        await squatter.close()
        await asyncio.sleep(0.1)  # its task ends: the place is free
        sender = await Connection.open(port)
        assert code(await sender.send(m.admit("SQ1", m.new_matricule(), "V1"))) == "AA"
        await sender.close()


def _unframed(data: bytes) -> str:
    assert data.startswith(START) and data.endswith(END), data
    return data[1:-2].decode()


async def test_connections_beyond_the_limit_are_closed_at_once(
    app_db: Database, hospitals: Hospitals
) -> None:
    listener = Listener(app_db, tenant=(hospitals.a.id, hospitals.a.slug), max_connections=2)
    server = await listener.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        first, second = await Connection.open(port), await Connection.open(port)
        assert code(await first.send(m.admit("MC1", m.new_matricule(), "V1"))) == "AA"
        third = await Connection.open(port)
        assert await third.closed_within(2)
        assert code(await second.send(m.admit("MC2", m.new_matricule(), "V2"))) == "AA"
        await first.close()
        await asyncio.sleep(0.1)  # its task ends: a place is free again
        fourth = await Connection.open(port)
        assert code(await fourth.send(m.admit("MC3", m.new_matricule(), "V3"))) == "AA"
        for conn in (second, third, fourth):
            await conn.close()
    finally:
        await listener.close()


async def test_a_message_of_10_mb_is_refused_and_nothing_else_closes(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    huge = m.admit("BIG", matricule, "V1") + b"NTE|1||" + b"x" * (10 * 1024 * 1024) + b"\r"
    async with listening(app_db, a) as port:
        bystander = await Connection.open(port)
        conn = await Connection.open(port)
        ack = await conn.send(huge)
        assert code(ack) == "AR" and "over 1048576 bytes" in reason(ack)
        assert segment(ack, "MSA")[2] == "BIG"  # the header is still read for the ACK
        assert code(await bystander.send(m.admit("B1", m.new_matricule(), "V2"))) == "AA"
        # Its control id stays free: the message delivered again, at its normal size.
        assert code(await conn.send(m.admit("BIG", matricule, "V1"))) == "AA"
        await conn.close()
        await bystander.close()
    rejected = await messages(client, a, status="rejected")
    assert rejected[0]["size"] == len(huge) and len(rejected[0]["raw"]) <= 64 * 1024


async def test_a_message_of_too_many_pieces_is_refused_before_it_is_read(
    app_db: Database, hospitals: Hospitals
) -> None:
    # 50,000 short segments under the size limit took the library 3 s to read, the listener
    # serving no one else meanwhile: refused unread, in a few milliseconds.
    filler = b"".join(b"ZXX|%d|A^B~C&D\r" % n for n in range(50_000))
    large = m.admit("LARGE", m.new_matricule(), "V1") + filler
    assert len(large) < 1024 * 1024
    async with listening(app_db, hospitals.a) as port:
        conn = await Connection.open(port)
        started = time.monotonic()
        ack = await conn.send(large)
        assert time.monotonic() - started < 1.0
        assert code(ack) == "AR" and "more than the 20000 a message may have" in reason(ack)
        assert segment(ack, "MSA")[2] == "LARGE"
        assert code(await conn.send(m.admit("SMALL", m.new_matricule(), "V2"))) == "AA"
        await conn.close()


async def test_start_blocks_one_after_another_are_neither_answered_nor_kept(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    before = len(await messages(client, hospitals.a, status="rejected", limit="200"))
    async with listening(app_db, hospitals.a) as port:
        conn = await Connection.open(port)
        started = time.monotonic()
        await conn.write(START * 1_000_000 + frame(m.admit("AFTER", m.new_matricule(), "V1")))
        ack = await conn.ack()  # the first answer is the message's: none for the blocks
        assert time.monotonic() - started < 5  # a run skipped at once (was over 20 s)
        assert code(ack) == "AA" and segment(ack, "MSA")[2] == "AFTER"
        await conn.close()
    assert len(await messages(client, hospitals.a, status="rejected", limit="200")) == before


async def test_a_peer_that_does_not_read_its_acks_is_dropped(
    app_db: Database, hospitals: Hospitals
) -> None:
    listener = Listener(app_db, tenant=(hospitals.a.id, hospitals.a.slug), idle_timeout=1.0)
    server = await listener.start("127.0.0.1", 0)
    # Small buffers on both sides (an accepted socket inherits the listening one's), so that
    # a few hundred unread ACKs fill them.
    server.sockets[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    peer = socket.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    peer.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(peer, server.sockets[0].getsockname())
        _reader, writer = await asyncio.open_connection(sock=peer)
        refused = frame(m.message(m.msh("ADT^A99", "X"), m.pid("1990093012358")))
        writer.write(refused * 3000)  # each answered AR; none of the answers read

        await asyncio.sleep(0.5)  # accepted, and answering
        serving = [t for t in asyncio.all_tasks()
                   if getattr(t.get_coro(), "__name__", "") == "_connection"]
        assert len(serving) == 1
        # Dropped once its ACKs stay unread for the idle timeout, not waiting forever.
        _done, pending = await asyncio.wait(serving, timeout=30)
        assert not pending
        writer.transport.abort()
    finally:
        await listener.close(grace=1)


async def test_a_header_field_refused_is_answered_and_kept_under_its_hospital(
    app_db: Database, client: httpx.AsyncClient, owner_db: Database
) -> None:
    facility = f"HIS{uuid.uuid4().hex[:8].upper()}"
    hospital = await make_hospital(owner_db, "h", integration={"hl7_facilities": [facility]})
    long_id = "C" * 150
    raw = m.admit(long_id, m.new_matricule(), "V1").replace(b"|NORDHIS|", f"|{facility}|".encode())
    async with listening(app_db) as port:
        conn = await Connection.open(port)
        ack = await conn.send(raw)
        await conn.close()
    assert code(ack) == "AR" and segment(ack, "MSA")[2] == "C" * 100
    assert "MSH-10: longer than 100 characters" in reason(ack) and "MSH-4" not in reason(ack)
    kept = await messages(client, hospital, status="rejected")
    assert [k["control_id"] for k in kept] == [None]  # the id is not held: it was not read


async def test_the_hospital_is_found_by_sending_facility(
    app_db: Database, client: httpx.AsyncClient, owner_db: Database
) -> None:
    facility = f"HIS{uuid.uuid4().hex[:8].upper()}"
    hospital = await make_hospital(owner_db, "f", integration={"hl7_facilities": [facility]})
    matricule = m.new_matricule()
    raw = m.admit("F1", matricule, "V1").replace(b"|NORDHIS|", f"|{facility}|".encode())
    async with listening(app_db) as port:
        conn = await Connection.open(port)
        assert code(await conn.send(raw)) == "AA"
        unknown = await conn.send(m.admit("F2", matricule, "V2").replace(
            b"|NORDHIS|", b"|NOBODY|"))
        assert code(unknown) == "AR" and "NOBODY" in reason(unknown)
        assert code(await conn.send(b"not HL7 at all")) == "AR"
        await conn.close()
    assert (await stay(client, hospital, matricule, "V1"))["state"] == "admitted"


async def test_a_facility_two_hospitals_claim_goes_to_neither(
    app_db: Database, client: httpx.AsyncClient, owner_db: Database
) -> None:
    """Stored before `tenants sync` refused it: the listener picks no hospital at random."""
    facility = f"HIS{uuid.uuid4().hex[:8].upper()}"
    first = await make_hospital(owner_db, "g", integration={"hl7_facilities": [facility]})
    second = await make_hospital(owner_db, "h")
    async with owner_db.transaction() as session:  # as an older version let it be stored
        tenant = await TenantRepository(session).by_slug(second.slug)
        assert tenant is not None
        tenant.config = {**tenant.config, "integration": {"hl7_facilities": [facility]}}
        session.add(tenant)
    matricule = m.new_matricule()
    raw = m.admit("G1", matricule, "V1").replace(b"|NORDHIS|", f"|{facility}|".encode())
    async with listening(app_db) as port:
        conn = await Connection.open(port)
        ack = await conn.send(raw)
        await conn.close()
    assert code(ack) == "AR" and facility in reason(ack)
    for hospital in (first, second):
        assert await messages(client, hospital) == []


@pytest.mark.postgres
async def test_ten_concurrent_deliveries_over_mllp_apply_once(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    raw = m.admit("RACE", matricule, "V1")

    async def deliver(port: int) -> str:
        conn = await Connection.open(port)
        try:
            return await conn.send(raw)
        finally:
            await conn.close()

    async with listening(app_db, a) as port:
        acks = await asyncio.gather(*(deliver(port) for _ in range(10)))
        assert len(set(acks)) == 1 and code(acks[0]) == "AA"
        assert len(await messages(client, a)) == 1
        # Ten concurrent deliveries of a refused message: one refusal, logged once.
        raw = m.adt("A03", "RACE-2", matricule, "GHOST", "20260305110000")
        refusals = await asyncio.gather(*(deliver(port) for _ in range(10)))
    assert len(set(refusals)) == 1 and code(refusals[0]) == "AE"
    assert len(await messages(client, a, status="error")) == 1


@pytest.mark.postgres
async def test_a_deadlock_of_the_first_attempt_is_applied_again(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The listener's first attempt holds its locks to the end: here it waits on another
    transaction's visit number while that one waits on the new patient's matricule.
    PostgreSQL rolls the first waiter back (the attempt); the message is applied again, AA,
    once the other transaction is gone."""
    a, matricule = hospitals.a, m.new_matricule()
    holding, go, blocked = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def other_transaction() -> None:
        with context.tenant_scope(a.id, actor="test"), suppress(RuntimeError):
            async with app_db.transaction() as session:
                owner = await patients.create_patient(session, a.id, PatientIn(
                    matricule=m.new_matricule(), family_name="Other", given_name="One",
                    birth_date=date(1980, 1, 1), sex="M"))
                await stays.create_stay(session, a.id, StayIn(
                    patient_id=owner.id, kind="inpatient", external_id="VDL",
                    admitted_at=datetime(2026, 3, 1, 8, tzinfo=UTC)), owner)
                holding.set()
                await go.wait()
                # The message's patient: waits on the attempt, which waits on "VDL".
                blocked.set()
                await patients.create_patient(session, a.id, PatientIn(
                    matricule=matricule, family_name="Same", given_name="Number",
                    birth_date=date(1980, 1, 1), sex="F"))
                raise RuntimeError("rolled back: the visit number and matricule freed")

    other = asyncio.create_task(other_transaction())
    await holding.wait()
    async with listening(app_db, a) as port:
        conn = await Connection.open(port)
        sent = asyncio.create_task(conn.send(m.admit("DL-1", matricule, "VDL")))
        await _until_one_waits_on_a_lock(app_db)  # the attempt, on "VDL"
        assert not sent.done()
        go.set()
        await blocked.wait()
        await other
        ack = await sent
        await conn.close()
    assert code(ack) == "AA", ack
    found = await patient(client, a, matricule)
    assert [s["external_id"] for s in await stays_of(client, a, found["id"])] == ["VDL"]
    assert [x["control_id"] for x in await messages(client, a)] == ["DL-1"]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["transfer", "charge"])
async def test_a_message_waiting_on_a_merge_of_its_patient_is_applied_after_it(
    app_db: Database, client: httpx.AsyncClient, hospitals: Hospitals, kind: str
) -> None:
    """A movement or a charge finds its stay by visit number and locks it in one statement.
    Waiting for that lock on a merge that re-points the stay to the surviving patient, it
    finds the stay on the survivor once the merge commits (the patient's row it had joined,
    the old one, no longer matches the stay: the stay would look missing)."""
    a, survivor = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("MG-1", None, "VMG"))  # registered without a matricule
    await accepted(client, a, m.admit("MG-2", survivor, "VMG-2"))
    survivor_id = uuid.UUID((await patient(client, a, survivor))["id"])
    with context.tenant_scope(a.id, actor="test"):
        async with app_db.transaction() as session:
            found = await StayRepository(session, a.id).by_external_id("VMG")
            assert found is not None
            duplicate_id = found.patient_id
    holding, go = asyncio.Event(), asyncio.Event()

    async def merging() -> None:
        with context.tenant_scope(a.id, actor="test"):
            async with app_db.transaction() as session:
                await merge_patients(session, a.id, survivor_id, duplicate_id)
                holding.set()
                await go.wait()

    merge = asyncio.create_task(merging())
    await asyncio.wait([merge, asyncio.create_task(holding.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if merge.done():
        merge.result()  # its error, if it failed before holding its locks
    # The sender knows of the merge: PID-3 names the survivor.
    raw = m.adt("A02", "MG-3", survivor, "VMG", "20260303090000", location="CHIR^12^B") \
        if kind == "transfer" else m.dft("MG-3", survivor, "VMG", ("N101", "20260302100000"))
    sent = asyncio.create_task(send(client, a, raw))
    await _until_one_waits_on_a_lock(app_db)
    assert not sent.done()
    go.set()
    await merge
    ack = await sent
    assert code(ack) == "AA", ack
    moved = await stay(client, a, survivor, "VMG")
    if kind == "transfer":
        assert moved["unit"] == "CHIR"
        assert [x["type"] for x in moved["movements"]] == ["admit", "transfer"]
    else:
        acts = await client.get(f"/api/v1/stays/{moved['id']}/acts",
                                headers=a.auth(Role.clerk))
        assert [x["code"] for x in acts.json()["items"]] == ["N101"]


async def _until_one_waits_on_a_lock(db: Database) -> None:
    for _ in range(200):
        async with db.transaction() as session:
            waiting = (await session.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"))).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nothing waits on a lock")


async def _wait_for_port(port: int, process: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if process.returncode is not None:
            assert process.stderr is not None
            raise RuntimeError(f"luxfact mllp exited: {await process.stderr.read()!r}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise RuntimeError("luxfact mllp did not listen")


async def _command(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "luxfact.cli.main", "mllp", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def test_the_luxfact_mllp_command(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str]
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    port = free_port()
    process = await _command(cli_env, "--port", str(port), "--tenant", a.slug,
                             "--idle-timeout", "2")
    try:
        await _wait_for_port(port, process)
        conn = await Connection.open(port)
        assert code(await conn.send(m.admit("P1", matricule, "V1"))) == "AA"
        assert code(await conn.send(b"\x00\x01garbage")) == "AR"
        await conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            returncode = await process.wait()
    assert returncode == 0
    assert (await stay(client, a, matricule, "V1"))["state"] == "admitted"
    unknown = await _command(cli_env, "--port", str(free_port()), "--tenant",
                             "no-such-hospital")
    async with asyncio.timeout(60):
        _, stderr = await unknown.communicate()
    assert unknown.returncode == 1 and b"no tenant" in stderr


async def test_workers_hold_their_port_against_another_listener(
    client: httpx.AsyncClient, hospitals: Hospitals, cli_env: dict[str, str]
) -> None:
    """The supervisor claims the port and listens alone: a second listener with workers on
    the port, here for another hospital, is refused, and so is a worker started by hand.
    Connections opened at once are shared evenly between the workers. Workers whose
    supervisor is killed outright stop, and the port is free again."""
    a, b, port = hospitals.a, hospitals.b, free_port()
    first = await _command(cli_env, "--port", str(port), "--tenant", a.slug, "--workers", "2")
    started = [first]
    try:
        await _wait_for_port(port, first)

        async def refused(*options: str) -> bytes:
            """The error of a listener on the port for hospital B, which must not start."""
            process = await _command(cli_env, "--port", str(port), "--tenant", b.slug,
                                     *options)
            started.append(process)
            async with asyncio.timeout(60):
                _, stderr = await process.communicate()
            assert process.returncode == 1, stderr
            return stderr

        assert b"claimed by another luxfact server" in await refused("--workers", "2")
        # A worker started by hand, with a descriptor that is no supervisor's hand-off.
        assert b"not the hand-off socket" in await refused(
            "--handoff-fd", "0", "--supervisor", str(os.getpid()))
        matricules = [m.new_matricule() for _ in range(12)]
        for n, matricule in enumerate(matricules[:4]):  # one after the other
            conn = await Connection.open(port)
            assert code(await conn.send(m.admit(f"W{n}", matricule, f"VW{n}"))) == "AA"
            await conn.close()
        # Eight open at once (an HL7 sender keeps its connections): four for each worker.
        conns = [await Connection.open(port) for _ in range(8)]
        for n, conn in enumerate(conns, 4):
            ack = await conn.send(m.admit(f"W{n}", matricules[n], f"VW{n}"))
            assert code(ack) == "AA"
        workers = children(first.pid)
        assert len(workers) == 2
        assert [connections_of(pid, port) for pid in workers] == [4, 4]
        for conn in conns:
            await conn.close()
        assert len(await messages(client, a, limit="50")) == 12
        assert await messages(client, b) == []
        first.kill()  # SIGKILL: the supervisor passes nothing on
        await first.wait()
        for _ in range(100):
            if not any(alive(pid) for pid in workers):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the workers outlived their supervisor")
        # The claim ended with the last worker: the port can be had again.
        again = await _command(cli_env, "--port", str(port), "--tenant", a.slug,
                               "--workers", "2")
        try:
            await _wait_for_port(port, again)
        finally:
            again.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await again.wait() == 0
    finally:
        for process in started:  # none left behind, whatever failed
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await process.wait()


def test_a_signal_while_a_worker_starts_still_reaches_it(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM arriving while the supervisor starts its first worker (inside Popen, before
    the worker is in its list) is passed on once all are started: the supervisor does not
    wait for a worker that was never told to stop."""
    from luxfact.cli import mllp as command

    real = subprocess.Popen

    def popen(_argv: list[str], **options: object) -> subprocess.Popen[bytes]:
        worker = real([sys.executable, "-c", "import time; time.sleep(30)"],
                      **options)  # type: ignore[call-overload]
        os.kill(os.getpid(), signal.SIGTERM)  # handled before Popen returns
        return worker

    monkeypatch.setattr(command.subprocess, "Popen", popen)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    started = time.monotonic()
    try:
        code = command._supervise(2, "127.0.0.1", free_port(), [])
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
    assert time.monotonic() - started < 10
    assert code == 0  # stopped as asked


async def test_an_unreachable_database_is_answered_ar(hospitals: Hospitals) -> None:
    down = Database("sqlite+aiosqlite:////nonexistent/luxfact/down.db")
    try:
        async with listening(down, hospitals.a) as port:
            conn = await Connection.open(port)
            ack = await conn.send(m.admit("D1", m.new_matricule(), "V1"))
            assert code(ack) == "AR" and "database is not reachable" in reason(ack)
            assert segment(ack, "MSA")[2] == "D1"
            await conn.close()
    finally:
        await down.dispose()

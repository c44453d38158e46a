"""The database going away while the service works: 503s, nothing half-written, recovery.

A real `luxfact serve` process reaches PostgreSQL through a relay (tests/resilience/proxy.py)
that plays the database's restart as the application sees it: every connection cut at once,
new ones refused, then refused with "the database system is starting up", then served
again. The machine's PostgreSQL server itself is never restarted.

What is checked afterwards is read with direct SQL as the superuser, on this run's database.
"""

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from luxfact.auth.roles import Role
from luxfact.settings import Settings
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospitals
from tests.live import live_server
from tests.resilience.journeys import Journey, Load
from tests.resilience.proxy import PostgresProxy

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("catalogue")]

PROBLEM = "application/problem+json"
# Longer than any request takes here, shorter than the test: a request that reaches it hung.
REQUEST_TIMEOUT = 15
CLIENTS = 6
# After the database is back, every request started this much later must succeed.
RECOVERY = 2.0


@pytest.fixture(scope="module")
def proxy(settings: Settings) -> Iterator[PostgresProxy]:
    target = make_url(settings.effective_app_database_url)
    relay = PostgresProxy(target.host or "127.0.0.1", target.port or 5432)
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def server(settings: Settings, proxy: PostgresProxy) -> Iterator[str]:
    """A `luxfact serve` whose application connections go through the relay (the owner's,
    used only by the start-up check of migrations, too: it is the same URL)."""
    through = make_url(settings.effective_app_database_url).set(host="127.0.0.1",
                                                                 port=proxy.port)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUXFACT_APP_DATABASE_URL", through.render_as_string(hide_password=False))
        with live_server(settings) as (url, _pid):
            assert proxy.relayed > 0, "the server did not connect through the relay"
            yield url


@asynccontextmanager
async def superuser(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    dsn = make_url(settings.database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(dsn.render_as_string(hide_password=False))
    try:
        yield connection
    finally:
        await connection.close()


def assert_unavailable(status: int, content_type: str, retry_after: str | None,
                       problem: object) -> None:
    """A 503 as the service promises it: problem details, and when to retry."""
    assert status == 503, problem
    assert content_type == PROBLEM
    assert retry_after is not None and retry_after.isdigit()
    assert isinstance(problem, dict) and problem["status"] == 503
    assert "nothing was changed" in problem["detail"]


async def backend_waiting_for_the_counter(admin: asyncpg.Connection, role: str) -> int:
    """The application's backend blocked on the invoice counter: inside its transaction,
    after the stay, its acts and its state were written, before the invoices."""
    async with asyncio.timeout(10):
        while True:
            pid = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND usename = $1 AND wait_event_type = 'Lock' "
                "AND query LIKE '%number_counters%'", role)
            if pid is not None:
                return int(pid)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("loss", ["terminated", "cut"])
async def test_a_connection_lost_inside_a_write_transaction_answers_503_and_writes_nothing(
    loss: str, server: str, proxy: PostgresProxy, hospitals: Hospitals, settings: Settings
) -> None:
    """`terminated`: the backend killed by the server (pg_terminate_backend, what a
    shutdown does to every backend); `cut`: the connection broken on the way."""
    hospital = hospitals.a
    async with httpx.AsyncClient(base_url=server, timeout=REQUEST_TIMEOUT) as http, \
            superuser(settings) as admin, superuser(settings) as holder:
        first, second = [await stay_with_acts(http, hospital) for _ in range(2)]
        assert (await bill(http, hospital, first)).status_code == 201  # numbers 1 and 2
        path = f"/api/v1/stays/{second['id']}/invoices"
        headers = {**hospital.auth(Role.billing), "Idempotency-Key": uuid.uuid4().hex}

        # The counter row held by another transaction stops the issue of `second` midway.
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT last FROM number_counters WHERE tenant_id = $1 "
                             "AND series = 'invoice' FOR UPDATE", hospital.id)
        issuing = asyncio.create_task(http.post(path, json={"kind": "final"}, headers=headers))
        backend = await backend_waiting_for_the_counter(admin, settings.app_role)
        if loss == "terminated":
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
        else:
            assert proxy.cut() >= 1
            proxy.forward()
        response = await asyncio.wait_for(issuing, REQUEST_TIMEOUT)
        assert_unavailable(response.status_code, response.headers["content-type"],
                           response.headers.get("retry-after"), response.json())

        # Nothing of the request is in the database: no invoice, the stay and its acts as
        # they were, no stored answer for its key, no audit event.
        assert await admin.fetchval(
            "SELECT count(*) FROM invoices WHERE tenant_id = $1 AND stay_id = $2",
            hospital.id, uuid.UUID(second["id"])) == 0
        assert await admin.fetchval("SELECT state FROM stays WHERE id = $1",
                                    uuid.UUID(second["id"])) == "discharged"
        assert {r["state"] for r in await admin.fetch(
            "SELECT state FROM acts WHERE stay_id = $1", uuid.UUID(second["id"]))} == {"recorded"}
        assert await admin.fetchval(
            "SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
            hospital.id, headers["Idempotency-Key"]) == 0
        await lock.rollback()

        # The same request again, with its key: issued once, numbered right after `first`.
        retried = await http.post(path, json={"kind": "final"}, headers=headers)
        assert retried.status_code == 201, retried.text
        replayed = await http.post(path, json={"kind": "final"}, headers=headers)
        assert replayed.headers.get("idempotent-replayed") == "true"
        assert replayed.json() == retried.json()
        seqs = [r["seq"] for r in await admin.fetch(
            "SELECT seq FROM invoices WHERE tenant_id = $1 ORDER BY seq", hospital.id)]
        assert seqs == [1, 2, 3, 4]
        assert await admin.fetchval(
            "SELECT count(*) FROM audit_events WHERE tenant_id = $1 "
            "AND action = 'invoice.issue'", hospital.id) == 4


async def test_a_database_restart_under_load_gives_503s_then_recovers_and_half_applies_nothing(
    server: str, proxy: PostgresProxy, hospitals: Hospitals, settings: Settings
) -> None:
    limits = httpx.Limits(max_connections=CLIENTS * 2)
    async with httpx.AsyncClient(base_url=server, timeout=REQUEST_TIMEOUT,
                                 limits=limits) as http, superuser(settings) as holder:
        load = Load(http, hospitals.a)
        stop = asyncio.Event()
        # One request sure to be inside its transaction at the cut, whatever the timing of
        # the load's: an invoice of the other hospital, held on its counter row by a
        # transaction of ours (the load's own requests may all be between statements then).
        b = hospitals.b
        first, second = [await stay_with_acts(http, b) for _ in range(2)]
        assert (await bill(http, b, first)).status_code == 201
        lock = holder.transaction()
        await lock.start()
        await holder.execute("SELECT last FROM number_counters WHERE tenant_id = $1 "
                             "AND series = 'invoice' FOR UPDATE", b.id)
        pinned_at = time.monotonic()
        pinned = asyncio.create_task(bill(http, b, second))

        async def client() -> list[Journey]:
            done = []
            while not stop.is_set():
                done.append(await load.journey())
            return done

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await asyncio.sleep(1.0)
        await blocked_by(holder)
        down_at = time.monotonic()
        cut = proxy.cut()
        await lock.rollback()
        held = await asyncio.wait_for(pinned, REQUEST_TIMEOUT)
        held_ended = time.monotonic()
        await asyncio.sleep(1.5)
        proxy.starting_up()
        starting_at = time.monotonic()
        await asyncio.sleep(1.0)
        proxy.forward()
        back_at = time.monotonic()
        await asyncio.sleep(RECOVERY + 1.5)
        stop.set()
        # Each client ends its journey; a request that hangs fails here (or at its timeout).
        async with asyncio.timeout(REQUEST_TIMEOUT * 2):
            journeys = [j for done in await asyncio.gather(*clients) for j in done]

    answers = load.answers
    assert cut >= 1, "no connection was open at the cut"
    assert not [a for a in answers if a.error], "a request hung or broke"
    statuses = Counter(a.status for a in answers)
    assert set(statuses) <= {200, 201, 503}, statuses
    unavailable = [a for a in answers if a.status == 503]
    for answer in unavailable:
        assert_unavailable(answer.status, answer.content_type, answer.retry_after,
                           answer.problem)
    # The cut caught the request in flight inside its transaction; requests sent while
    # connections were refused, and while the server said it was starting up, were answered
    # 503 too.
    assert pinned_at < down_at < held_ended
    assert_unavailable(held.status_code, held.headers["content-type"],
                       held.headers.get("retry-after"), held.json())
    assert any(down_at + 0.5 < a.started < starting_at for a in unavailable), statuses
    assert any(starting_at + 0.2 < a.started < back_at for a in unavailable), statuses
    assert sum(j.retried for j in journeys) > 0
    # Recovery without restarting the server: within RECOVERY, every request succeeds again.
    late = [a for a in answers if a.started > back_at + RECOVERY]
    assert late and all(a.status in (200, 201) for a in late), Counter(a.status for a in late)
    first_success = min(a.ended for a in answers if a.started > back_at and a.status < 300)
    assert first_success - back_at < RECOVERY

    async with superuser(settings) as admin:
        await assert_whole(admin, hospitals.a.id, journeys)


async def blocked_by(holder: asyncpg.Connection) -> None:
    """Until a backend waits on a lock the holder's transaction has."""
    holder_pid = holder.get_server_pid()
    async with asyncio.timeout(10):
        while True:
            if await holder.fetchval("SELECT count(*) FROM pg_stat_activity "
                                     "WHERE $1 = ANY(pg_blocking_pids(pid))", holder_pid):
                return
            await asyncio.sleep(0.02)


async def assert_whole(admin: asyncpg.Connection, tenant: uuid.UUID,
                       journeys: list[Journey]) -> None:
    """Every acknowledged write is in the database whole, and nothing else is: a write
    answered 503 and retried with its key exists once."""

    async def ids(sql: str) -> list[str]:
        return [str(r[0]) for r in await admin.fetch(sql, tenant)]

    assert sorted(await ids("SELECT id FROM patients WHERE tenant_id = $1")) == sorted(
        j.patient["id"] for j in journeys)
    # Each patient with the audit event of its creation, written in the same transaction.
    assert Counter(await ids("SELECT object_id FROM audit_events WHERE tenant_id = $1 "
                             "AND action = 'patient.create'")) == Counter(
        j.patient["id"] for j in journeys)
    assert Counter(await ids("SELECT patient_id FROM coverages WHERE tenant_id = $1")) == Counter(
        j.patient["id"] for j in journeys)
    stays = {str(r["id"]): r["state"] for r in await admin.fetch(
        "SELECT id, state FROM stays WHERE tenant_id = $1", tenant)}
    assert stays == {j.stay["id"]: "closed" for j in journeys}
    movements: dict[str, list[str]] = {}
    for row in await admin.fetch("SELECT stay_id, type FROM movements WHERE tenant_id = $1 "
                                 "ORDER BY seq", tenant):
        movements.setdefault(str(row["stay_id"]), []).append(row["type"])
    assert movements == {j.stay["id"]: ["admit", "discharge"] for j in journeys}
    acts = {str(r["id"]): r["state"] for r in await admin.fetch(
        "SELECT id, state FROM acts WHERE tenant_id = $1", tenant)}
    assert acts == {a["id"]: "invoiced" for j in journeys for a in j.acts}

    # Each acknowledged invoice whole: its number, its total, all its lines.
    lines: dict[str, list[int]] = {}
    for row in await admin.fetch("SELECT invoice_id, seq FROM invoice_lines "
                                 "WHERE tenant_id = $1 ORDER BY seq", tenant):
        lines.setdefault(str(row["invoice_id"]), []).append(row["seq"])
    stored = {str(r["id"]): (r["number"], r["total_cents"], lines.get(str(r["id"]), []))
              for r in await admin.fetch(
                  "SELECT id, number, total_cents FROM invoices WHERE tenant_id = $1", tenant)}
    acknowledged = {i["id"]: (i["number"], int(Decimal(i["total"]) * 100),
                              [line["seq"] for line in i["lines"]])
                    for j in journeys for i in j.invoices}
    assert stored == acknowledged
    assert all(seqs == list(range(1, len(seqs) + 1)) and seqs for _, _, seqs in stored.values())
    # Numbers without gap, the counter where the last number left it.
    seqs = [r["seq"] for r in await admin.fetch(
        "SELECT seq FROM invoices WHERE tenant_id = $1 ORDER BY seq", tenant)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert await admin.fetchval("SELECT last FROM number_counters WHERE tenant_id = $1 "
                                "AND series = 'invoice'", tenant) == len(seqs)
    assert Counter(await ids("SELECT object_id FROM audit_events WHERE tenant_id = $1 "
                             "AND action = 'invoice.issue'")) == Counter(list(acknowledged))
    # One stored answer per key: each write, retried or not, was applied exactly once.
    keys = [r["key"] for r in await admin.fetch(
        "SELECT key FROM idempotency_keys WHERE tenant_id = $1", tenant)]
    assert sorted(keys) == sorted(k for j in journeys for k in j.keys)

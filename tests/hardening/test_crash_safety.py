"""A server killed (SIGKILL) while issuing invoices and while freezing a claim batch: after a
restart, no number is missing, no stay is half billed, no batch is half frozen, and the
work can simply be done again.

PostgreSQL only: what is proven is that each unit of work is one transaction, which the
database rolls back when the process holding it disappears.
"""

import asyncio
import json
import os
import signal

import httpx
import pytest
from sqlalchemy import text

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.jobs import handlers  # noqa: F401 (registers webhook.deliver)
from luxfact.jobs.worker import Worker
from luxfact.settings import Settings
from tests.billing.test_invoices import stay_with_acts
from tests.claims.test_batches import PERIOD
from tests.conftest import BACKEND, Hospital, Hospitals
from tests.live import live_server
from tests.webhooks.receiver import Receiver
from tests.webhooks.test_webhooks import drain, subscribe

pytestmark = [pytest.mark.usefixtures("catalogue"),
              pytest.mark.skipif(BACKEND != "postgres", reason="a killed process's "
                                 "transactions rolled back: PostgreSQL")]


async def numbers(db: Database, tenant_id: object) -> dict[str, list[int]]:
    """The sequence numbers issued, per series (invoice, credit note) and year."""
    async with db.transaction() as session:
        rows = (await session.execute(text(
            "SELECT doc_type, year, seq FROM invoices WHERE tenant_id = :t ORDER BY seq"),
            {"t": tenant_id})).all()
    found: dict[str, list[int]] = {}
    for doc_type, year, seq in rows:
        found.setdefault(f"{doc_type}-{year}", []).append(seq)
    return found


async def billed_parts(db: Database, tenant_id: object) -> dict[str, set[str]]:
    async with db.transaction() as session:
        rows = (await session.execute(text(
            "SELECT stay_id, kind FROM invoices WHERE tenant_id = :t AND doc_type = 'invoice'"),
            {"t": tenant_id})).all()
    parts: dict[str, set[str]] = {}
    for stay_id, kind in rows:
        parts.setdefault(str(stay_id), set()).add(kind)
    return parts


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def test_killed_while_issuing_then_restarted(client: httpx.AsyncClient,
                                                  hospitals: Hospitals, owner_db: Database,
                                                  settings: Settings) -> None:
    hospital = hospitals.a
    receiver = await Receiver().start()
    try:
        await _killed_while_issuing(client, hospital, owner_db, settings, receiver)
    finally:
        await receiver.stop()


async def _killed_while_issuing(client: httpx.AsyncClient, hospital: Hospital,
                                owner_db: Database, settings: Settings,
                                receiver: Receiver) -> None:
    await subscribe(client, hospital, receiver.url, ["invoice.issued"])
    stays = [await stay_with_acts(client, hospital) for _ in range(40)]
    headers = hospital.auth(Role.billing)
    with live_server(settings) as (url, pid):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            async def issue(stay: dict) -> int:
                try:
                    response = await http.post(f"/api/v1/stays/{stay['id']}/invoices",
                                               json={"kind": "final"}, headers=headers)
                    return response.status_code
                except httpx.HTTPError:
                    return 0  # the server died under it

            tasks = [asyncio.create_task(issue(stay)) for stay in stays]
            # Let some issue, then kill the server in the middle of the rest.
            five_done = asyncio.Event()
            for task in tasks:
                task.add_done_callback(lambda _: five_done.set() if sum(
                    t.done() for t in tasks) >= 5 else None)
            await five_done.wait()
            kill(pid)
            results = await asyncio.gather(*tasks)
    assert 0 in results, "the server was killed too late to test anything"
    # Every stay is billed whole (insurer and patient parts) or not at all, and the
    # numbers that exist have no gap.
    parts = await billed_parts(owner_db, hospital.id)
    assert all(kinds == {"insurer", "patient"} for kinds in parts.values()), parts
    for series, seqs in (await numbers(owner_db, hospital.id)).items():
        assert seqs == list(range(1, len(seqs) + 1)), series
    # Restarted, the rest is issued; still no gap, every stay billed once.
    with live_server(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for stay in stays:
                if str(stay["id"]) not in parts:
                    response = await http.post(f"/api/v1/stays/{stay['id']}/invoices",
                                               json={"kind": "final"}, headers=headers)
                    assert response.status_code == 201, response.text
    parts = await billed_parts(owner_db, hospital.id)
    assert len(parts) == len(stays)
    assert all(kinds == {"insurer", "patient"} for kinds in parts.values())
    for series, seqs in (await numbers(owner_db, hospital.id)).items():
        assert seqs == list(range(1, len(seqs) + 1)), series
    # The jobs resume: the events queued by issues committed before the kill and after the
    # restart are delivered, each invoice's once; a rolled-back issue queued none.
    app_db = Database(settings.effective_app_database_url, pool_size=4)
    try:
        await drain(Worker(app_db, tenants=[hospital.id]))
    finally:
        await app_db.dispose()
    events = [json.loads(r.body) for r in receiver.requests]
    delivered = sorted(e["data"]["invoice_id"] for e in events)
    async with owner_db.transaction() as session:
        issued = sorted(str(i) for i in (await session.execute(text(
            "SELECT id FROM invoices WHERE tenant_id = :t"), {"t": hospital.id})).scalars())
    assert delivered == issued
    assert len({e["id"] for e in events}) == len(events)


async def test_killed_while_freezing_then_restarted(client: httpx.AsyncClient,
                                                   hospitals: Hospitals, owner_db: Database,
                                                   settings: Settings) -> None:
    hospital = hospitals.a
    headers = hospital.auth(Role.billing)
    for _ in range(60):
        stay = await stay_with_acts(client, hospital)
        assert (await client.post(f"/api/v1/stays/{stay['id']}/invoices",
                                  json={"kind": "final"}, headers=headers)).status_code == 201
    batch = (await client.post("/api/v1/claim-batches", json={"payer": "CNS",
                                                                "period": PERIOD},
                               headers=headers)).json()
    url_of = f"/api/v1/claim-batches/{batch['id']}"

    async def stored_chunks() -> int:
        async with owner_db.transaction() as session:
            return (await session.execute(text(
                "SELECT count(*) FROM claim_file_chunks WHERE batch_id = :b"),
                {"b": batch["id"]})).scalar_one()

    with live_server(settings) as (url, pid):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            freezing = asyncio.create_task(http.post(f"{url_of}/freeze", headers=headers))
            # Killed while the freeze's transaction is open (it takes its lock first).
            for _ in range(500):
                async with owner_db.transaction() as session:
                    busy = (await session.execute(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in "
                        "transaction' OR (state = 'active' AND query ILIKE '%claim%' AND "
                        "pid <> pg_backend_pid())"))).scalar_one()
                if busy:
                    break
                await asyncio.sleep(0.005)
            kill(pid)
            with pytest.raises(httpx.HTTPError):
                await freezing
    after = (await client.get(url_of, headers=headers)).json()
    assert after["state"] in ("open", "validated") and after["sha256"] is None
    assert await stored_chunks() == 0  # no half file
    # Restarted: freezing again works, and the file is whole.
    with live_server(settings) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            frozen = await http.post(f"{url_of}/freeze", headers=headers)
            assert frozen.status_code == 200, frozen.text
            file = await http.get(f"{url_of}/file", headers=headers)
    assert frozen.json()["state"] == "frozen" and file.content.endswith(
        b"</decompteFacturation>")
    assert await stored_chunks() >= 1

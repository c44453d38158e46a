"""On PostgreSQL: numbers under concurrency, and issued invoices immutable in the database."""

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from luxfact.auth.roles import Role
from luxfact.billing.service import today as billing_today
from luxfact.db.engine import Database
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospitals

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("catalogue")]


async def test_fifty_concurrent_issues_leave_no_gap_and_no_duplicate(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stays = [await stay_with_acts(client, hospitals.a) for _ in range(50)]
    # Half of them through a dry run first, as a billing officer would: it must draw nothing.
    for stay in stays[::2]:
        assert (await bill(client, hospitals.a, stay, dry_run=True)).status_code == 200
    answers = await asyncio.gather(*(bill(client, hospitals.a, stay) for stay in stays))
    assert {a.status_code for a in answers} == {201}
    numbers = [i["number"] for a in answers for i in a.json()["invoices"]]
    year = billing_today().year
    assert sorted(numbers) == [f"T-{year}-{n:06}" for n in range(1, 101)]


async def test_the_database_refuses_changes_to_an_issued_invoice(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    stay = await stay_with_acts(client, hospitals.a)
    invoice = (await bill(client, hospitals.a, stay)).json()["invoices"][1]
    refused = [
        "UPDATE invoices SET total_cents = total_cents + 1 WHERE id = :id",
        "UPDATE invoices SET number = 'X-1' WHERE id = :id",
        "UPDATE invoices SET payer = 'nobody' WHERE id = :id",
        "DELETE FROM invoices WHERE id = :id",
        "UPDATE invoice_lines SET amount_cents = 0 WHERE invoice_id = :id",
        "DELETE FROM invoice_lines WHERE invoice_id = :id",
    ]
    for statement in refused:
        with pytest.raises(IntegrityError, match=r"immutable|cannot be deleted|not allowed"):
            async with owner_db.transaction() as session:
                # The owner bypasses nothing: the trigger applies to whoever asks.
                await session.execute(text("SELECT set_config('app.tenant_id', :t, true)"),
                                      {"t": str(hospitals.a.id)})
                await session.execute(text(statement), {"id": invoice["id"]})
    # What is owed may move (payments, credit notes): that is how the service records them.
    async with owner_db.transaction() as session:
        await session.execute(text("SELECT set_config('app.tenant_id', :t, true)"),
                              {"t": str(hospitals.a.id)})
        changed = await session.execute(text(
            "UPDATE invoices SET paid_cents = paid_cents WHERE id = :id"), {"id": invoice["id"]})
        assert changed.rowcount == 1
    again = await client.get(f"/api/v1/invoices/{invoice['id']}",
                             headers=hospitals.a.auth(Role.billing))
    assert again.json()["total"] == invoice["total"]
    assert again.json()["number"] == invoice["number"]

"""What the privacy tests share: a patient with a billed stay, the command line, back-dating
as the superuser, and a scan of every tenant-owned table for what names a patient."""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import httpx
from sqlalchemy import Executable, select, text, update
from typer.testing import CliRunner

from luxfact.auth.roles import Role
from luxfact.cli.main import app
from luxfact.db.engine import Database
from luxfact.db.models import metadata, tenant_owned_tables
from luxfact.kit import context
from tests import suite_logs
from tests.billing.test_invoices import bill
from tests.conftest import Hospital
from tests.hl7.helpers import send
from tests.hl7.messages import dft, new_id
from tests.patients.test_api import new_matricule, patient_body
from tests.stays.test_api import act, admit, move

DISCHARGED = "2026-03-05T11:00:00+01:00"
runner = CliRunner()


async def cli(env: dict[str, str], *args: str, answer: str | None = None):  # type: ignore[no-untyped-def]
    """`luxfact ...` in-process, in a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env, input=answer)


@dataclass
class Person:
    patient: dict
    stay: dict
    invoices: list[dict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.patient["id"])

    def needles(self) -> list[str]:
        """What names this person in a row: ids, matricule, family name."""
        return [n for n in (self.id, self.stay["id"], self.patient["matricule"],
                            self.patient["family_name"], *(i["id"] for i in self.invoices),
                            *self.stay.get("act_ids", [])) if n]


async def patient_with_stay(client: httpx.AsyncClient, hospital: Hospital, *,
                            bill_it: bool = True, discharge: bool = True,
                            **identity: object) -> Person:
    """A patient (created with an Idempotency-Key, so a stored response names it), a 3-day
    stay with acts, billed, its patient invoice rendered and partly paid, and one HL7
    message naming the matricule."""
    family = f"Priv{uuid.uuid4().hex[:8]}"
    body = patient_body(**{"family_name": family, "matricule": new_matricule("19750412"),
                           "birth_date": "1975-04-12", **identity})
    created = await client.post("/api/v1/patients", json=body, headers={
        **hospital.auth(Role.clerk), "Idempotency-Key": str(uuid.uuid4())})
    assert created.status_code == 201, created.text
    patient = created.json()
    # Erased by some tests before the log scan reads the patients: it must still look.
    suite_logs.remember(patient["family_name"], patient["given_name"], patient["matricule"])
    stay = await admit(client, hospital, patient=patient)
    acts = []
    for payload in ({"code": "V1", "performer": "12345678"}, {"code": "N101"}):
        response = await act(client, hospital, stay, **payload)
        assert response.status_code == 201, response.text
        acts.append(response.json()["id"])
    stay["act_ids"] = acts
    # A charge for a visit nobody knows: refused, yet its bytes name the patient.
    await send(client, hospital, dft(new_id(), patient["matricule"], "NOVISIT",
                                     ("N101", "20260302100000")))
    person = Person(patient, stay)
    if discharge:
        assert (await move(client, hospital, stay, type="discharge",
                           at=DISCHARGED)).status_code == 201
    if not bill_it:
        return person
    issued = await bill(client, hospital, stay)
    assert issued.status_code == 201, issued.text
    person.invoices = issued.json()["invoices"]
    own = person.invoices[-1]
    pdf = await client.get(f"/api/v1/invoices/{own['id']}/pdf",
                           headers=hospital.auth(Role.billing))
    assert pdf.status_code == 200
    paid = await client.post(f"/api/v1/invoices/{own['id']}/payments", json={
        "amount": "10.00", "paid_on": own["issued_on"], "method": "transfer"},
        headers=hospital.auth(Role.billing))
    assert paid.status_code == 201, paid.text
    return person


async def as_superuser(db: Database, tenant_id: uuid.UUID, *statements: Executable) -> None:
    """Statements the API cannot make (back-dating issued invoices): on PostgreSQL with the
    triggers off for this transaction only (replica role, superuser only)."""
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            if db.dialect == "postgresql":
                await session.execute(text("SET LOCAL session_replication_role = replica"))
            for statement in statements:
                await session.execute(statement)


async def backdate(db: Database, tenant_id: uuid.UUID, person: Person, year: int,
                   payments_in: int | None = None) -> None:
    """Move the patient's stay, invoices and payments to `year`, as if all of it were that
    old (`payments_in`: the payments to another year, received long after the invoice)."""
    invoices, stays = metadata.tables["invoices"], metadata.tables["stays"]
    payments = metadata.tables["payments"]
    patient = uuid.UUID(person.id)
    await as_superuser(
        db, tenant_id,
        update(payments).where(
            payments.c.tenant_id == tenant_id,
            payments.c.invoice_id.in_(select(invoices.c.id).where(
                invoices.c.tenant_id == tenant_id, invoices.c.patient_id == patient)))
        .values(paid_on=date(payments_in or year, 4, 30)),
        update(invoices).where(invoices.c.tenant_id == tenant_id,
                               invoices.c.patient_id == patient)
        .values(issued_on=date(year, 3, 31), issued_at=datetime(year, 3, 31, 10, tzinfo=UTC)),
        update(stays).where(stays.c.tenant_id == tenant_id, stays.c.patient_id == patient)
        .values(admitted_at=datetime(year, 3, 1, 9, tzinfo=UTC)),
        update(stays).where(stays.c.tenant_id == tenant_id, stays.c.patient_id == patient,
                            stays.c.discharged_at.is_not(None))
        .values(discharged_at=datetime(year, 3, 5, 10, tzinfo=UTC)),
    )


async def table_rows(db: Database, tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """Every tenant-owned table's rows of one hospital, each as text (binary as Latin-1)."""
    out: dict[str, list[str]] = {}
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            for name in tenant_owned_tables():
                table = metadata.tables[name]
                rows = (await session.execute(
                    select(table).where(table.c.tenant_id == tenant_id))).all()
                # Sorted: without ORDER BY, PostgreSQL may return the same rows in
                # another order from one query to the next.
                out[name] = sorted(" ".join(v.decode("latin-1") if isinstance(v, bytes)
                                            else repr(v) for v in row) for row in rows)
    return out


def naming(rows: dict[str, list[str]], needles: list[str]) -> dict[str, int]:
    """Per table, how many rows contain any of the needles."""
    found = {name: sum(1 for row in table if any(n in row for n in needles))
             for name, table in rows.items()}
    return {name: n for name, n in found.items() if n}

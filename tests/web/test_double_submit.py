"""Two copies of the same desk form sent at the same instant (a double click, a retry racing
the first try): one record, and both answers send the user where it is.

The copies share the form's `idem` key. Both requests are in flight together (asyncio.gather
through the ASGI client): on PostgreSQL their transactions really overlap, both may pass the
guard's look-up before either has stored its key, and the loser must roll back whole."""

import asyncio
import re
import uuid
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.patients.models import Patient
from luxfact.stays.models import Act
from tests.conftest import Hospital, Hospitals
from tests.web.desk import csrf_of, signed_in
from tests.web.test_clerk import UUID, admit, create_patient, idem_of, matricule, patient_form

pytestmark = pytest.mark.usefixtures("catalogue")

ROUNDS = 10


async def count(db: Database, hospital: Hospital, model: type, **where: object) -> int:
    with context.tenant_scope(hospital.id, actor="test"):
        async with db.transaction() as session:
            query = select(func.count()).select_from(model).where(
                model.tenant_id == hospital.id,  # type: ignore[attr-defined]
                *(getattr(model, name) == value for name, value in where.items()))
            return int((await session.execute(query)).scalar_one())


async def twice_at_once(client: httpx.AsyncClient, url: str,
                        data: dict[str, str]) -> tuple[httpx.Response, httpx.Response]:
    first, second = await asyncio.gather(client.post(url, data=data),
                                         client.post(url, data=data))
    return first, second


def same_place(first: httpx.Response, second: httpx.Response, pattern: str) -> str:
    """Both copies answered 303 to the one record's page (never a 409, a 500 or JSON)."""
    for response in (first, second):
        assert response.status_code == 303, (response.status_code, response.text[:500])
    assert first.headers["location"] == second.headers["location"]
    assert re.fullmatch(pattern, first.headers["location"]), first.headers["location"]
    return first.headers["location"]


@pytest.mark.parametrize("identity", ["matricule", "no_matricule"])
async def test_the_same_patient_form_sent_twice_at_once_makes_one_patient(
        app: object, owner_db: Database, hospitals: Hospitals, identity: str) -> None:
    # With a matricule the table's unique constraint is a second line of defence; without
    # one (a foreigner, a newborn) the form's key is the only thing that stops a twin.
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        for round_ in range(ROUNDS):
            family = f"Twin{uuid.uuid4().hex[:8]}"
            # A birth date per round: the matricules of two rounds never meet by chance.
            born = date(1980, 1, 1) + timedelta(days=round_)
            fields = ({"matricule": matricule(born.strftime("%Y%m%d"))}
                      if identity == "matricule"
                      else {"matricule": "", "no_matricule_reason": "foreign"})
            page = await clerk.get("/desk/patients/new")
            data = {"csrf": csrf_of(page), "idem": idem_of(page),
                    **patient_form(family_name=family, birth_date=born.isoformat(), **fields)}
            first, second = await twice_at_once(clerk, "/desk/patients/new", data)
            url = same_place(first, second, rf"/desk/patients/{UUID}")
            assert await count(owner_db, hospitals.a, Patient, family_name=family) == 1
            shown = await clerk.get(url)
            assert shown.status_code == 200 and family in shown.text


async def test_the_same_act_form_sent_twice_at_once_records_one_act(
        app: object, owner_db: Database, hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        stay_url = await admit(clerk, await create_patient(clerk))
        stay_id = uuid.UUID(stay_url.rsplit("/", 1)[1])
        seen: set[str] = set()
        for round_ in range(1, ROUNDS + 1):
            page = await clerk.get(f"{stay_url}/acts/new")
            data = {"csrf": csrf_of(page), "idem": idem_of(page), "code": "N101",
                    "performed_at": "2026-03-02T10:00", "quantity": "1"}
            first, second = await twice_at_once(clerk, f"{stay_url}/acts/new", data)
            location = same_place(first, second, rf"{stay_url}#act-{UUID}")
            assert location not in seen  # a new act each round, not the last one again
            seen.add(location)
            assert await count(owner_db, hospitals.a, Act, stay_id=stay_id) == round_
        shown = await clerk.get(stay_url)
        assert len(re.findall(rf'<tr id="act-{UUID}"', shown.text)) == ROUNDS


async def test_two_different_forms_for_one_matricule_at_once_leave_one_refused(
        app: object, owner_db: Database, hospitals: Hospitals) -> None:
    """Not a double submit: two forms (two keys) for the same matricule at the same instant.
    One creates the patient; the other is refused (409), never sent to the first's patient
    as though it had been saved."""
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        for round_ in range(ROUNDS):
            born = date(1990, 1, 1) + timedelta(days=round_)
            number = matricule(born.strftime("%Y%m%d"))
            forms = []
            for _ in range(2):
                page = await clerk.get("/desk/patients/new")
                forms.append({"csrf": csrf_of(page), "idem": idem_of(page),
                              **patient_form(matricule=number, birth_date=born.isoformat())})
            answers = await asyncio.gather(*(clerk.post("/desk/patients/new", data=form)
                                             for form in forms))
            assert sorted(answer.status_code for answer in answers) == [303, 409], [
                (answer.status_code, answer.text[:300]) for answer in answers]
            refused = next(answer for answer in answers if answer.status_code == 409)
            assert "location" not in refused.headers
            assert await count(owner_db, hospitals.a, Patient, matricule=number) == 1

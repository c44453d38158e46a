"""The admission desk's pages over HTTP: search, patients, coverages, stays, movements, acts,
and what every page owes (escaping, hospitals apart, form tokens, a session expiring)."""

import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select, update

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.patients.matricule import complete
from luxfact.patients.models import Patient
from luxfact.stays.models import Act
from luxfact.web import clerk_stays
from tests.conftest import Hospital, Hospitals
from tests.identities import new_matricule as matricule
from tests.web.desk import browser, csrf_of, log_in, make_user, signed_in

pytestmark = pytest.mark.usefixtures("catalogue")

IDEM = re.compile(r'name="idem" value="([^"]+)"')
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def idem_of(page: httpx.Response) -> str:
    found = IDEM.search(page.text)
    assert found, "the form has no idempotency key"
    return found.group(1)


def patient_form(**fields: str) -> dict[str, str]:
    return {"matricule": matricule(), "family_name": "Muller", "given_name": "Anne",
            "birth_date": "1980-01-01", "sex": "F", "language": "fr", "country": "LU",
            **fields}


async def create_patient(client: httpx.AsyncClient, **fields: str) -> str:
    """A patient created through the desk's form; its page's URL."""
    page = await client.get("/desk/patients/new")
    done = await client.post("/desk/patients/new", data={
        "csrf": csrf_of(page), "idem": idem_of(page), **patient_form(**fields)})
    assert done.status_code == 303, done.text
    assert re.fullmatch(rf"/desk/patients/{UUID}", done.headers["location"])
    return done.headers["location"]


async def add_coverage(client: httpx.AsyncClient, patient_url: str, **fields: str) -> None:
    page = await client.get(f"{patient_url}/coverages/new")
    done = await client.post(f"{patient_url}/coverages/new", data={
        "csrf": csrf_of(page), "idem": idem_of(page), "kind": "statutory", "payer": "CNS",
        "member_number": "M-1", "valid_from": "2020-01-01", **fields})
    assert done.status_code == 303, done.text


async def admit(client: httpx.AsyncClient, patient_url: str, **fields: str) -> str:
    """A stay opened from the patient's page; the stay page's URL."""
    page = await client.get(patient_url)
    done = await client.post(f"{patient_url}/stays/new", data={
        "csrf": csrf_of(page), "idem": idem_of(page), "kind": "inpatient",
        "admitted_at": "2026-03-02T08:00", "unit": "MED2", "room": "204", "bed": "A",
        "room_class": "second", **fields})
    assert done.status_code == 303, done.text
    assert re.fullmatch(rf"/desk/stays/{UUID}", done.headers["location"])
    return done.headers["location"]


async def post_form(client: httpx.AsyncClient, url: str, **fields: str) -> httpx.Response:
    """Open a form's page and send it with its token and key."""
    page = await client.get(url)
    assert page.status_code == 200, page.text
    found = IDEM.search(page.text)
    data = {"csrf": csrf_of(page), **({"idem": found.group(1)} if found else {}), **fields}
    return await client.post(url, data=data)


def error_of(page: httpx.Response, field: str) -> str:
    found = re.search(rf'<span id="e-(?:[a-z]+-)?{field}" class="error" role="alert">'
                      r"([^<]*(?:<span[^>]*>[^<]*</span>)?)</span>", page.text)
    assert found, f"no error element for {field}"
    return found.group(1)


def act_ids(page: httpx.Response) -> list[str]:
    return re.findall(rf'<tr id="act-({UUID})"', page.text)


async def count_patients(db: Database, hospital: Hospital, **where: str) -> int:
    with context.tenant_scope(hospital.id, actor="test"):
        async with db.transaction() as session:
            query = select(func.count()).select_from(Patient).where(
                Patient.tenant_id == hospital.id,  # type: ignore[arg-type]
                *(getattr(Patient, k) == v for k, v in where.items()))
            return int((await session.execute(query)).scalar_one())


# --- search -------------------------------------------------------------------------------------

async def test_search_as_you_type(app: object, owner_db: Database,
                                  hospitals: Hospitals) -> None:
    number = matricule("19750314")
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        url = await create_patient(clerk, family_name="Müller", given_name="Jeanne",
                                   birth_date="1975-03-14", matricule=number)
        await create_patient(clerk, family_name="Schmit", given_name="Paul")
        page = await clerk.get("/desk/patients")
        assert page.status_code == 200
        assert 'data-shortcut="search"' in page.text and 'data-shortcut="n"' in page.text
        assert 'hx-get="/desk/patients/search"' in page.text
        assert 'hx-trigger="input changed delay:150ms, search"' in page.text
        assert 'hx-target="#results"' in page.text
        for typed in ("Muller", "muller", "MÜLLER", "Mulller", "jeanne mul", number,
                      "14.03.1975", "1975-03-14", "19750314 muller"):
            partial = await clerk.get("/desk/patients/search", params={"q": typed})
            assert partial.status_code == 200
            assert "<html" not in partial.text  # a fragment, for htmx
            assert f'<a href="{url}">' in partial.text and "Müller" in partial.text, typed
            assert "Schmit" not in partial.text
        none = await clerk.get("/desk/patients/search", params={"q": "Zzyzx"})
        assert "Aucun patient" in none.text and "<a href=\"/desk/patients/" not in \
            none.text.replace('href="/desk/patients/new"', "")
        # Without JavaScript, the search box's form gives the same results in the page.
        full = await clerk.get("/desk/patients", params={"q": "Muller"})
        assert "<html" in full.text and f'<a href="{url}">' in full.text
    async with signed_in(app, owner_db, hospitals.b, Role.clerk) as other:
        partial = await other.get("/desk/patients/search", params={"q": "Muller"})
        assert url not in partial.text


async def test_search_pages_through_results(app: object, owner_db: Database,
                                            hospitals: Hospitals,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from luxfact.web import clerk_patients
    monkeypatch.setattr(clerk_patients, "SEARCH_PAGE", 2)
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        urls = {await create_patient(clerk, family_name="Weber", given_name=name)
                for name in ("Anna", "Bert", "Carl")}
        first = await clerk.get("/desk/patients/search", params={"q": "weber"})
        more = re.search(r'hx-get="(/desk/patients/search\?[^"]+)"', first.text)
        assert more, first.text
        second = await clerk.get(more.group(1).replace("&amp;", "&"))
        shown = set(re.findall(rf'href="(/desk/patients/{UUID})"', first.text + second.text))
        assert shown == urls


# --- patients -----------------------------------------------------------------------------------

async def test_create_patient_errors_next_to_fields_then_redirect(
    app: object, owner_db: Database, hospitals: Hospitals
) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        page = await clerk.get("/desk/patients/new")
        assert page.status_code == 200
        for name in ("matricule", "legacy_matricule", "no_matricule_reason", "family_name",
                     "given_name", "birth_date", "sex", "language", "street", "postal_code",
                     "city", "country", "phone", "email"):
            assert f'<label for="f-{name}">' in page.text, name
            assert f'name="{name}"' in page.text, name
        assert 'hx-get="/desk/patients/check-matricule"' in page.text
        wrong = "1990093012348"  # check digit 12 mistyped
        refused = await clerk.post("/desk/patients/new", data={
            "csrf": csrf_of(page), "idem": idem_of(page),
            **patient_form(matricule=wrong, family_name="Kayser", given_name="Léa",
                           street="12, rue des Bains", phone="not a phone")})
        assert refused.status_code == 422
        assert "Luhn" in error_of(refused, "matricule")
        assert "chiffre" in error_of(refused, "matricule")  # in the user's language
        assert error_of(refused, "phone")  # every field's reason at once
        assert error_of(refused, "family_name") == ""
        assert f'value="{wrong}"' in refused.text and 'value="Kayser"' in refused.text
        assert 'value="Léa"' in refused.text and 'value="12, rue des Bains"' in refused.text
        assert 'aria-invalid="true"' in refused.text
        # Required fields left empty, and a birth date the matricule does not encode.
        empty = await clerk.post("/desk/patients/new", data={
            "csrf": csrf_of(page), "idem": idem_of(page), "matricule": matricule(),
            "birth_date": "1981-05-05", "family_name": "", "given_name": ""})
        assert empty.status_code == 422
        assert error_of(empty, "family_name") and error_of(empty, "sex")
        assert "1980" in error_of(empty, "matricule")
        done = await clerk.post("/desk/patients/new", data={
            "csrf": csrf_of(page), "idem": idem_of(page),
            **patient_form(family_name="Kayser", given_name="Léa")})
        assert done.status_code == 303
        patient = await clerk.get(done.headers["location"])
        assert patient.status_code == 200 and "Kayser" in patient.text and "Léa" in patient.text
        # The same matricule again: refused next to the field, with a link to the patient.
        number = re.search(r"<dd>(\d{13})</dd>", patient.text)
        assert number
        again = await post_form(clerk, "/desk/patients/new",
                                **patient_form(matricule=number.group(1)))
        assert again.status_code == 409
        assert error_of(again, "matricule") and done.headers["location"] in again.text


async def test_the_matricule_is_checked_as_typed(app: object, owner_db: Database,
                                                 hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        async def check(value: str, birth: str = "") -> str:
            answer = await clerk.get("/desk/patients/check-matricule",
                                     params={"matricule": value, "birth_date": birth})
            assert answer.status_code == 200 and "<html" not in answer.text
            return answer.text

        good = complete("19800101123")
        assert "Matricule valide" in await check(good) and 'class="ok"' in await check(good)
        assert "01.01.1980" in await check(good)
        assert "Luhn" in await check("1990093012348")
        assert "Verhoeff" in await check("1990093012357")
        assert "13 chiffres, pas 12" in await check("199009301235")
        assert "ancien numéro" in await check("19900930123")
        assert "mois 13" in await check(complete("19901301123"))
        assert 'class="bad"' in await check("19900930A2358")
        assert "autre date de naissance" in await check(good, "1980-02-02")
        assert (await check("")).strip() == ""
        # In German for a German-speaking user.
        await clerk.post("/language", data={"language": "de", "next": "/desk",
                                            "csrf": csrf_of(await clerk.get("/desk"))})
        assert "Prüfziffer 12" in await check("1990093012348")


async def test_a_double_submit_makes_one_patient(app: object, owner_db: Database,
                                                 hospitals: Hospitals) -> None:
    number = matricule()
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        page = await clerk.get("/desk/patients/new")
        data = {"csrf": csrf_of(page), "idem": idem_of(page), **patient_form(matricule=number)}
        first = await clerk.post("/desk/patients/new", data=data)
        second = await clerk.post("/desk/patients/new", data=data)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        # htmx (hx-boost, a retry) is sent where the first went too.
        third = await clerk.post("/desk/patients/new", data=data, headers={"HX-Request": "true"})
        assert third.headers["hx-redirect"] == first.headers["location"]
        assert idem_of(await clerk.get("/desk/patients/new")) != data["idem"]  # fresh each time
    assert await count_patients(owner_db, hospitals.a, matricule=number) == 1


async def test_edit_a_patient(app: object, owner_db: Database, hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        url = await create_patient(clerk, family_name="Hoffmann", city="Esch")
        page = await clerk.get(f"{url}/edit")
        assert page.status_code == 200
        assert 'value="Hoffmann"' in page.text and 'value="Esch"' in page.text
        assert '<label for="f-death_date">' in page.text
        form = dict(re.findall(r'<input id="f-(\w+)" name="\w+" type="\w+" value="([^"]*)"',
                               page.text))
        data = {"csrf": csrf_of(page), "idem": idem_of(page),
                "version": re.search(r'name="version" value="(\d+)"', page.text).group(1),  # type: ignore[union-attr]
                **form, "sex": "F", "language": "fr", "no_matricule_reason": ""}
        bad = await clerk.post(f"{url}/edit", data={**data, "family_name": "",
                                                    "email": "nobody"})
        assert bad.status_code == 422
        assert error_of(bad, "family_name") and error_of(bad, "email")
        assert 'value="Esch"' in bad.text and 'value="nobody"' in bad.text
        done = await clerk.post(f"{url}/edit", data={**data, "city": "Differdange"})
        assert done.status_code == 303 and done.headers["location"] == url
        shown = await clerk.get(url)
        assert "Differdange" in shown.text
        stale = await clerk.post(f"{url}/edit", data={**data, "idem": str(uuid.uuid4()),
                                                      "city": "Wiltz"})
        assert stale.status_code == 409 and "entre-temps" in stale.text
        assert 'value="Wiltz"' in stale.text  # what was typed is kept


# --- stays, movements, acts ---------------------------------------------------------------------

async def test_admit_record_acts_move_and_correct(app: object, owner_db: Database,
                                                  hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        patient_url = await create_patient(clerk, family_name="Reuter")
        patient = await clerk.get(patient_url)
        assert 'data-shortcut="n"' in patient.text
        for name in ("kind", "admitted_at", "unit", "room", "bed", "room_class",
                     "admitting_doctor", "attending_doctor", "planned"):
            assert f'<label for="f-admit-{name}">' in patient.text, name
        for name in ("payer", "member_number", "first_class", "valid_from", "valid_to"):
            assert f'<label for="f-cov-{name}">' in patient.text, name
        await add_coverage(clerk, patient_url, valid_to="2026-03-03")
        coverages = await clerk.get(patient_url)
        assert "CNS" in coverages.text and "M-1" in coverages.text
        overlap = await post_form(clerk, f"{patient_url}/coverages/new", kind="other_fund",
                                  payer="CMFEP", member_number="X-2", valid_from="2025-01-01")
        assert overlap.status_code == 409 and "déjà couvert par CNS" in overlap.text
        assert error_of(overlap, "valid_from") and 'value="X-2"' in overlap.text
        accident = await post_form(clerk, f"{patient_url}/coverages/new", kind="accident",
                                   payer="AAA", valid_from="2026-01-01")
        assert accident.status_code == 422 and "accident" in error_of(accident,
                                                                      "accident_number")
        refused = await post_form(clerk, f"{patient_url}/stays/new", kind="inpatient",
                                  admitted_at="2026-03-02T08:00", admitting_doctor="123")
        assert refused.status_code == 422
        assert "8 chiffres" in error_of(refused, "admitting_doctor")
        assert 'value="123"' in refused.text
        stay_url = await admit(clerk, patient_url, admitting_doctor="12345678")
        stay = await clerk.get(stay_url)
        assert stay.status_code == 200
        assert "02.03.2026 08:00" in stay.text and "MED2" in stay.text and "admis" in stay.text
        assert stay_url in (await clerk.get(patient_url)).text  # the patient's stays
        # The coverage ends on the 3rd: the days after are a gap, shown first.
        assert 'id="gaps"' in stay.text and "04.03.2026" in stay.text

        # The code autocomplete: label and price on the act's day, and the quote.
        suggest = f"{stay_url}/acts/suggest"
        found = await clerk.get(suggest, params={"code": "N10",
                                                 "performed_at": "2026-03-02T10:00"})
        assert found.status_code == 200 and "<html" not in found.text
        assert "N101" in found.text and "Soins infirmiers de base" in found.text
        assert "19,78 €" in found.text and '<datalist id="act-codes">' in found.text
        exact = await clerk.get(suggest, params={"code": "n101", "quantity": "2",
                                                 "performed_at": "2026-03-02T10:00"})
        assert "39,56 €" in exact.text  # 2 × 19.78 for this stay, the insurer pays it all
        by_label = await clerk.get(suggest, params={"code": "injection"})
        assert "N104" in by_label.text
        nothing = await clerk.get(suggest, params={"code": "ZZZ9"})
        assert "Aucun acte" in nothing.text

        # Three acts.
        for code, at, extra in (("N101", "2026-03-02T10:00", {}),
                                ("N104", "2026-03-02T11:00", {"note": "bras gauche"}),
                                ("V1", "2026-03-03T08:30", {"performer": "12345678"})):
            done = await post_form(clerk, f"{stay_url}/acts/new", code=code,
                                   performed_at=at, quantity="1", **extra)
            assert done.status_code == 303, done.text
            assert re.fullmatch(rf"{stay_url}#act-{UUID}", done.headers["location"])
        unknown = await post_form(clerk, f"{stay_url}/acts/new", code="NOPE",
                                  performed_at="2026-03-02T10:00", quantity="1")
        assert unknown.status_code == 422
        assert "NOPE" in error_of(unknown, "code") and "inconnu" in error_of(unknown, "code")
        assert 'value="NOPE"' in unknown.text
        outside = await post_form(clerk, f"{stay_url}/acts/new", code="N101",
                                  performed_at="2026-03-01T10:00", quantity="0")
        assert outside.status_code == 422 and error_of(outside, "quantity")
        stay = await clerk.get(stay_url)
        acts = act_ids(stay)
        assert len(acts) == 3
        assert "Soins infirmiers de base" in stay.text and "19,78 €" in stay.text
        assert stay.text.count("<details>") == 3 and "Explication" in stay.text
        assert "7.7571" in stay.text and "968.04" in stay.text  # the engine's explanation
        assert f'href="#act-{acts[0]}"' in stay.text and "bras gauche" in stay.text

        # Transfer to first class, discharge, cancel the discharge.
        moved = await post_form(clerk, f"{stay_url}/transfer", at="2026-03-04T09:00",
                                unit="CHIR", room="12", bed="B", room_class="")
        assert moved.status_code == 303 and moved.headers["location"] == stay_url
        nowhere = await post_form(clerk, f"{stay_url}/transfer", at="2026-03-04T10:00")
        assert nowhere.status_code == 422 and error_of(nowhere, "unit")
        early = await post_form(clerk, f"{stay_url}/discharge", at="2026-03-01T09:00")
        assert early.status_code == 422 and error_of(early, "at")
        out = await post_form(clerk, f"{stay_url}/discharge", at="2026-03-05T11:00")
        assert out.status_code == 303
        stay = await clerk.get(stay_url)
        assert "CHIR" in stay.text and "05.03.2026 11:00" in stay.text
        assert "sorti" in stay.text and "Annuler la sortie" in stay.text
        cancel = re.search(rf'name="type" value="(cancel_\w+)">\s*<input type="hidden" '
                           rf'name="cancels" value="({UUID})"', stay.text)
        assert cancel and cancel.group(1) == "cancel_discharge"
        undone = await clerk.post(f"{stay_url}/cancel-movement", data={
            "csrf": csrf_of(stay), "idem": idem_of(stay), "type": cancel.group(1),
            "cancels": cancel.group(2)})
        assert undone.status_code == 303
        stay = await clerk.get(stay_url)
        assert "Sortie annulée" in stay.text and "Annuler le transfert" in stay.text
        assert "<del>" in stay.text

        # Correct an act (priced again), then cancel another.
        edit = await clerk.get(f"{stay_url}/acts/{acts[0]}/edit")
        assert edit.status_code == 200 and 'value="N101"' in edit.text
        corrected = await post_form(clerk, f"{stay_url}/acts/{acts[0]}/edit", code="N101",
                                    performed_at="2026-03-02T10:00", quantity="2")
        assert corrected.status_code == 303
        assert corrected.headers["location"] == f"{stay_url}#act-{acts[0]}"
        stale = await clerk.post(f"{stay_url}/acts/{acts[0]}/edit", data={
            "csrf": csrf_of(edit), "idem": str(uuid.uuid4()), "version": "1", "code": "N101",
            "performed_at": "2026-03-02T10:00", "quantity": "3"})
        assert stale.status_code == 409
        bad = await post_form(clerk, f"{stay_url}/acts/{acts[0]}/edit", code="N101",
                              performed_at="2026-03-02T10:00", quantity="abc")
        assert bad.status_code == 422 and error_of(bad, "quantity")
        assert 'value="abc"' in bad.text
        confirm = await clerk.get(f"{stay_url}/acts/{acts[1]}/cancel")
        data = {"csrf": csrf_of(confirm), "idem": idem_of(confirm)}
        cancelled = await clerk.post(f"{stay_url}/acts/{acts[1]}/cancel", data=data)
        assert cancelled.status_code == 303
        twice = await clerk.post(f"{stay_url}/acts/{acts[1]}/cancel", data=data)
        assert twice.headers["location"] == cancelled.headers["location"]  # a double click
        stay = await clerk.get(stay_url)
        row = re.search(rf'<tr id="act-{acts[0]}">(.*?)</tr>', stay.text, re.DOTALL)
        assert row and "39,56 €" in row.group(1)
        row = re.search(rf'<tr id="act-{acts[1]}">(.*?)</tr>', stay.text, re.DOTALL)
        assert row and "annulé" in row.group(1) and "/edit" not in row.group(1)
        again = await clerk.post(f"{stay_url}/acts/{acts[1]}/cancel",
                                 data={**data, "idem": str(uuid.uuid4())})
        assert again.status_code == 409 and "L’acte a été annulé." in again.text
        async with owner_db.transaction() as session:
            states = dict((await session.execute(select(Act.id, Act.state).where(
                Act.tenant_id == hospitals.a.id))).all())  # type: ignore[arg-type]
        assert [states[uuid.UUID(a)] for a in acts] == ["recorded", "cancelled", "recorded"]

        # The stays in the house list it; cancelling the admission takes it out.
        house = await clerk.get("/desk/stays")
        assert stay_url in house.text and "Reuter" in house.text
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as billing:
        seen = await billing.get(stay_url)
        assert seen.status_code == 200 and "Explication" in seen.text
        assert "/transfer" not in seen.text and "/acts/new" not in seen.text
        assert (await billing.get("/desk/stays")).status_code == 403
        assert (await billing.get(patient_url)).status_code == 403


async def test_cancel_the_admission(app: object, owner_db: Database,
                                    hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        patient_url = await create_patient(clerk)
        stay_url = await admit(clerk, patient_url)
        page = await clerk.get(f"{stay_url}/cancel-movement")
        assert page.status_code == 200 and "Annuler l’admission" in page.text
        cancel = re.search(rf'name="cancels" value="({UUID})"', page.text)
        assert cancel
        done = await clerk.post(f"{stay_url}/cancel-movement", data={
            "csrf": csrf_of(page), "idem": idem_of(page), "type": "cancel_admit",
            "cancels": cancel.group(1)})
        assert done.status_code == 303
        stay = await clerk.get(stay_url)
        assert "annulé" in stay.text and "/cancel-movement" not in stay.text
        late = await post_form(clerk, f"{stay_url}/transfer", at="2026-03-04T09:00",
                               unit="X")
        assert late.status_code == 409 and "annulé" in late.text
        assert stay_url not in (await clerk.get("/desk/stays")).text


async def test_correct_the_kind_and_doctors_of_a_stay(app: object, owner_db: Database,
                                                      hospitals: Hospitals) -> None:
    """The desk's form of `PATCH /api/v1/stays/{id}`: a new kind prices the acts again,
    doctors are set or removed; a bad code or a stale form says why and changes nothing."""
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        patient_url = await create_patient(clerk)
        await add_coverage(clerk, patient_url)
        stay_url = await admit(clerk, patient_url, kind="outpatient")
        done = await post_form(clerk, f"{stay_url}/acts/new", code="C1",
                               performed_at="2026-03-02T10:00", quantity="1",
                               performer="12345678")
        assert done.status_code == 303, done.text
        before = await clerk.get(stay_url)
        assert f'href="{stay_url}/edit"' in before.text
        price = re.search(r'<tr id="act-[^"]+">(.*?)</tr>', before.text, re.DOTALL)
        assert price
        form = await clerk.get(f"{stay_url}/edit")
        assert form.status_code == 200 and "Corriger le séjour" in form.text
        assert '<option value="outpatient" selected>' in form.text
        bad = await post_form(clerk, f"{stay_url}/edit", kind="inpatient",
                              attending_doctor="123")
        assert bad.status_code == 422 and "8 chiffres" in error_of(bad, "attending_doctor")
        assert 'value="123"' in bad.text
        stale = await clerk.post(f"{stay_url}/edit", data={
            "csrf": csrf_of(form), "idem": str(uuid.uuid4()), "version": "0",
            "kind": "inpatient"})
        assert stale.status_code == 409 and "a changé entre-temps" in stale.text
        changed = await post_form(clerk, f"{stay_url}/edit", kind="inpatient",
                                  attending_doctor="23456789")
        assert changed.status_code == 303 and changed.headers["location"] == stay_url
        after = await clerk.get(stay_url)
        kind = re.search(r"<dt>Type</dt><dd>([^<·]*)", after.text)
        assert kind and kind.group(1).strip() == "Hospitalisation", after.text[:200]
        assert "23456789" in after.text
        repriced = re.search(r'<tr id="act-[^"]+">(.*?)</tr>', after.text, re.DOTALL)
        assert repriced and repriced.group(1) != price.group(1)
        removed = await post_form(clerk, f"{stay_url}/edit", kind="inpatient",
                                  attending_doctor="")
        assert removed.status_code == 303
        assert "23456789" not in (await clerk.get(stay_url)).text
        # F20 is billed on inpatient stays only: refused, and nothing kept of the change
        # (the desk's request commits after showing the error).
        done = await post_form(clerk, f"{stay_url}/acts/new", code="F20",
                               performed_at="2026-03-02T11:00", quantity="1",
                               performer="12345678", specialty="internal_medicine")
        assert done.status_code == 303, done.text
        refused = await post_form(clerk, f"{stay_url}/edit", kind="outpatient")
        assert refused.status_code == 422 and "F20" in error_of(refused, "kind")
        # The page's head shows the stay as it is, not as it was refused to become.
        head = re.search(r'<p class="hint"><strong>[^<]*</strong>[^·]*· ([^·]*) ·',
                         refused.text)
        assert head and head.group(1).strip() == "Hospitalisation"
        kept = await clerk.get(stay_url)
        kind = re.search(r"<dt>Type</dt><dd>([^<·]*)", kept.text)
        assert kind and kind.group(1).strip() == "Hospitalisation"
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as billing:
        assert f"{stay_url}/edit" not in (await billing.get(stay_url)).text
        assert (await billing.get(f"{stay_url}/edit")).status_code == 403


async def test_stays_in_the_house_newest_first_by_pages(
    app: object, owner_db: Database, hospitals: Hospitals, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clerk_stays, "HOUSE_PAGE", 2)
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        stays = []
        for number, day in enumerate(("01", "03", "02")):
            patient = await create_patient(clerk, family_name=f"Maison{number}")
            stays.append(await admit(clerk, patient, admitted_at=f"2026-03-{day}T08:00"))
        first = await clerk.get("/desk/stays")
        assert first.status_code == 200
        order = re.findall(rf'href="(/desk/stays/{UUID})"', first.text)
        assert order == [stays[1], stays[2]]
        more = re.search(r'href="(/desk/stays\?cursor=[^"]+)"', first.text)
        assert more
        second = await clerk.get(more.group(1))
        assert re.findall(rf'href="(/desk/stays/{UUID})"', second.text) == [stays[0]]
        assert "Maison0" in second.text


# --- what every page owes -----------------------------------------------------------------------

async def test_html_in_text_fields_is_escaped_everywhere(
    app: object, owner_db: Database, hospitals: Hospitals
) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        page = await clerk.get("/desk/patients/new")
        refused = await clerk.post("/desk/patients/new", data={
            "csrf": csrf_of(page), "idem": idem_of(page),
            **patient_form(family_name=SCRIPT, given_name='"><img src=x onerror=alert(1)>')})
        assert refused.status_code == 422  # a name has no < or >, and says so
        assert SCRIPT not in refused.text and ESCAPED in refused.text
        assert "<img src=x" not in refused.text
        url = await create_patient(clerk, family_name="Scriptor", street=SCRIPT, city=SCRIPT)
        # A name from elsewhere (an import, an older system) may hold anything.
        with context.tenant_scope(hospitals.a.id, actor="test"):
            async with owner_db.transaction() as session:
                await session.execute(update(Patient).where(
                    Patient.id == uuid.UUID(url.rsplit("/", 1)[1]))  # type: ignore[arg-type]
                    .values(family_name=SCRIPT))
        await add_coverage(clerk, url, payer="CNS", member_number=SCRIPT)
        stay_url = await admit(clerk, url, unit="MED")
        done = await post_form(clerk, f"{stay_url}/acts/new", code="N101",
                               performed_at="2026-03-02T10:00", quantity="1", note=SCRIPT)
        assert done.status_code == 303
        act_id = done.headers["location"].rsplit("act-", 1)[1]
        pages = [url, f"{url}/edit", f"{url}/coverages/new", f"{url}/stays/new", stay_url,
                 f"{stay_url}/transfer", f"{stay_url}/acts/new",
                 f"{stay_url}/acts/{act_id}/edit", f"{stay_url}/acts/{act_id}/cancel",
                 "/desk/stays", "/desk/patients/search?q=Scriptor"]
        for address in pages:
            shown = await clerk.get(address)
            assert shown.status_code == 200, address
            assert SCRIPT not in shown.text, address
        assert ESCAPED in (await clerk.get(url)).text
        assert ESCAPED in (await clerk.get(stay_url)).text
        assert ESCAPED in (await clerk.get("/desk/stays")).text
        typed = await clerk.get("/desk/patients/search", params={"q": SCRIPT})
        assert SCRIPT not in typed.text
        checked = await clerk.get("/desk/patients/check-matricule", params={"matricule": SCRIPT})
        assert SCRIPT not in checked.text
        suggested = await clerk.get(f"{stay_url}/acts/suggest", params={"code": SCRIPT})
        assert SCRIPT not in suggested.text


async def test_another_hospitals_clerk_gets_the_404_page(
    app: object, owner_db: Database, hospitals: Hospitals
) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        patient_url = await create_patient(clerk)
        stay_url = await admit(clerk, patient_url)
        act = await post_form(clerk, f"{stay_url}/acts/new", code="N101",
                              performed_at="2026-03-02T10:00", quantity="1")
        act_url = act.headers["location"].replace("#act-", "/acts/")
    async with signed_in(app, owner_db, hospitals.b, Role.clerk) as other:
        token = csrf_of(await other.get("/desk"))
        for address in (patient_url, f"{patient_url}/edit", f"{patient_url}/stays/new",
                        f"{patient_url}/coverages/new", stay_url, f"{stay_url}/transfer",
                        f"{stay_url}/acts/new", f"{stay_url}/acts/suggest?code=N1",
                        f"{act_url}/edit", f"{act_url}/cancel", "/desk/patients/nope",
                        "/desk/stays/not-a-uuid"):
            page = await other.get(address)
            assert page.status_code == 404, address
            assert "Introuvable" in page.text and "<html" in page.text
        for address, data in ((f"{stay_url}/acts/new", {"code": "N101", "quantity": "1",
                                                         "performed_at": "2026-03-02T10:00"}),
                              (f"{act_url}/cancel", {}),
                              (f"{patient_url}/stays/new", {"kind": "inpatient",
                                                            "admitted_at": "2026-03-02T08:00"}),
                              (f"{stay_url}/discharge", {"at": "2026-03-03T08:00"})):
            refused = await other.post(address, data={"csrf": token, "idem": "x", **data})
            assert refused.status_code == 404, address
    async with signed_in(app, owner_db, hospitals.b, Role.billing) as billing:
        assert (await billing.get(stay_url)).status_code == 404
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        stay = await clerk.get(stay_url)
        assert len(act_ids(stay)) == 1 and "admis" in stay.text  # nothing changed


async def test_forms_without_the_token_are_refused(app: object, owner_db: Database,
                                                   hospitals: Hospitals) -> None:
    number = matricule()
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        page = await clerk.get("/desk/patients/new")
        missing = await clerk.post("/desk/patients/new",
                                   data={"idem": idem_of(page), **patient_form(matricule=number)})
        assert missing.status_code == 403
        forged = await clerk.post("/desk/patients/new", data={
            "csrf": "forged", "idem": idem_of(page), **patient_form(matricule=number)})
        assert forged.status_code == 403
        patient_url = await create_patient(clerk)
        stay_url = await admit(clerk, patient_url)
        for address in (f"{stay_url}/discharge", f"{stay_url}/acts/new",
                        f"{patient_url}/stays/new"):
            assert (await clerk.post(address, data={"at": "2026-03-03T08:00"})).status_code \
                == 403
    assert await count_patients(owner_db, hospitals.a, matricule=number) == 0


async def test_an_expired_session_comes_back_filled(app: object, owner_db: Database,
                                                    hospitals: Hospitals) -> None:
    email = await make_user(owner_db, hospitals.a, Role.clerk)
    number = matricule()
    async with browser(app) as client:  # the session cookie is gone
        sent = await client.post("/desk/patients/new", data={
            "csrf": "old-token", "idem": "key-1",
            **patient_form(matricule=number, family_name="Prefill", given_name="Émile",
                           city="Vianden")})
        assert sent.status_code == 401
        resume = re.search(r'name="resume" value="([^"]+)"', sent.text)
        assert resume and 'name="next" value="/desk/patients/new"' in sent.text
        done = await log_in(client, hospitals.a, email, next="/desk/patients/new",
                            resume=resume.group(1))
        assert done.status_code == 303
        assert done.headers["location"].startswith("/desk/patients/new?resume=")
        form = await client.get(done.headers["location"])
        assert form.status_code == 200
        assert 'value="Prefill"' in form.text and 'value="Émile"' in form.text
        assert 'value="Vianden"' in form.text and f'value="{number}"' in form.text
        assert 'name="idem" value="key-1"' in form.text
        assert 'name="csrf" value="old-token"' not in form.text  # the new session's token
        # A form of another page gets nothing of it.
        other = await client.get(f"/desk/patients?resume={resume.group(1)}")
        assert "Prefill" not in other.text
        # Sent again, it creates the patient (once).
        again = await client.post("/desk/patients/new", data={
            "csrf": csrf_of(form), "idem": idem_of(form),
            **patient_form(matricule=number, family_name="Prefill")})
        assert again.status_code == 303
    assert await count_patients(owner_db, hospitals.a, matricule=number) == 1
    # The stay forms come back filled too.
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        stay_url = await admit(clerk, await create_patient(clerk))
    async with browser(app) as client:
        sent = await client.post(f"{stay_url}/acts/new", data={
            "code": "N104", "performed_at": "2026-03-02T11:00", "note": "à reprendre"})
        resume = re.search(r'name="resume" value="([^"]+)"', sent.text)
        assert sent.status_code == 401 and resume
        done = await log_in(client, hospitals.a, email, next=f"{stay_url}/acts/new",
                            resume=resume.group(1))
        form = await client.get(done.headers["location"])
        assert 'value="N104"' in form.text and 'value="à reprendre"' in form.text
        assert 'value="2026-03-02T11:00"' in form.text

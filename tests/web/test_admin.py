"""The administrator's pages: users, API keys, audit log, hospital settings, tariff import."""

import contextlib
import io
import re
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlmodel import select

from luxfact.audit.service import record
from luxfact.auth.models import ApiKey, User
from luxfact.auth.roles import Role
from luxfact.cli.tariffs import DEMO_PACKAGE
from luxfact.db.engine import Database
from luxfact.kit import context
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.settings import Settings
from luxfact.tariffs import service as tariffs_service
from luxfact.tariffs.models import TariffAct
from luxfact.tariffs.package import read_package
from luxfact.web.account import THROTTLE
from tests.conftest import Hospital, Hospitals, make_hospital
from tests.web.desk import PASSWORD, browser, csrf_of, log_in, make_user, signed_in

IDEM = re.compile(r'name="idem" value="([^"]+)"')
KEY = re.compile(r"lfx_[0-9a-f]{32}_[A-Za-z0-9_-]{43}")
USER_LINK = re.compile(r"/desk/admin/users/([0-9a-f-]{36})")


def field_error(page: httpx.Response, name: str) -> str:
    found = re.search(rf'id="e-{name}" class="error" role="alert">([^<]*)<', page.text)
    assert found, f"no error slot for {name}"
    return found.group(1)


async def user_row(db: Database, hospital: Hospital, email: str) -> User:
    with context.tenant_scope(hospital.id, actor="test"):
        async with db.transaction() as session:
            found = (await session.exec(select(User).where(
                User.tenant_id == hospital.id, User.email == email))).first()
    assert found is not None
    return found


@contextlib.asynccontextmanager
async def admin_in(app: object, db: Database, hospital: Hospital,
                   language: str = "en") -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """An administrator logged in (in English unless told), and their e-mail."""
    email = await make_user(db, hospital, Role.admin, language=language)
    async with browser(app) as client:
        assert (await log_in(client, hospital, email)).status_code == 303
        yield client, email


# --- users -------------------------------------------------------------------------------

async def test_create_a_user_who_then_logs_in(app: object, owner_db: Database,
                                              hospitals: Hospitals) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        form = await admin.get("/desk/admin/users/new")
        assert form.status_code == 200 and 'name="email"' in form.text
        token, idem = csrf_of(form), IDEM.search(form.text).group(1)  # type: ignore[union-attr]
        bad = await admin.post("/desk/admin/users", data={
            "csrf": token, "idem": idem, "email": "not-an-email", "display_name": "Anne",
            "role": "clerk", "language": "de", "initial": "type", "password": "short"})
        assert bad.status_code == 422
        assert field_error(bad, "email") == "not an e-mail address"
        assert "12 characters" in field_error(bad, "password")
        assert 'value="not-an-email"' in bad.text and 'value="Anne"' in bad.text
        assert 'value="short"' not in bad.text  # a password is never sent back
        weak = await admin.post("/desk/admin/users", data={
            "csrf": token, "idem": idem, "email": "anne@example.lu", "role": "clerk",
            "language": "de", "initial": "type", "password": "aaaaaaaaaaaaaaaa"})
        assert weak.status_code == 422 and "variety" in field_error(weak, "password")
        assert field_error(weak, "email") == ""
        email = f"anne-{uuid.uuid4().hex[:6]}@example.lu"
        made = await admin.post("/desk/admin/users", data={
            "csrf": token, "idem": idem, "email": email.upper(), "display_name": "Anne",
            "role": "clerk", "language": "de", "initial": "type", "password": PASSWORD})
        assert made.status_code == 303, made.text
        assert made.headers["location"].endswith("?done=created")
        again = await admin.post("/desk/admin/users", data={  # a double submit
            "csrf": token, "idem": idem, "email": email, "display_name": "Anne",
            "role": "clerk", "language": "de", "initial": "type", "password": PASSWORD})
        assert again.status_code == 303 and again.headers["location"] == made.headers["location"]
        listed = await admin.get("/desk/admin/users")
        assert listed.text.count(email) == 1 and "Deutsch" in listed.text
        taken = await admin.post("/desk/admin/users", data={
            "csrf": token, "idem": uuid.uuid4().hex, "email": email, "role": "clerk",
            "language": "fr", "initial": "type", "password": PASSWORD})
        assert taken.status_code == 422 and "already exists" in field_error(taken, "email")
        people_only = await admin.post("/desk/admin/users", data={
            "csrf": token, "email": "sys@example.lu", "role": "integration",
            "language": "fr", "initial": "type", "password": PASSWORD})
        assert people_only.status_code == 422 and field_error(people_only, "role")
    async with browser(app) as client:
        assert (await log_in(client, hospitals.a, email)).status_code == 303
        home = await client.get("/desk")
        assert 'lang="de"' in home.text and "/desk/patients" in home.text


async def test_a_generated_password_is_shown_once(app: object, owner_db: Database,
                                                  hospitals: Hospitals) -> None:
    email = f"gen-{uuid.uuid4().hex[:6]}@example.lu"
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        form = await admin.get("/desk/admin/users/new")
        data = {"csrf": csrf_of(form), "idem": IDEM.search(form.text).group(1),  # type: ignore[union-attr]
                "email": email, "role": "billing", "language": "fr", "initial": "generate",
                "password": ""}
        made = await admin.post("/desk/admin/users", data=data)
        assert made.status_code == 201
        password = re.search(r'id="generated-password">([^<]+)<', made.text).group(1)  # type: ignore[union-attr]
        assert len(password) >= 12 and "shown this once" in made.text
        again = await admin.post("/desk/admin/users", data=data)
        assert again.status_code == 303 and password not in again.text
        shown = await admin.get(again.headers["location"])
        assert email in shown.text and password not in shown.text
    async with browser(app) as client:
        assert (await log_in(client, hospitals.a, email, password=password)).status_code == 303


async def test_change_a_role_and_disable_a_user(app: object, owner_db: Database,
                                                hospitals: Hospitals) -> None:
    clerk_email = await make_user(owner_db, hospitals.a, Role.clerk)
    clerk = await user_row(owner_db, hospitals.a, clerk_email)
    async with admin_in(app, owner_db, hospitals.a) as (admin, _), browser(app) as other:
        assert (await log_in(other, hospitals.a, clerk_email)).status_code == 303
        assert (await other.get("/desk")).status_code == 200
        page = await admin.get(f"/desk/admin/users/{clerk.id}")
        assert page.status_code == 200 and clerk_email in page.text
        token = csrf_of(page)
        wrong = await admin.post(f"/desk/admin/users/{clerk.id}/role",
                                 data={"csrf": token, "role": "integration"})
        assert wrong.status_code == 422 and field_error(wrong, "role")
        changed = await admin.post(f"/desk/admin/users/{clerk.id}/role",
                                   data={"csrf": token, "role": "billing"})
        assert changed.status_code == 303
        assert (await user_row(owner_db, hospitals.a, clerk_email)).role == "billing"
        assert "The role was changed." in (await admin.get(changed.headers["location"])).text

        disabled = await admin.post(f"/desk/admin/users/{clerk.id}/disable",
                                    data={"csrf": token})
        assert disabled.status_code == 303
        assert (await user_row(owner_db, hospitals.a, clerk_email)).disabled
        refused = await other.get("/desk")  # their session is refused at the next request
        assert refused.status_code == 303 and refused.headers["location"] == "/login"
        assert (await log_in(other, hospitals.a, clerk_email)).status_code == 401
        THROTTLE.succeeded([f"account:{hospitals.a.slug}:{clerk_email}", "address:127.0.0.1"])
        listed = await admin.get("/desk/admin/users")
        assert "disabled" in listed.text

        enabled = await admin.post(f"/desk/admin/users/{clerk.id}/enable", data={"csrf": token})
        assert enabled.status_code == 303
        assert (await log_in(other, hospitals.a, clerk_email)).status_code == 303

        trail = await admin.get("/desk/admin/audit", params={"object_id": str(clerk.id)})
        for action in ("user.role_change", "user.disable", "user.enable"):
            assert action in trail.text


async def test_an_admin_cannot_disable_themselves_nor_the_last_admin(
    app: object, owner_db: Database, hospitals: Hospitals
) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (first, first_email), \
            admin_in(app, owner_db, hospitals.a) as (second, second_email):
        me = await user_row(owner_db, hospitals.a, first_email)
        page = await first.get(f"/desk/admin/users/{me.id}")
        assert "This is you" in page.text and f"/users/{me.id}/disable" not in page.text
        token = csrf_of(page)
        refused = await first.post(f"/desk/admin/users/{me.id}/disable", data={"csrf": token})
        assert refused.status_code == 409
        assert "You cannot disable yourself" in refused.text
        own_role = await first.post(f"/desk/admin/users/{me.id}/role",
                                    data={"csrf": token, "role": "clerk"})
        assert own_role.status_code == 409
        assert not (await user_row(owner_db, hospitals.a, first_email)).disabled
        assert (await user_row(owner_db, hospitals.a, first_email)).role == "admin"

        # The second demotes the first, whose page is still open: the second is now the
        # only enabled administrator and cannot be disabled by anyone.
        other = await user_row(owner_db, hospitals.a, second_email)
        demoted = await second.post(f"/desk/admin/users/{me.id}/role", data={
            "csrf": csrf_of(await second.get("/desk/admin/users")), "role": "clerk"})
        assert demoted.status_code == 303
        last = await first.post(f"/desk/admin/users/{other.id}/disable", data={"csrf": token})
        assert last.status_code in (403, 409)  # refused, whatever the session says
        if last.status_code == 409:
            assert "last enabled administrator" in last.text
        assert not (await user_row(owner_db, hospitals.a, second_email)).disabled


# --- API keys ----------------------------------------------------------------------------

async def test_an_api_key_is_shown_once_works_and_is_revoked(
    app: object, client: httpx.AsyncClient, owner_db: Database, hospitals: Hospitals
) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        listed = await admin.get("/desk/admin/keys")
        assert listed.status_code == 200 and "test integration" in listed.text
        token, idem = csrf_of(listed), IDEM.search(listed.text).group(1)  # type: ignore[union-attr]
        bad = await admin.post("/desk/admin/keys", data={"csrf": token, "idem": idem,
                                                          "name": "", "role": "root"})
        assert bad.status_code == 422
        assert field_error(bad, "name") and field_error(bad, "role")
        made = await admin.post("/desk/admin/keys", data={
            "csrf": token, "idem": idem, "name": "Laboratory system", "role": "clerk"})
        assert made.status_code == 201
        clear = KEY.search(made.text).group(0)  # type: ignore[union-attr]
        assert "shown this once only and never again" in made.text
        assert made.headers["cache-control"] == "no-store"
        again = await admin.post("/desk/admin/keys", data={
            "csrf": token, "idem": idem, "name": "Laboratory system", "role": "clerk"})
        assert again.status_code == 303 and clear not in again.text
        key_page = await admin.get(again.headers["location"])
        assert "Laboratory system" in key_page.text and clear not in key_page.text
        listed = await admin.get("/desk/admin/keys")
        assert clear not in listed.text and clear[37:45] in listed.text
        assert listed.text.count("Laboratory system") == 1  # the double submit made none

        auth = {"Authorization": f"Bearer {clear}"}
        assert (await client.get("/api/v1/patients", headers=auth)).status_code == 200

        key_id = again.headers["location"].rsplit("/", 1)[-1]
        confirm = await admin.get(f"/desk/admin/keys/{key_id}/revoke")
        assert confirm.status_code == 200 and "Revoke this key?" in confirm.text
        unconfirmed = await admin.post(f"/desk/admin/keys/{key_id}/revoke",
                                       data={"csrf": token})
        assert unconfirmed.status_code == 422
        assert (await client.get("/api/v1/patients", headers=auth)).status_code == 200
        revoked = await admin.post(f"/desk/admin/keys/{key_id}/revoke",
                                   data={"csrf": token, "confirm": "yes"})
        assert revoked.status_code == 303
        assert (await client.get("/api/v1/patients", headers=auth)).status_code == 401
        assert "revoked" in (await admin.get(f"/desk/admin/keys/{key_id}")).text
        trail = await admin.get("/desk/admin/audit", params={"object_id": key_id})
        assert "apikey.create" in trail.text and "apikey.revoke" in trail.text


# --- audit log ---------------------------------------------------------------------------

async def test_the_audit_log_filters_and_pages(app: object, owner_db: Database,
                                               hospitals: Hospitals) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, admin_email):
        form = await admin.get("/desk/admin/users/new")
        email = f"audited-{uuid.uuid4().hex[:6]}@example.lu"
        made = await admin.post("/desk/admin/users", data={
            "csrf": csrf_of(form), "email": email, "role": "clerk", "language": "fr",
            "initial": "type", "password": PASSWORD})
        user_id = USER_LINK.search(made.headers["location"]).group(1)  # type: ignore[union-attr]
        created = await admin.get("/desk/admin/audit", params={"action": "user.create"})
        assert created.status_code == 200 and user_id in created.text
        assert admin_email in created.text  # the actor, by name
        assert "user.login" not in created.text
        logins = await admin.get("/desk/admin/audit", params={"action": "user.login"})
        assert user_id not in logins.text and "user.login" in logins.text
        kinds = await admin.get("/desk/admin/audit", params={"action": "user."})
        assert "user.create" in kinds.text and "user.login" in kinds.text
        today = utcnow().astimezone(LUXEMBOURG).date()
        dated = await admin.get("/desk/admin/audit", params={
            "action": "user.create", "from": today.isoformat(), "to": today.isoformat()})
        assert user_id in dated.text
        before = await admin.get("/desk/admin/audit", params={
            "action": "user.create", "to": (today - timedelta(days=1)).isoformat()})
        assert user_id not in before.text
        bad = await admin.get("/desk/admin/audit", params={"from": "31/12/2024",
                                                           "actor": "x" * 61})
        assert bad.status_code == 422
        assert field_error(bad, "from") and field_error(bad, "actor")
        assert 'value="31/12/2024"' in bad.text
        wrong_cursor = await admin.get("/desk/admin/audit", params={"cursor": "nonsense"})
        assert wrong_cursor.status_code == 422 and "First page" in wrong_cursor.text

        with context.tenant_scope(hospitals.a.id, actor="test"):
            async with owner_db.transaction() as session:
                for number in range(55):
                    await record(session, "test.paging", "thing", f"thing-{number:03}", {})
        first = await admin.get("/desk/admin/audit", params={"action": "test.paging"})
        shown = set(re.findall(r"thing-\d{3}", first.text))
        assert len(shown) == 50
        older = re.search(r'href="(/desk/admin/audit\?[^"]*cursor=[^"]+)" rel="next"',
                          first.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
        second = await admin.get(older)
        rest = set(re.findall(r"thing-\d{3}", second.text))
        assert len(rest) == 5 and not rest & shown and 'rel="next"' not in second.text

    async with admin_in(app, owner_db, hospitals.b) as (other, _):
        foreign = await other.get("/desk/admin/audit", params={"object_id": user_id})
        assert "No events match" in foreign.text
        assert "<code>user.create</code>" not in foreign.text


# --- hospital settings -------------------------------------------------------------------

async def test_the_hospital_settings_are_shown_read_only(app: object, owner_db: Database,
                                                         hospitals: Hospitals) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        page = await admin.get("/desk/admin/hospital")
        assert page.status_code == 200
        assert f"Hôpital {hospitals.a.slug}" in page.text and "90000017" in page.text
        assert "LU280019400644750000" in page.text and "BCEELULL" in page.text
        assert "T-{year}-{seq:06}" in page.text and "-000001" in page.text
        assert f"tenants/{hospitals.a.slug}.toml" in page.text and "read-only" in page.text
        assert "No logo" in page.text  # the warning of a tenant file without one
        main = page.text.split("<main", 1)[1].split("</main>", 1)[0]
        assert "<form" not in main  # nothing to change here
    async with admin_in(app, owner_db, hospitals.b, language="fr") as (other, _):
        french = await other.get("/desk/admin/hospital")
        assert f"Hôpital {hospitals.b.slug}" in french.text
        assert hospitals.a.slug not in french.text
        assert "Paramètres de l’hôpital" in french.text and "lecture seule" in french.text


async def test_the_hospital_page_shows_its_logo_and_price_list(app: object,
                                                               owner_db: Database) -> None:
    hospital = await make_hospital(owner_db, "logo", logo="demo-nord.png")
    with context.tenant_scope(hospital.id, actor="test"):
        async with owner_db.transaction() as session:
            await tariffs_service.replace_hospital_prices(session, hospital.id, [{
                "code": "TVX1", "label_fr": "Télévision", "label_de": "Fernsehen",
                "label_en": "Television", "amount_cents": 450,
                "valid_from": date(2020, 1, 1), "valid_to": None}])
    async with admin_in(app, owner_db, hospital) as (admin, _):
        page = await admin.get("/desk/admin/hospital")
        assert page.status_code == 200
        assert 'src="data:image/png;base64,' in page.text and "No logo" not in page.text
        assert "TVX1" in page.text and "Television" in page.text and "4.50" in page.text


# --- tariff import -----------------------------------------------------------------------

def demo_files() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8")
            for path in sorted(DEMO_PACKAGE.glob("*.csv"))}


def zipped(files: dict[str, str | bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(folder + name, content)
    return buffer.getvalue()


async def upload(admin: httpx.AsyncClient, data: bytes, name: str = "package.zip"
                 ) -> httpx.Response:
    page = await admin.get("/desk/admin/tariffs")
    return await admin.post("/desk/admin/tariffs", data={"csrf": csrf_of(page)},
                            files={"package": (name, data, "application/zip")})


def apply_form(page: httpx.Response) -> dict[str, str]:
    form = page.text.split('action="/desk/admin/tariffs/apply"', 1)[1].split("</form>")[0]
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))
    assert set(fields) >= {"csrf", "sha256", "diff", "filename"}
    return fields


async def act_versions(db: Database, code: str) -> list[TariffAct]:
    async with db.transaction() as session:
        return list((await session.exec(select(TariffAct).where(TariffAct.code == code))).all())


@pytest.mark.usefixtures("catalogue")
async def test_the_demo_package_changes_nothing(app: object, owner_db: Database,
                                                hospitals: Hospitals) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        page = await admin.get("/desk/admin/tariffs")
        assert "shared by every hospital" in page.text and 'type="file"' in page.text
        checked = await upload(admin, zipped(demo_files(), folder="demo/"), "demo.zip")
        assert checked.status_code == 200, checked.text
        assert "Nothing to change" in checked.text
        assert 'action="/desk/admin/tariffs/apply"' not in checked.text


@pytest.mark.usefixtures("catalogue")
async def test_a_new_act_is_shown_then_applied_only_on_apply(
    app: object, owner_db: Database, settings: Settings, hospitals: Hospitals
) -> None:
    code = f"ZW{uuid.uuid4().hex[:6].upper()}"  # this test's own act: no other test knows it
    files = demo_files()
    try:
        async with admin_in(app, owner_db, hospitals.a) as (admin, _):
            files["acts.csv"] += f"TECH,{code},Acte du test,Testleistung,3.00,T,2026-01-01,\n"
            shown = await upload(admin, zipped(files))
            assert shown.status_code == 200, shown.text
            assert f"<code>{code} 2026-01-01</code>" in shown.text
            assert "withdrawn <code>" not in shown.text and "shared by every hospital" in shown.text
            form = apply_form(shown)
            staged = settings.documents_dir / "staging" / f"{form['sha256']}.zip"
            assert staged.is_file()
            assert await act_versions(owner_db, code) == []  # nothing applied by looking

            forged = await admin.post("/desk/admin/tariffs/apply",
                                      data={**form, "sha256": "0" * 64})
            assert forged.status_code == 409 and "no longer staged" in forged.text
            stale = await admin.post("/desk/admin/tariffs/apply", data={**form, "diff": "f" * 64})
            assert stale.status_code == 409 and "changed since" in stale.text
            assert await act_versions(owner_db, code) == []

            applied = await admin.post("/desk/admin/tariffs/apply", data=form)
            assert applied.status_code == 303, applied.text
            assert applied.headers["location"].startswith("/desk/admin/tariffs?applied=")
            assert [a.coefficient for a in await act_versions(owner_db, code)] == [
                Decimal("3.00")]
            assert not staged.exists()
            done = await admin.get(applied.headers["location"])
            assert "The package was applied" in done.text and "desk upload" in done.text
            twice = await admin.post("/desk/admin/tariffs/apply", data=form)
            assert twice.status_code == 409  # applied already: no longer staged

            # One act's coefficient changed: shown with its old and new value.
            files["acts.csv"] = files["acts.csv"].replace(
                f"{code},Acte du test,Testleistung,3.00", f"{code},Acte du test,Testleistung,3.50")
            changed = await upload(admin, zipped(files))
            assert f"<code>{code} 2026-01-01</code>" in changed.text
            assert "coefficient <del>3.00</del> → <ins>3.50</ins>" in changed.text
            assert (await act_versions(owner_db, code))[0].coefficient == \
                Decimal("3.00")
            applied = await admin.post("/desk/admin/tariffs/apply", data=apply_form(changed))
            assert applied.status_code == 303
            assert (await act_versions(owner_db, code))[0].coefficient == \
                Decimal("3.50")
            trail = await admin.get("/desk/admin/audit", params={"action": "tariff.import"})
            assert trail.text.count("<code>tariff.import</code>") >= 2
    finally:
        package = read_package(DEMO_PACKAGE)
        async with owner_db.transaction() as session:
            changes = await tariffs_service.diff(session, package)
            if not changes.empty:
                await tariffs_service.apply(session, package, changes)
    assert await act_versions(owner_db, code) == []


@pytest.mark.usefixtures("catalogue")
async def test_a_bad_package_lists_its_errors_and_applies_nothing(
    app: object, owner_db: Database, settings: Settings, hospitals: Hospitals
) -> None:
    files = demo_files()
    files["acts.csv"] += "MED,X1BAD,Acte,,1.00,Q,2019-01-01,\nMED,X2BAD,Acte,,abc,M,2019-01-01,\n"
    files["cotes.csv"] += "2030-02-30,1000\n"
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        refused = await upload(admin, zipped(files), "bad.zip")
        assert refused.status_code == 422
        assert "<code>acts.csv:24</code>: unknown key letter &#39;Q&#39;" in refused.text
        assert ("<code>acts.csv:25</code>: coefficient &#39;abc&#39; is not a decimal"
                in refused.text)
        assert "<code>cotes.csv:10</code>" in refused.text
        assert "nothing was applied" in refused.text
        assert 'action="/desk/admin/tariffs/apply"' not in refused.text
        assert await act_versions(owner_db, "X1BAD") == []

        missing = dict(files)
        del missing["acts.csv"]
        absent = await upload(admin, zipped(missing))
        assert absent.status_code == 422 and "file missing from the package" in absent.text


@pytest.mark.parametrize(("entries", "expected"), [
    ({"../evil.csv": "x", "acts.csv": "x"}, "the path leaves the package"),
    ({"/etc/acts.csv": "x"}, "the path leaves the package"),
    ({"a\\..\\acts.csv": "x"}, "the path leaves the package"),
    ({"act.csv": "x"}, "Not a file of a tariff package"),
    ({"a/b/acts.csv": "x"}, "Too deep"),
    ({"a/acts.csv": "x", "b/cotes.csv": "x"}, "side by side"),
])
async def test_an_unsafe_archive_is_refused(app: object, owner_db: Database,
                                            hospitals: Hospitals, entries: dict[str, str],
                                            expected: str, settings: Settings) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        refused = await upload(admin, zipped(entries))  # type: ignore[arg-type]
        assert refused.status_code == 422
        assert expected in refused.text
        assert 'action="/desk/admin/tariffs/apply"' not in refused.text
    assert not (settings.documents_dir / "evil.csv").exists()
    assert not (settings.documents_dir.parent / "evil.csv").exists()


async def test_not_a_zip_nor_a_file(app: object, owner_db: Database,
                                    hospitals: Hospitals) -> None:
    async with admin_in(app, owner_db, hospitals.a) as (admin, _):
        assert "not a .zip file" in (await upload(admin, b"acts.csv,hello")).text
        page = await admin.get("/desk/admin/tariffs")
        nothing = await admin.post("/desk/admin/tariffs", data={"csrf": csrf_of(page)})
        assert nothing.status_code == 422 and "Choose the package" in nothing.text
        bomb = zipped({"acts.csv": "a" * (9 * 1024 * 1024)})  # 9 MB unpacked, a few KB zipped
        assert len(bomb) < 60 * 1024
        assert "Too large" in (await upload(admin, bomb)).text


# --- who may see what --------------------------------------------------------------------

ADMIN_PAGES = ["/desk/admin/users", "/desk/admin/users/new", "/desk/admin/keys",
               "/desk/admin/audit", "/desk/admin/hospital", "/desk/admin/tariffs"]


async def test_a_clerk_may_not_open_the_admin_pages(app: object, owner_db: Database,
                                                    hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as clerk:
        for url in ADMIN_PAGES:
            assert (await clerk.get(url)).status_code == 403, url
        token = csrf_of(await clerk.get("/desk"))
        created = await clerk.post("/desk/admin/keys", data={
            "csrf": token, "name": "sneaky", "role": "admin"})
        assert created.status_code == 403 and not KEY.search(created.text)
    async with signed_in(app, owner_db, hospitals.a, Role.billing) as billing:
        assert (await billing.get("/desk/admin/users")).status_code == 403


async def test_another_hospitals_admin_sees_none_of_this_one(
    app: object, owner_db: Database, hospitals: Hospitals
) -> None:
    email = await make_user(owner_db, hospitals.a, Role.clerk)
    user = await user_row(owner_db, hospitals.a, email)
    with context.tenant_scope(hospitals.a.id, actor="test"):
        async with owner_db.transaction() as session:
            key = (await session.exec(select(ApiKey).where(
                ApiKey.tenant_id == hospitals.a.id))).first()
    assert key is not None
    async with admin_in(app, owner_db, hospitals.b) as (other, _):
        assert email not in (await other.get("/desk/admin/users")).text
        assert (await other.get(f"/desk/admin/users/{user.id}")).status_code == 404
        assert (await other.get("/desk/admin/users/not-a-uuid")).status_code == 404
        assert (await other.get(f"/desk/admin/keys/{key.id}")).status_code == 404
        assert str(key.id) not in (await other.get("/desk/admin/keys")).text
        token = csrf_of(await other.get("/desk/admin/users"))
        assert (await other.post(f"/desk/admin/users/{user.id}/disable",
                                 data={"csrf": token})).status_code == 404
        assert (await other.post(f"/desk/admin/keys/{key.id}/revoke",
                                 data={"csrf": token, "confirm": "yes"})).status_code == 404
    assert not (await user_row(owner_db, hospitals.a, email)).disabled
    with context.tenant_scope(hospitals.a.id, actor="test"):
        async with owner_db.transaction() as session:
            again = (await session.exec(select(ApiKey).where(
                ApiKey.tenant_id == hospitals.a.id, ApiKey.id == key.id))).one()
    assert again.revoked_at is None


async def test_the_pages_speak_french(app: object, owner_db: Database,
                                      hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.admin) as admin:
        users = await admin.get("/desk/admin/users")
        assert 'lang="fr"' in users.text and "Nouvel utilisateur" in users.text
        form = await admin.get("/desk/admin/users/new")
        bad = await admin.post("/desk/admin/users", data={
            "csrf": csrf_of(form), "email": "nope", "role": "clerk", "language": "fr",
            "initial": "type", "password": "short"})
        # Shared texts may be translated by several catalogues: not English is what counts.
        assert field_error(bad, "email") not in ("", "not an e-mail address")
        assert "12 caract" in field_error(bad, "password")
        assert "Créer l’utilisateur" in bad.text and "Mot de passe initial" in bad.text

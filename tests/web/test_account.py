"""Logging in and out, roles, form tokens, throttling, the language switch, timeouts."""

import time

import pytest

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.settings import Settings
from luxfact.web import session as web_session
from luxfact.web.account import THROTTLE
from tests.conftest import Hospitals
from tests.web.desk import browser, csrf_of, log_in, make_user, signed_in


async def test_log_in_see_the_roles_home_and_log_out(app: object, owner_db: Database,
                                                     hospitals: Hospitals) -> None:
    email = await make_user(owner_db, hospitals.a, Role.billing)
    async with browser(app) as client:
        page = await client.get("/login")
        assert page.status_code == 200 and 'for="email"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "same-origin"
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert (await client.get("/desk")).headers["location"] == "/login?next=/desk"
        done = await log_in(client, hospitals.a, email)
        assert done.status_code == 303 and done.headers["location"] == "/desk"
        cookie = done.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" in cookie
        home = await client.get("/desk")
        assert home.status_code == 200
        assert "/desk/claims" in home.text and "/desk/admin/users" not in home.text
        assert "Lots de facturation" in home.text  # French by default
        token = csrf_of(home)
        assert (await client.post("/logout", data={"csrf": token})).status_code == 303
        assert (await client.get("/desk")).status_code == 303  # back to the login page


async def test_wrong_password_and_throttling(app: object, owner_db: Database,
                                             hospitals: Hospitals) -> None:
    email = await make_user(owner_db, hospitals.a, Role.clerk)
    THROTTLE.succeeded(["address:127.0.0.1"])
    async with browser(app) as client:
        for _ in range(5):
            refused = await log_in(client, hospitals.a, email, password="wrong-password")
            assert refused.status_code == 401
            assert "n’est pas correct" in refused.text or "pas correct" in refused.text
        blocked = await log_in(client, hospitals.a, email)  # even the right password waits
        assert blocked.status_code == 429
        assert "minutes" in blocked.text
    THROTTLE.succeeded([f"account:{hospitals.a.slug}:{email}", "address:127.0.0.1"])
    async with browser(app) as client:
        assert (await log_in(client, hospitals.a, email)).status_code == 303
        # Another hospital's user cannot log in to this one.
        other = await make_user(owner_db, hospitals.b, Role.clerk)
        assert (await log_in(client, hospitals.a, other)).status_code == 401
    THROTTLE.succeeded(["address:127.0.0.1"])


async def test_forms_need_the_sessions_token(app: object, owner_db: Database,
                                             hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as client:
        home = await client.get("/desk")
        missing = await client.post("/logout", data={})
        assert missing.status_code == 403
        forged = await client.post("/logout", data={"csrf": "forged-token"})
        assert forged.status_code == 403
        assert (await client.get("/desk")).status_code == 200  # still logged in
        assert (await client.post("/logout", data={"csrf": csrf_of(home)})).status_code == 303


async def test_the_language_switch_is_remembered(app: object, owner_db: Database,
                                                 hospitals: Hospitals) -> None:
    async with signed_in(app, owner_db, hospitals.a, Role.admin) as client:
        home = await client.get("/desk")
        switched = await client.post("/language", data={
            "language": "de", "next": "/desk", "csrf": csrf_of(home)})
        assert switched.status_code == 303
        german = await client.get("/desk")
        assert 'lang="de"' in german.text and "Benutzer" in german.text
        assert (await client.post("/language", data={"language": "xx", "next": "/desk",
                                                     "csrf": csrf_of(home)})).status_code == 422
    async with browser(app) as anonymous:
        english = await anonymous.get("/login", headers={"Accept-Language": "en-GB"})
        assert 'lang="en"' in english.text and "Password" in english.text


@pytest.mark.parametrize("age", ["idle", "old"])
def test_sessions_expire(age: str) -> None:
    secret = "test-secret-key-0123456789"
    user = web_session.new_session(user_id=__import__("uuid").uuid4(),
                                   tenant_id=__import__("uuid").uuid4(), tenant_slug="x",
                                   role="clerk", name="x", language="fr")
    token = web_session.encode(secret, user)
    now = int(time.time())
    assert web_session.decode(secret, token, now) == user
    later = now + (web_session.IDLE_SECONDS + 1 if age == "idle"
                   else web_session.ABSOLUTE_SECONDS + 1)
    if age == "old":
        token = web_session.encode(secret, user.renewed(later - 10))
    assert web_session.decode(secret, token, later) is None
    assert web_session.decode("another-secret-key-0123", token, now) is None
    assert web_session.decode(secret, token[:-2] + "xx", now) is None


async def test_a_disabled_user_is_logged_out(app: object, owner_db: Database,
                                             hospitals: Hospitals) -> None:
    from sqlalchemy import update

    from luxfact.auth.models import User
    from luxfact.kit import context
    async with signed_in(app, owner_db, hospitals.a, Role.clerk) as client:
        assert (await client.get("/desk")).status_code == 200
        with context.tenant_scope(hospitals.a.id, actor="test"):
            async with owner_db.transaction() as session:
                await session.execute(update(User).where(User.tenant_id == hospitals.a.id)
                                      .values(disabled=True))
        assert (await client.get("/desk")).status_code == 303


@pytest.mark.parametrize(("language", "expected"), [("fr", "au plus 20 caractères"),
                                                     ("de", "höchstens 20 Zeichen")])
def test_a_schemas_reason_is_translated_on_every_form(language: str, expected: str) -> None:
    """pydantic's reasons carry values: every area's forms (not only the clerk's) show them
    in the user's language."""
    from luxfact.web.desk import Desk

    user = web_session.new_session(user_id=__import__("uuid").uuid4(),
                                   tenant_id=__import__("uuid").uuid4(), tenant_slug="x",
                                   role="billing", name="x", language=language)
    desk = Desk(request=None, session=None, user=user)  # type: ignore[arg-type]
    assert desk.translate_reason("String should have at most 20 characters") == expected
    assert desk.translate_reason("an unknown reason") == "an unknown reason"


async def test_login_makes_a_new_session_whatever_cookie_came_before(
        app: object, owner_db: Database, hospitals: Hospitals, settings: Settings) -> None:
    # Session fixation: a session cookie planted in the clerk's browser beforehand (here
    # the attacker's own, valid one) must not survive the clerk's login, nor its token.
    attacker = await make_user(owner_db, hospitals.a, Role.clerk)
    victim = await make_user(owner_db, hospitals.a, Role.billing)
    secret = settings.secret_key
    async with browser(app) as client:
        assert (await log_in(client, hospitals.a, attacker)).status_code == 303
        planted = client.cookies[web_session.COOKIE]
        before = web_session.decode(secret, planted)
        assert before is not None
    async with browser(app) as client:
        done = await client.post("/login", data={
            "hospital": hospitals.a.slug, "email": victim, "password": "Correct-horse-42!",
            "next": "/desk"}, headers={"Cookie": f"{web_session.COOKIE}={planted}"})
        assert done.status_code == 303
        fresh = client.cookies[web_session.COOKIE]
        after = web_session.decode(secret, fresh)
        assert fresh != planted and after is not None
        assert after.role == Role.billing and after.user_id != before.user_id
        assert after.csrf != before.csrf  # the planted session's form token is worthless
        home = await client.get("/desk")
        assert csrf_of(home) == after.csrf
        assert (await client.post("/logout", data={"csrf": before.csrf})).status_code == 403


@pytest.mark.parametrize(("headers", "refused"), [
    # The browser's verdict, whatever the Host a proxy passes on (nginx's default rewrites
    # it to the upstream's address).
    ({"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, True),
    ({"Sec-Fetch-Site": "same-site", "Origin": "https://other.chl.lu"}, True),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "https://luxfact.chl.lu",
      "Host": "127.0.0.1:8000"}, False),
    # An old browser without Sec-Fetch-Site: Origin against the host it addressed.
    ({"Origin": "https://evil.example"}, True),
    ({"Origin": "null"}, True),
    ({"Origin": "https://testserver"}, False),
    ({"Origin": "https://LuxFact.chl.lu", "Host": "luxfact.chl.lu:443"}, False),
    ({"Origin": "https://luxfact.chl.lu", "Host": "127.0.0.1:8000",
      "X-Forwarded-Host": "luxfact.chl.lu"}, False),
    ({"Origin": "https://luxfact.chl.lu", "Host": "127.0.0.1:8000"}, True),
    ({}, False),  # a script: judged by its credentials
])
async def test_a_login_posted_from_another_site_is_refused(
        app: object, owner_db: Database, hospitals: Hospitals, headers: dict[str, str],
        refused: bool) -> None:
    email = await make_user(owner_db, hospitals.a, Role.clerk)
    async with browser(app) as client:
        answer = await client.post(
            "/login", data={"hospital": hospitals.a.slug, "email": email,
                            "password": "Correct-horse-42!", "next": "/desk"},
            headers=headers)
        if refused:
            assert answer.status_code == 403 and "depuis un autre site" in answer.text
            assert web_session.COOKIE not in client.cookies
        else:
            assert answer.status_code == 303, answer.text


# Each role's own page, and the menu link only that role's navigation shows.
ROLE_PAGE = {Role.clerk: "/desk/patients", Role.billing: "/desk/billing",
             Role.admin: "/desk/admin/users"}


@pytest.mark.parametrize(("before", "after"), [(Role.billing, Role.clerk),
                                               (Role.admin, Role.clerk),
                                               (Role.clerk, Role.billing)])
async def test_a_changed_role_holds_from_the_users_next_request(
        app: object, owner_db: Database, hospitals: Hospitals, settings: Settings,
        before: Role, after: Role) -> None:
    """The cookie keeps the role of the login; the database's role is the one that counts,
    from the very next request, without logging in again (even with the old cookie)."""
    from sqlmodel import select

    from luxfact.auth.models import User
    from luxfact.kit import context

    email = await make_user(owner_db, hospitals.a, before)
    with context.tenant_scope(hospitals.a.id, actor="test"):
        async with owner_db.transaction() as session:
            user_id = (await session.exec(select(User.id).where(
                User.tenant_id == hospitals.a.id, User.email == email))).one()
    async with (signed_in(app, owner_db, hospitals.a, Role.admin) as admin,
                browser(app) as client):
        assert (await log_in(client, hospitals.a, email)).status_code == 303
        home = await client.get("/desk")
        assert home.status_code == 200
        assert f'href="{ROLE_PAGE[before]}"' in home.text
        assert f'href="{ROLE_PAGE[after]}"' not in home.text
        assert (await client.get(ROLE_PAGE[before])).status_code == 200
        assert (await client.get(ROLE_PAGE[after])).status_code == 403
        stale = client.cookies[web_session.COOKIE]

        page = await admin.get(f"/desk/admin/users/{user_id}")
        changed = await admin.post(f"/desk/admin/users/{user_id}/role",
                                   data={"csrf": csrf_of(page), "role": after.value})
        assert changed.status_code == 303, changed.text

        # The very next request: the new role's pages, not the old one's, same session.
        refused = await client.get(ROLE_PAGE[before])
        assert refused.status_code == 403 and "rôle" in refused.text
        opened = await client.get(ROLE_PAGE[after])
        assert opened.status_code == 200, opened.text
        home = await client.get("/desk")
        assert home.status_code == 200
        assert f'href="{ROLE_PAGE[after]}"' in home.text
        assert f'href="{ROLE_PAGE[before]}"' not in home.text
        renewed = web_session.decode(settings.secret_key, client.cookies[web_session.COOKIE])
        assert renewed is not None and renewed.role == after
        # The session's form token still works: a form posted under the new role.
        assert (await client.post("/language", data={
            "language": "de", "next": "/desk", "csrf": csrf_of(home)})).status_code == 303

    # A copy of the cookie taken before the change still says the old role: it is refused
    # the old role's pages all the same (the database is asked, not the cookie).
    old = web_session.decode(settings.secret_key, stale)
    assert old is not None and old.role == before
    async with browser(app) as replay:
        cookie = {"Cookie": f"{web_session.COOKIE}={stale}"}
        assert (await replay.get(ROLE_PAGE[before], headers=cookie)).status_code == 403
        assert (await replay.get(ROLE_PAGE[after], headers=cookie)).status_code == 200

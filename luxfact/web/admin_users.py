"""/desk/admin/users: the hospital's users, created, given a role, disabled and enabled.

Mirrors the API (`luxfact/auth/api.py`): the same service creates a user (and audits it);
role changes and disabling are audited here. Users are people: clerk, billing or admin
(`integration` is for API keys). An administrator cannot change their own role or disable
themselves, and the last enabled administrator cannot be removed.
"""

import re
import secrets
import string
import uuid

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.audit.service import record
from luxfact.auth import credentials
from luxfact.auth import service as auth_service
from luxfact.auth.models import User
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.web import i18n
from luxfact.web.admin_kit import USER_ROLES, new_idem, path_uuid, remember, replayed, when
from luxfact.web.desk import Desk, page

EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
GENERATED_LENGTH = 16
# Letters and digits only, without look-alikes (0/O, 1/l/I): it is read off a screen.
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")
NOTICES = {"created", "role", "disabled", "enabled"}


def generate_password() -> str:
    """A random password that passes the policy, to be shown once."""
    while True:
        password = "".join(secrets.choice(_ALPHABET) for _ in range(GENERATED_LENGTH))
        try:
            credentials.check_password_policy(password)
        except ValueError:
            continue
        return password


async def _user(desk: Desk) -> User:
    found = await AuthRepository(desk.session, desk.tenant_id).user(path_uuid(desk, "user_id"))
    if found is None:
        raise NotFound()
    return found


def _options(desk: Desk) -> dict[str, object]:
    return {"roles": [(r, desk._(r)) for r in USER_ROLES],
            "language_options": list(i18n.NAMES.items()), "when": when}


@page(Role.admin)
async def users(desk: Desk) -> Response:
    """Every user of the hospital."""
    found = await AuthRepository(desk.session, desk.tenant_id).users()
    return desk.render("desk/admin/users.html", users=found, when=when,
                       me=desk.user.user_id)


@page(Role.admin)
async def new_user(desk: Desk) -> Response:
    return desk.render("desk/admin/user_new.html", form=_typed(desk), idem=new_idem(),
                       **_options(desk))


def _typed(desk: Desk) -> dict[str, str]:
    """What was typed, sent back with the errors (never the password)."""
    return {"email": desk.value("email").strip(),
            "display_name": desk.value("display_name").strip(),
            "role": desk.value("role", "clerk"),
            "language": desk.value("language", desk.language),
            "initial": desk.value("initial", "type")}


def _check(desk: Desk, typed: dict[str, str], password: str) -> None:
    errors = desk.errors
    email = typed["email"]
    if not email:
        errors["email"] = desk._("Required.")
    elif len(email) > 254 or not EMAIL.match(email):
        errors["email"] = desk._("not an e-mail address")
    if len(typed["display_name"]) > 200:
        errors["display_name"] = desk._("At most %(count)s characters.", count=200)
    if typed["role"] not in USER_ROLES:
        errors["role"] = desk._("Choose one of the roles offered.")
    if typed["language"] not in i18n.LANGUAGES:
        errors["language"] = desk._("Choose one of the languages offered.")
    if typed["initial"] not in ("type", "generate"):
        errors["initial"] = desk._("Choose one of the options offered.")
    elif typed["initial"] == "type":
        if len(password) > 200:
            errors["password"] = desk._("At most %(count)s characters.", count=200)
        else:
            try:
                credentials.check_password_policy(password)
            except ValueError as exc:
                errors["password"] = desk.translate_reason(str(exc))


@page(Role.admin)
async def create_user(desk: Desk) -> Response:
    """Create a user; a generated password is shown on the result page, once."""
    again = await replayed(desk)
    if again is not None:
        return again
    typed = _typed(desk)
    password = desk.value("password")
    _check(desk, typed, password)
    repo = AuthRepository(desk.session, desk.tenant_id)
    if "email" not in desk.errors and await repo.user_by_email(typed["email"]):
        desk.errors["email"] = desk._("A user with this e-mail already exists in this "
                                      "hospital.")
    generated = typed["initial"] == "generate"
    if not desk.errors:
        if generated:
            password = generate_password()
        try:
            user = await auth_service.create_user(
                desk.session, desk.tenant_id, email=typed["email"], role=Role(typed["role"]),
                password=password, display_name=typed["display_name"],
                language=typed["language"])
        except ValidationFailed as error:
            desk.field_errors(error)
        except Conflict:
            desk.errors["email"] = desk._("A user with this e-mail already exists in this "
                                          "hospital.")
    if desk.errors:
        return desk.render("desk/admin/user_new.html", status=422, form=typed,
                           idem=desk.value("idem") or new_idem(), **_options(desk))
    url = f"/desk/admin/users/{user.id}"
    await remember(desk, url + "?done=created")
    if generated:
        return desk.render("desk/admin/user_created.html", status=201, created=user,
                           password=password)
    return desk.redirect(url + "?done=created")


async def _show(desk: Desk, user: User, status: int = 200, refused: str = "",
                chosen_role: str | None = None) -> Response:
    done = desk.request.query_params.get("done", "")
    return desk.render("desk/admin/user.html", status=status, shown=user,
                       me=desk.user.user_id, refused=refused,
                       done=done if done in NOTICES and status == 200 else "",
                       chosen_role=chosen_role or user.role, **_options(desk))


@page(Role.admin)
async def user_page(desk: Desk) -> Response:
    return await _show(desk, await _user(desk))


async def _last_admin(desk: Desk, user: User) -> bool:
    """Would this user's leaving the enabled administrators leave none?"""
    if user.role != Role.admin or user.disabled:
        return False
    admins = await AuthRepository(desk.session, desk.tenant_id).enabled_admins(lock=True)
    return not [found for found in admins if found != user.id]


def _is_me(desk: Desk, user: User) -> bool:
    return user.id == uuid.UUID(desk.user.user_id)


@page(Role.admin)
async def change_role(desk: Desk) -> Response:
    user = await _user(desk)
    role = desk.value("role")
    if _is_me(desk, user):
        return await _show(desk, user, 409, desk._(
            "You cannot change your own role: ask another administrator."))
    if role not in USER_ROLES:
        desk.errors["role"] = desk._("Choose one of the roles offered.")
        return await _show(desk, user, 422, chosen_role=role)
    if role == user.role:
        return desk.redirect(f"/desk/admin/users/{user.id}")
    if role != Role.admin and await _last_admin(desk, user):
        return await _show(desk, user, 409, desk._(
            "This is the last enabled administrator of the hospital: make another user an "
            "administrator first."), chosen_role=role)
    await AuthRepository(desk.session, desk.tenant_id).set_role(user.id, role)
    await record(desk.session, "user.role_change", "user", user.id,
                 {"from": user.role, "to": role}, tenant_id=desk.tenant_id)
    return desk.redirect(f"/desk/admin/users/{user.id}?done=role")


@page(Role.admin)
async def disable_user(desk: Desk) -> Response:
    """Disable a user: refused at their next request, and at login."""
    user = await _user(desk)
    if _is_me(desk, user):
        return await _show(desk, user, 409, desk._(
            "You cannot disable yourself: ask another administrator."))
    if user.disabled:
        return desk.redirect(f"/desk/admin/users/{user.id}")
    if await _last_admin(desk, user):
        return await _show(desk, user, 409, desk._(
            "This is the last enabled administrator of the hospital: make another user an "
            "administrator first."))
    await AuthRepository(desk.session, desk.tenant_id).set_disabled(user.id, True)
    await record(desk.session, "user.disable", "user", user.id, {}, tenant_id=desk.tenant_id)
    return desk.redirect(f"/desk/admin/users/{user.id}?done=disabled")


@page(Role.admin)
async def enable_user(desk: Desk) -> Response:
    user = await _user(desk)
    if not user.disabled:
        return desk.redirect(f"/desk/admin/users/{user.id}")
    await AuthRepository(desk.session, desk.tenant_id).set_disabled(user.id, False)
    await record(desk.session, "user.enable", "user", user.id, {}, tenant_id=desk.tenant_id)
    return desk.redirect(f"/desk/admin/users/{user.id}?done=enabled")


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/admin/users", users, methods=["GET"]),
        Route("/desk/admin/users", create_user, methods=["POST"]),
        Route("/desk/admin/users/new", new_user, methods=["GET"]),
        Route("/desk/admin/users/{user_id}", user_page, methods=["GET"]),
        Route("/desk/admin/users/{user_id}/role", change_role, methods=["POST"]),
        Route("/desk/admin/users/{user_id}/disable", disable_user, methods=["POST"]),
        Route("/desk/admin/users/{user_id}/enable", enable_user, methods=["POST"]),
    ]

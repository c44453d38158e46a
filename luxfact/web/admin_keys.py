"""/desk/admin/keys: the hospital's API keys, created (the key shown once) and revoked.

Mirrors the API (`luxfact/auth/api.py`): the same service creates and revokes keys and
audits both. The clear key exists only in the answer to the creating form: it is never
stored, and a second sending of that form leads to the key's page, without it.
"""

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.auth import service as auth_service
from luxfact.auth.models import ApiKey
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.kit.errors import NotFound, ValidationFailed
from luxfact.web.admin_kit import KEY_ROLES, new_idem, path_uuid, remember, replayed, when
from luxfact.web.desk import Desk, page

NOTICES = {"revoked"}


async def _key(desk: Desk) -> ApiKey:
    found = await AuthRepository(desk.session, desk.tenant_id).key(path_uuid(desk, "key_id"))
    if found is None:
        raise NotFound()
    return found


def _roles(desk: Desk) -> list[tuple[str, str]]:
    return [(r, desk._(r)) for r in KEY_ROLES]


async def _list(desk: Desk, status: int = 200, form: dict[str, str] | None = None) -> Response:
    found = await AuthRepository(desk.session, desk.tenant_id).keys()
    done = desk.request.query_params.get("done", "")
    return desk.render("desk/admin/keys.html", status=status, keys=found, when=when,
                       roles=_roles(desk), form=form or {"name": "", "role": "integration"},
                       idem=desk.value("idem") or new_idem(),
                       done=done if done in NOTICES and status == 200 else "")


@page(Role.admin)
async def keys(desk: Desk) -> Response:
    """The hospital's API keys (never the keys themselves) and the form to create one."""
    return await _list(desk)


@page(Role.admin)
async def create_key(desk: Desk) -> Response:
    """Create a key: shown on the answer, this once."""
    again = await replayed(desk)
    if again is not None:
        return again
    form = {"name": desk.value("name").strip(), "role": desk.value("role")}
    if not form["name"]:
        desk.errors["name"] = desk._("Required.")
    elif len(form["name"]) > 100:
        desk.errors["name"] = desk._("At most %(count)s characters.", count=100)
    if form["role"] not in KEY_ROLES:
        desk.errors["role"] = desk._("Choose one of the roles offered.")
    if not desk.errors:
        try:
            api_key, clear = await auth_service.create_api_key(
                desk.session, desk.tenant_id, name=form["name"], role=Role(form["role"]),
                created_by=desk.user.actor)
        except ValidationFailed as error:
            desk.field_errors(error)
    if desk.errors:
        return await _list(desk, 422, form)
    await remember(desk, f"/desk/admin/keys/{api_key.id}")
    return desk.render("desk/admin/key_created.html", status=201, created=api_key, clear=clear,
                       when=when)


@page(Role.admin)
async def key_page(desk: Desk) -> Response:
    return desk.render("desk/admin/key.html", shown=await _key(desk), when=when,
                       confirm=False)


@page(Role.admin)
async def confirm_revoke(desk: Desk) -> Response:
    """The confirmation step before revoking."""
    shown = await _key(desk)
    if shown.revoked_at is not None:
        return desk.redirect(f"/desk/admin/keys/{shown.id}")
    return desk.render("desk/admin/key.html", shown=shown, when=when, confirm=True)


@page(Role.admin)
async def revoke_key(desk: Desk) -> Response:
    """Revoke a key, once confirmed: it stops working at once."""
    shown = await _key(desk)
    if desk.value("confirm") != "yes":
        return desk.render("desk/admin/key.html", status=422, shown=shown, when=when,
                           confirm=True)
    await auth_service.revoke_api_key(desk.session, desk.tenant_id, shown.id)
    return desk.redirect("/desk/admin/keys?done=revoked")


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/admin/keys", keys, methods=["GET"]),
        Route("/desk/admin/keys", create_key, methods=["POST"]),
        Route("/desk/admin/keys/{key_id}", key_page, methods=["GET"]),
        Route("/desk/admin/keys/{key_id}/revoke", confirm_revoke, methods=["GET"]),
        Route("/desk/admin/keys/{key_id}/revoke", revoke_key, methods=["POST"]),
    ]

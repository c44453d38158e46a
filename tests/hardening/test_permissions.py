"""The permission matrix (`permissions.PERMISSIONS`) against the code and the running app.

Three layers, so a forgotten rule fails whichever way it was forgotten:
- the table lists exactly the routes that exist (a new route needs a reviewed line);
- each handler's declared roles (`@endpoint` / `@page`) equal the table;
- the app, called for real, answers 403 to every role outside a cell and never 401/403 to a
  role inside it, and never a 5xx.
"""

import re
import uuid
from collections.abc import Iterator

import httpx
import pytest
from starlette.routing import Route

from luxfact.auth.roles import Role
from luxfact.routes import routes
from tests.conftest import Hospitals
from tests.hardening.permissions import OPERATIONAL, PERMISSIONS, PUBLIC, SIGNED_IN
from tests.web.desk import csrf_of, signed_in

pytestmark = pytest.mark.usefixtures("catalogue")

PARAM = re.compile(r"{(\w+)}")
# Path parameters that are not UUIDs, with a value of the right shape.
NOT_UUID = {"number": "1", "line": "1", "code": "V1"}
# Roles that can log in to the desk (integration is API-only).
DESK_ROLES = (Role.clerk, Role.billing, Role.admin)


def route_table() -> Iterator[tuple[str, str, Route]]:
    for route in routes():
        if isinstance(route, Route):
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, route.path, route


def is_desk(path: str) -> bool:
    return not path.startswith("/api/")


def fill(path: str) -> str:
    """The path with every parameter filled: a random UUID, or a value of the right shape."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return NOT_UUID.get(name, str(uuid.uuid4()))
    return PARAM.sub(value, path)


def test_the_table_covers_every_route() -> None:
    actual = {(method, path) for method, path, _ in route_table()} - OPERATIONAL
    missing = sorted(actual - PERMISSIONS.keys())
    stale = sorted(PERMISSIONS.keys() - actual)
    assert not missing, f"routes without a line in tests/hardening/permissions.py: {missing}"
    assert not stale, f"lines for routes that no longer exist: {stale}"
    assert {(method, path) for method, path, _ in route_table()} >= OPERATIONAL


def test_the_table_is_sorted_by_path_and_names_known_roles() -> None:
    paths = [path for _, path in PERMISSIONS]
    assert paths == sorted(paths)
    known = {role.value for role in Role} | {PUBLIC, SIGNED_IN}
    for key, roles in PERMISSIONS.items():
        assert roles and roles <= known, key
        if PUBLIC in roles or SIGNED_IN in roles:
            assert len(roles) == 1, key


def test_the_code_grants_what_the_table_says() -> None:
    wrong = []
    for method, path, route in route_table():
        if (method, path) in OPERATIONAL:
            continue
        declared = getattr(route.endpoint, "roles", None)
        if declared is None:
            code = {PUBLIC}
        elif not declared:
            code = {SIGNED_IN}
        else:
            code = {str(role) for role in declared}
        if code != PERMISSIONS.get((method, path)):
            wrong.append(f"{method} {path}: code {sorted(code)}, "
                         f"table {sorted(PERMISSIONS.get((method, path), set()))}")
    assert not wrong, "\n".join(wrong)


def api_cells() -> list[tuple[str, str]]:
    return sorted(key for key, roles in PERMISSIONS.items()
                  if not is_desk(key[1]) and PUBLIC not in roles)


async def test_the_running_app_enforces_every_cell(client: httpx.AsyncClient,
                                                   hospitals: Hospitals) -> None:
    failures = []
    for method, path in api_cells():
        allowed = PERMISSIONS[(method, path)]
        url = fill(path)
        body = {} if method in ("POST", "PATCH") else None
        anonymous = await client.request(method, url, json=body)
        if anonymous.status_code != 401:
            failures.append(f"{method} {path} without a key: {anonymous.status_code}")
        for role in Role:
            response = await client.request(method, url, json=body,
                                            headers=hospitals.a.auth(role))
            status = response.status_code
            if status >= 500:
                failures.append(f"{method} {path} as {role}: {status} {response.text[:200]}")
            elif role.value in allowed and status in (401, 403):
                failures.append(f"{method} {path} as {role} (allowed): {status}")
            elif role.value not in allowed and status != 403:
                failures.append(f"{method} {path} as {role} (not allowed): {status}")
    assert not failures, "\n".join(failures)


async def test_public_api_pages_need_no_key(client: httpx.AsyncClient) -> None:
    for (method, path), roles in PERMISSIONS.items():
        if not is_desk(path) and PUBLIC in roles:
            assert (await client.request(method, path)).status_code == 200, path


def desk_cells() -> list[tuple[str, str]]:
    """The desk's cells, logging out last (it ends the session the others use)."""
    cells = sorted(key for key in PERMISSIONS if is_desk(key[1]))
    return sorted(cells, key=lambda key: key == ("POST", "/logout"))


@pytest.mark.parametrize("role", DESK_ROLES, ids=str)
async def test_the_desk_enforces_every_cell(app: object, owner_db: object,
                                            hospitals: Hospitals, role: Role) -> None:
    failures = []
    async with signed_in(app, owner_db, hospitals.a, role) as browser:  # type: ignore[arg-type]
        token = csrf_of(await browser.get("/desk"))
        for method, path in desk_cells():
            allowed = PERMISSIONS[(method, path)]
            url = fill(path)
            if method == "GET":
                response = await browser.get(url)
            else:
                response = await browser.post(url, data={"csrf": token})
            status = response.status_code
            open_to_me = bool(allowed & {PUBLIC, SIGNED_IN, role.value})
            if status >= 500:
                failures.append(f"{method} {path} as {role}: {status}")
            elif open_to_me and status == 403:
                failures.append(f"{method} {path} as {role} (allowed): 403")
            elif not open_to_me and status != 403:
                failures.append(f"{method} {path} as {role} (not allowed): {status}")
    assert not failures, "\n".join(failures)


async def test_the_desk_sends_strangers_to_the_login_page(app: object) -> None:
    from tests.web.desk import browser

    async with browser(app) as stranger:
        for (method, path), roles in sorted(PERMISSIONS.items()):
            if not is_desk(path) or PUBLIC in roles:
                continue
            response = await stranger.request(method, fill(path),
                                               data={} if method == "POST" else None)
            # A GET is redirected to the login page; a form kept for after the login: 401.
            assert response.status_code in (303, 401), (method, path, response.status_code)

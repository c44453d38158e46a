"""Helpers of the desk's tests: users who log in, each in a client of their own."""

import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import httpx

from luxfact.auth import service as auth_service
from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.kit import context
from tests.conftest import Hospital

PASSWORD = "Correct-horse-42!"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def make_user(db: Database, hospital: Hospital, role: Role | str,
                    language: str = "fr") -> str:
    email = f"{Role(role).value}-{uuid.uuid4().hex[:8]}@{hospital.slug}.lu"
    with context.tenant_scope(hospital.id, actor="test"):
        async with db.transaction() as session:
            await auth_service.create_user(session, hospital.id, email=email, role=Role(role),
                                           password=PASSWORD, display_name=f"Test {role}",
                                           language=language)
    return email


def browser(app: object) -> httpx.AsyncClient:
    """A client with its own cookies, over https (the session cookie is Secure in tests)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                             base_url="https://testserver", follow_redirects=False)


async def log_in(client: httpx.AsyncClient, hospital: Hospital, email: str,
                 password: str = PASSWORD, **extra: str) -> httpx.Response:
    return await client.post("/login", data={"hospital": hospital.slug, "email": email,
                                              "password": password, "next": "/desk", **extra})


@contextlib.asynccontextmanager
async def signed_in(app: object, db: Database, hospital: Hospital,
                    role: Role | str) -> AsyncIterator[httpx.AsyncClient]:
    """A user of `role` logged in, in a client of their own."""
    async with browser(app) as client:
        response = await log_in(client, hospital, await make_user(db, hospital, role))
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, "the page has no form token"
    return found.group(1)

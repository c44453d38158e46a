"""The OpenAPI document: complete, valid, and true of the running server (schemathesis).

The fuzzing runs against a real uvicorn process on this run's database, with a real key of
each role; every operation is called with generated valid and invalid data. It fails on any
5xx, an undocumented status code or content type, a response that does not match its
schema, or invalid data that is accepted.
"""

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from luxfact.auth.roles import Role
from luxfact.db.engine import Database
from luxfact.http.openapi import build, documented
from luxfact.routes import routes
from luxfact.settings import Settings
from tests.conftest import Hospital, make_hospital
from tests.live import live_server

UNDOCUMENTED = {"/api/v1/openapi.json", "/api/docs"}


def test_every_api_route_is_documented() -> None:
    for route in routes():
        if isinstance(route, Route) and route.path.startswith("/api/"):
            if route.path in UNDOCUMENTED:
                continue
            assert getattr(route.endpoint, "doc", None) is not None, route.path
    doc = build(routes())
    api_routes = {(r.path, m) for r, m, _ in documented(routes())}
    assert {(p, m) for p, ops in doc["paths"].items() for m in ops
            if p.startswith("/api/")} == api_routes


async def test_served_document_is_openapi_31(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(doc)  # refuses an invalid document
    assert len(list(schema.get_all_operations())) >= 20
    page = await client.get("/api/docs")
    assert page.status_code == 200 and "/api/v1/patients" in page.text
    assert "cdn" not in page.text.lower() and "<script" not in page.text
    css = await client.get("/static/api-docs.css")
    assert css.status_code == 200


@pytest.fixture(scope="session")
def live_url(settings: Settings) -> Iterator[str]:
    with live_server(settings) as (url, _):
        yield url


@pytest.fixture(scope="session")
async def fuzz_hospital(owner_db: Database, catalogue: None) -> Hospital:
    return await make_hospital(owner_db, "fuzz")


@pytest.fixture(scope="session")
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_url}/api/v1/openapi.json")


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
EXAMPLES = 25  # per operation and mode: bounded so the whole run stays well under a minute


def _key_for(roles: list[str], hospital: Hospital) -> str:
    for role in (Role.clerk, Role.admin, Role.billing, Role.integration):
        if role.value in roles:
            return hospital.keys[role]
    return hospital.keys[Role.clerk]


def _fuzz(operation: schemathesis.APIOperation, base_url: str, headers: dict[str, str],
          mode: GenerationMode) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        # The key goes into the case itself, not only onto the wire: schemathesis then
        # re-checks what it generated, and a negative case whose only fault was a missing or
        # mangled Authorization header (which the key replaces) is not held against the API.
        case.headers = {**(case.headers or {}), **headers}
        response = case.call(base_url=base_url, timeout=30)
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_document(api_schema: schemathesis.BaseSchema,
                                      fuzz_hospital: Hospital, live_url: str,
                                      mode: GenerationMode) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        roles = operation.definition.raw.get("x-roles", [])
        headers = {"Authorization": f"Bearer {_key_for(roles, fuzz_hospital)}"}
        try:
            _fuzz(operation, live_url, headers, mode)
        except Unsatisfiable:
            continue  # nothing to make invalid (no parameter, no body): the positive run covers it
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)

"""Problem details, request ids, body limits and bad bodies, through the real app."""

import io
import json
import logging

import httpx
from asgi_lifespan import LifespanManager

from luxfact.app import create_app
from luxfact.auth.roles import Role
from luxfact.kit.logging import JsonFormatter
from luxfact.settings import Settings
from tests.conftest import Hospitals
from tests.health.test_api import _dead_url

PROBLEM = "application/problem+json"


async def test_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found")
    assert body["request_id"] == response.headers["x-request-id"]


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM


async def test_request_id_is_taken_from_the_request(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "a b<script>"})
    assert response.headers["x-request-id"] != "a b<script>"
    assert len(response.headers["x-request-id"]) == 32


async def test_invalid_json_is_400(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/api-keys", content=b'{"name": ',
                                 headers={**hospitals.a.auth(Role.admin),
                                          "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


async def test_invalid_utf8_is_400(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/api-keys", content=b'{"name": "\xff"}',
                                 headers={**hospitals.a.auth(Role.admin),
                                          "Content-Type": "application/json"})
    assert response.status_code == 400
    assert "UTF-8" in response.json()["detail"]


async def test_wrong_media_type_is_415(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/api-keys", content=b"name=x",
                                 headers={**hospitals.a.auth(Role.admin),
                                          "Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


async def test_validation_lists_each_field(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    response = await client.post("/api/v1/api-keys", json={"name": "", "role": "king", "x": 1},
                                 headers=hospitals.a.auth(Role.admin))
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"name", "role", "x"}


async def test_oversized_body_with_length_is_413(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings
) -> None:
    body = b'{"name": "' + b"x" * settings.max_body_bytes + b'"}'
    response = await client.post("/api/v1/api-keys", content=body,
                                 headers={**hospitals.a.auth(Role.admin),
                                          "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


async def test_oversized_streamed_body_is_413(
    client: httpx.AsyncClient, hospitals: Hospitals, settings: Settings
) -> None:
    async def chunks():  # no Content-Length: the limit must hold while streaming
        yield b'{"name": "'
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    response = await client.post("/api/v1/api-keys", content=chunks(),
                                 headers={**hospitals.a.auth(Role.admin),
                                          "Content-Type": "application/json"})
    assert response.status_code == 413
    keys = await client.get("/api/v1/api-keys", headers=hospitals.a.auth(Role.admin))
    assert all(not k["name"].startswith("xxx") for k in keys.json()["items"])


async def test_database_down_during_request_is_503(
    settings: Settings, hospitals: Hospitals
) -> None:
    dead = settings.model_copy(update={"app_database_url": _dead_url(settings)})
    app = create_app(dead)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/api/v1/audit-events",
                                        headers=hospitals.a.auth(Role.admin))
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "5"
    assert "nothing was changed" in response.json()["detail"]


async def test_each_request_logs_one_json_line_with_context(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("luxfact.request")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        response = await client.get("/api/v1/audit-events?limit=1",
                                    headers={**hospitals.a.auth(Role.admin),
                                             "X-Request-ID": "r-42"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert response.status_code == 200
    lines = [json.loads(raw) for raw in stream.getvalue().splitlines()]
    assert len(lines) == 1
    line = lines[0]
    assert line["route"] == "/api/v1/audit-events"
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["request_id"] == "r-42" and line["tenant"] == hospitals.a.slug
    assert line["user"].startswith("key:")
    assert isinstance(line["duration_ms"], float)


def test_log_lines_mask_matricules() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient 1990093012358 read",
                               None, None)
    assert "1990093012358" not in JsonFormatter().format(record)
    assert "1990*********" in JsonFormatter().format(record)

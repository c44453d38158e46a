"""`GET /metrics`: route templates, histograms, job gauges, invoices, and who may read it."""

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from luxfact.app import create_app
from luxfact.auth.roles import Role
from luxfact.cli.serve import prepare_metrics_dir
from luxfact.db.engine import Database
from luxfact.jobs import queue
from luxfact.kit import context
from luxfact.observability.metrics import MULTIPROC_ENV
from luxfact.settings import Settings
from tests.billing.test_invoices import bill, stay_with_acts
from tests.conftest import Hospitals

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def scrape(client: httpx.AsyncClient, **headers: str) -> dict[str, list]:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, [])
               if all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.usefixtures("catalogue")
async def test_requests_jobs_and_invoices_are_counted(
    client: httpx.AsyncClient, hospitals: Hospitals, owner_db: Database
) -> None:
    before = await scrape(client)
    stay = await stay_with_acts(client, hospitals.a)
    issued = await bill(client, hospitals.a, stay)
    assert issued.status_code == 201, issued.text
    kinds = [invoice["kind"] for invoice in issued.json()["invoices"]]
    got = await client.get(f"/api/v1/stays/{stay['id']}", headers=hospitals.a.auth(Role.clerk))
    assert got.status_code == 200
    missing = await client.get("/api/v1/stays/00000000-0000-4000-8000-"
                               "000000000000", headers=hospitals.a.auth(Role.clerk))
    assert missing.status_code == 404

    with context.tenant_scope(hospitals.a.id, actor="test"):
        async with owner_db.transaction() as session:
            job_id = await queue.enqueue(session, hospitals.a.id, "metrics.test", {})
    try:
        after = await scrape(client)
    finally:
        with context.tenant_scope(hospitals.a.id, actor="test"):
            async with owner_db.transaction() as session:
                await queue.done(session, hospitals.a.id, job_id)

    route = "/api/v1/stays/{stay_id}"
    assert value(after, "luxfact_http_requests_total", method="GET", route=route,
                 status="200") >= value(before, "luxfact_http_requests_total", method="GET",
                                        route=route, status="200") + 1
    assert value(after, "luxfact_http_requests_total", route=route, status="404") >= 1
    assert value(after, "luxfact_http_requests_total", method="POST",
                 route="/api/v1/stays/{stay_id}/invoices", status="201") >= 1
    for samples in after.values():  # no raw path, no id, ever
        for sample in samples:
            assert not UUID.search(" ".join(sample.labels.values())), sample
    # The histogram: buckets, count and sum per method and route.
    assert value(after, "luxfact_http_request_duration_seconds_count", method="GET",
                 route=route) >= 1
    buckets = [s for s in after["luxfact_http_request_duration_seconds_bucket"]
               if s.labels["route"] == route and s.labels["method"] == "GET"]
    assert [s.labels["le"] for s in buckets][-1] == "+Inf"
    # Job gauges, read from the jobs table of every tenant at scrape time.
    assert value(after, "luxfact_jobs_queued") >= 1
    assert value(after, "luxfact_jobs_oldest_age_seconds") >= 0
    for kind in set(kinds):
        assert value(after, "luxfact_invoices_issued_total", kind=kind) >= value(
            before, "luxfact_invoices_issued_total", kind=kind) + kinds.count(kind)
    drained = await scrape(client)
    assert value(drained, "luxfact_jobs_queued") == value(after, "luxfact_jobs_queued") - 1


@pytest.fixture
async def guarded(settings: Settings) -> AsyncIterator[object]:
    app = create_app(settings.model_copy(update={"metrics_token": "scrape-token-123"}))
    async with LifespanManager(app) as manager:
        yield manager.app


async def test_with_a_token_only_the_token_opens_it(guarded: object) -> None:
    transport = httpx.ASGITransport(app=guarded)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/metrics")).status_code == 404  # loopback is not enough
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 404
        unknown = await client.get("/no-such-page")
        assert wrong.json()["title"] == unknown.json()["title"]  # indistinguishable
        samples = await scrape(client, Authorization="Bearer scrape-token-123")
        assert "luxfact_jobs_queued" in samples


async def test_without_a_token_only_loopback_clients(app: object) -> None:
    remote = httpx.ASGITransport(app=app, client=("10.1.2.3", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=remote, base_url="http://testserver") as client:
        assert (await client.get("/metrics")).status_code == 404
    local = httpx.ASGITransport(app=app, client=("::1", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=local, base_url="http://testserver") as client:
        assert (await client.get("/metrics")).status_code == 200


def test_serve_prepares_a_fresh_multiprocess_dir(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "given"))
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "counter_123.db").write_bytes(b"old")
    assert prepare_metrics_dir() == str(tmp_path / "given")
    assert not list((tmp_path / "given").iterdir())  # last run's counts are gone
    monkeypatch.delenv(MULTIPROC_ENV)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    made = prepare_metrics_dir()
    assert made.startswith(str(tmp_path)) and os.environ[MULTIPROC_ENV] == made

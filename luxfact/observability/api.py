"""`GET /metrics`: Prometheus text format, for a scraper that proves itself.

Answered only with `Authorization: Bearer <LUXFACT_METRICS_TOKEN>` when that setting is
given, or, without it, to a loopback client (a scraper on the same host or pod). Anyone else
gets the same 404 as any unknown URL: the metrics name routes, volumes and timings, which are
nobody else's business, and a 401/403 would announce that the endpoint exists.
"""

import hmac
import ipaddress
import time
from collections.abc import Iterator
from datetime import UTC

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from luxfact.db.engine import Database
from luxfact.jobs import queue
from luxfact.kit import context
from luxfact.kit.time import utcnow
from luxfact.observability.metrics import multiprocess_dir
from luxfact.tenancy.models import Tenant


def allowed(request: Request, token: str) -> bool:
    if token:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode())
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def job_depth(db: Database) -> tuple[int, float]:
    """Queued jobs summed over every tenant, and the oldest one's age in seconds (0 when
    none is due). Read tenant by tenant, as the worker does: row-level security shows a
    connection one hospital's rows at a time."""
    async with db.transaction() as session:
        tenants = [row[0] for row in (await session.execute(select(Tenant.id))).all()]
    total, oldest = 0, None
    for tenant_id in tenants:
        with context.tenant_scope(tenant_id, actor="metrics"):
            async with db.transaction() as session:
                count, first = await queue.depth(session, tenant_id)
        total += count
        if first is not None:
            first = first if first.tzinfo else first.replace(tzinfo=UTC)
            oldest = first if oldest is None else min(oldest, first)
    age = max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0
    return total, age


class _Fixed:
    """A collector of values computed before the scrape is rendered."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self.metrics


async def metrics(request: Request) -> Response:
    if not allowed(request, request.state.settings.metrics_token):
        raise HTTPException(404)  # exactly what an unknown URL gets
    started = time.perf_counter()
    queued, age = await job_depth(request.state.db)
    jobs = [GaugeMetricFamily("luxfact_jobs_queued", "Queued jobs, all tenants.", queued),
            GaugeMetricFamily("luxfact_jobs_oldest_age_seconds",
                              "Age of the oldest queued job that is due (0: none).", age),
            GaugeMetricFamily("luxfact_metrics_scrape_seconds",
                              "Time to read the job table for this scrape.",
                              time.perf_counter() - started)]
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    scraped = CollectorRegistry()
    scraped.register(_Fixed(jobs))  # type: ignore[arg-type]
    body = generate_latest(registry) + generate_latest(scraped)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

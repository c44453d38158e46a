"""The service's Prometheus metrics, defined once, recorded where things happen.

With `PROMETHEUS_MULTIPROC_DIR` set (several uvicorn workers: `luxfact serve --workers N`
sets it), prometheus_client writes each process's values to files in that directory and a
scrape sums them; the variable must be set before this module is first imported, which is
why `luxfact serve` sets it before starting the workers. Without it, the values live in the
process (one worker, the tests).
"""

import os

from prometheus_client import Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Anything else is counted as "other": a client cannot mint new label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "luxfact_http_requests_total", "HTTP requests answered, by route template and status.",
    ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "luxfact_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
INVOICES_ISSUED = Counter(
    "luxfact_invoices_issued_total",
    "Invoices numbered and written, by kind (insurer, patient…; credit_note for credit notes).",
    ["kind"])
CLAIM_BATCH_LINES = Histogram(
    "luxfact_claim_batch_lines", "Lines in a claim batch frozen.",
    buckets=(10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000))
CLAIM_BATCH_FREEZE = Histogram(
    "luxfact_claim_batch_freeze_seconds", "Time to validate, write and store a claim file.",
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0))


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """One request answered; `route` is the route's path template, never the raw path."""
    method = method if method in _METHODS else "other"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)

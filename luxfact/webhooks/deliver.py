"""The `webhook.deliver` job: POST one event to one endpoint, signed.

The body is `{"id", "type", "created_at", "tenant", "data"}` (compact JSON, UTF-8); the
headers `Luxfact-Event-Id: <event id>` and `Luxfact-Signature: t=<unix seconds>,v1=<hex>`
where v1 is HMAC-SHA256 of `"<t>.<body>"` keyed with the endpoint's secret. A 2xx answer
delivers it; any other answer, a connection error or no answer within `TIMEOUT` seconds
raises, and the job queue retries it with its backoff until `max_attempts`, after which the
job is dead and the delivery shows `failed`.

A staged job (`luxfact.jobs.registry.Staged`): the delivery and its endpoint are read in one
transaction, the receiver asked with none open (no database lock or connection waits on a
receiver that hangs), a success recorded in a second one with the job's `done` mark. A
failed attempt's outcome is kept on the job (its `last_error` reads
`DeliveryFailed: HTTP 500 …`), which the delivery log reads back.
"""

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.jobs.registry import Permanent, Staged, stages
from luxfact.kit.time import utcnow
from luxfact.tenancy.repository import TenantRepository
from luxfact.webhooks import addresses
from luxfact.webhooks.service import JOB_KIND, D, E

TIMEOUT = 10.0  # seconds for the whole exchange with the receiver
USER_AGENT = "Luxfact-Webhooks/1"


class DeliveryFailed(Exception):
    """The receiver did not take the event (its status, a timeout, a connection error)."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does (Python): the signature matches and is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def body_of(payload: dict[str, Any], tenant_slug: str) -> bytes:
    event = {"id": payload["id"], "type": payload["type"],
             "created_at": payload["created_at"], "tenant": tenant_slug,
             "data": payload["data"]}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


async def post(url: str, secret: str, event_id: str, body: bytes) -> int:
    """The receiver's status code; DeliveryFailed when it did not answer in time."""
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "Luxfact-Event-Id": event_id,
               "Luxfact-Signature": signature(secret, timestamp, body)}
    try:
        # Streamed and closed unread: only the status counts, and a receiver's answer of a
        # gigabyte would otherwise be read into the worker's memory.
        async with asyncio.timeout(TIMEOUT), httpx.AsyncClient(
                timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client, \
                client.stream("POST", url, content=body, headers=headers) as response:
            return response.status_code
    except (TimeoutError, httpx.TimeoutException):
        raise DeliveryFailed(f"timeout: no answer within {TIMEOUT:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"connection failed: {type(exc).__name__}") from None


@dataclass(frozen=True)
class Outgoing:
    """What one attempt sends, read in the job's first transaction."""
    delivery_id: uuid.UUID
    url: str
    secret: str
    event_id: str
    body: bytes


async def prepare(session: AsyncSession, job: Any) -> Outgoing | None:
    """The attempt to make; None when there is none (delivered already, or the endpoint
    disabled: the delivery cancelled)."""
    try:
        delivery_id = uuid.UUID(str(job.payload["delivery_id"]))
    except (KeyError, TypeError, ValueError):
        raise Permanent("the job names no delivery") from None
    tenant_id = job.tenant_id
    delivery = (await session.execute(select(D).where(
        D.c.tenant_id == tenant_id, D.c.id == delivery_id))).first()
    if delivery is None:
        raise Permanent(f"no delivery {delivery_id}")
    if delivery.state != "pending":
        return None  # delivered (or cancelled) already
    endpoint = (await session.execute(select(E).where(
        E.c.tenant_id == tenant_id, E.c.id == delivery.endpoint_id))).first()
    if endpoint is None or not endpoint.active:
        await session.execute(update(D).where(
            D.c.tenant_id == tenant_id, D.c.id == delivery_id).values(
            state="cancelled", attempts=job.attempts,
            last_error="the endpoint was disabled"))
        return None
    tenant = await TenantRepository(session).by_id(tenant_id)
    return Outgoing(delivery_id, endpoint.url, endpoint.secret, str(delivery.event_id),
                    body_of(delivery.payload, tenant.slug if tenant else ""))


async def call(outgoing: Outgoing) -> int:
    """The receiver's 2xx status; DeliveryFailed otherwise. No transaction is open: a
    receiver that hangs holds no database lock or connection. At most 2 × TIMEOUT: the
    name's look-up, then the exchange."""
    try:  # looked up again (a name may move), within the same bound as the exchange
        async with asyncio.timeout(TIMEOUT):
            refused = await addresses.refusal(outgoing.url)
    except TimeoutError:
        raise DeliveryFailed(f"not sent: the name did not resolve within {TIMEOUT:g} s"
                             ) from None
    if refused:
        raise DeliveryFailed(f"not sent: {refused}")
    status = await post(outgoing.url, outgoing.secret, outgoing.event_id, outgoing.body)
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status} from the receiver")
    return status


async def finish(session: AsyncSession, job: Any, outgoing: Outgoing, status: int) -> None:
    await session.execute(update(D).where(
        D.c.tenant_id == job.tenant_id, D.c.id == outgoing.delivery_id).values(
        state="delivered", attempts=job.attempts, last_status=status, last_error=None,
        delivered_at=utcnow()))


stages(JOB_KIND, Staged(prepare, call, finish))

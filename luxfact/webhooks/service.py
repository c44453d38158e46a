"""Webhook use cases: emit an event in the caller's transaction, manage endpoints.

`emit` is called by the service function that makes the change, in its transaction: the
event exists exactly when the change was committed (a rolled-back change emits nothing).
It writes one delivery per endpoint that wants the event and enqueues a `webhook.deliver`
job for each; the request returns at once, the worker does the sending.

Events carry ids and business facts only: never a matricule, a name or any other identity
of the patient. Receivers read details through the API with their own key.
"""

import secrets
import uuid
from typing import Any, Literal

from sqlalchemy import bindparam, exists, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.jobs import queue
from luxfact.kit.errors import Conflict, NotFound
from luxfact.kit.time import utcnow
from luxfact.webhooks.models import WebhookDelivery, WebhookEndpoint

EventType = Literal["stay.admitted", "stay.discharged", "stay.admission_cancelled",
                    "stay.discharge_cancelled", "invoice.issued", "claim_batch.frozen",
                    "claim_batch.answered", "claim_line.rejected"]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
JOB_KIND = "webhook.deliver"
# Attempts per delivery (the job queue's backoff: 5 s, 10 s, 20 s, … at most an hour).
MAX_ATTEMPTS = 8

E = WebhookEndpoint.__table__  # type: ignore[attr-defined]
D = WebhookDelivery.__table__  # type: ignore[attr-defined]
# Read by every admission and discharge: built once, compiled once.
ACTIVE_ENDPOINTS = select(E.c.id, E.c.events).where(E.c.tenant_id == bindparam("tenant_id"),
                                                    E.c.active.is_(True))


def new_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


async def emit(session: AsyncSession, tenant_id: uuid.UUID, event_type: str,
               data: dict[str, Any]) -> uuid.UUID | None:
    """Record the event for every active endpoint of the tenant that wants it; its id, or
    None when no endpoint wants it (nothing is written then)."""
    assert event_type in EVENT_TYPES, event_type
    rows = (await session.execute(ACTIVE_ENDPOINTS, {"tenant_id": tenant_id})).all()
    targets = [row.id for row in rows if event_type in (row.events or [])]
    if not targets:
        return None
    event_id = uuid.uuid4()
    now = utcnow()
    payload = {"id": str(event_id), "type": event_type, "created_at": now.isoformat(),
               "data": data}
    for endpoint_id in targets:
        delivery_id = uuid.uuid4()
        job_id = await queue.enqueue(session, tenant_id, JOB_KIND,
                                     {"delivery_id": str(delivery_id)},
                                     max_attempts=MAX_ATTEMPTS)
        await session.execute(insert(D).values(
            tenant_id=tenant_id, id=delivery_id, endpoint_id=endpoint_id, event_id=event_id,
            event_type=event_type, payload=payload, job_id=job_id, state="pending",
            attempts=0, created_at=now))
    return event_id


async def create_endpoint(session: AsyncSession, tenant_id: uuid.UUID, *, url: str,
                          events: list[str], description: str,
                          created_by: str | None, secret: str | None = None) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(tenant_id=tenant_id, url=url, secret=secret or new_secret(),
                               events=sorted(set(events)), description=description,
                               created_by=created_by)
    session.add(endpoint)
    await session.flush()
    await record(session, "webhook.create", "webhook_endpoint", endpoint.id,
                 {"url": url, "events": endpoint.events, "secret_given": secret is not None},
                 tenant_id=tenant_id)
    return endpoint


async def endpoints(session: AsyncSession, tenant_id: uuid.UUID) -> list[WebhookEndpoint]:
    result = await session.execute(select(WebhookEndpoint).where(
        E.c.tenant_id == tenant_id).order_by(E.c.created_at, E.c.id))
    return list(result.scalars().all())


async def get_endpoint(session: AsyncSession, tenant_id: uuid.UUID,
                       endpoint_id: uuid.UUID) -> WebhookEndpoint:
    result = await session.execute(select(WebhookEndpoint).where(
        E.c.tenant_id == tenant_id, E.c.id == endpoint_id))
    endpoint = result.scalars().first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


async def update_endpoint(session: AsyncSession, tenant_id: uuid.UUID,
                          endpoint_id: uuid.UUID, changes: dict[str, Any]) -> WebhookEndpoint:
    """A new URL, events or description; deliveries still to send go to the new URL (each
    reads its endpoint when sent). A disabled endpoint stays disabled: create another."""
    endpoint = await get_endpoint(session, tenant_id, endpoint_id)
    if not endpoint.active:
        raise Conflict("This endpoint is disabled: create a new one.")
    if "events" in changes:
        changes["events"] = sorted(set(changes["events"]))
    changed = {name: value for name, value in changes.items()
               if getattr(endpoint, name) != value}
    if changed:
        await _update_active(session, tenant_id, endpoint_id, changed)
        await record(session, "webhook.update", "webhook_endpoint", endpoint_id,
                     {"fields": sorted(changed), **({"url": changed["url"]}
                                                    if "url" in changed else {})},
                     tenant_id=tenant_id)
        await session.refresh(endpoint)
    return endpoint


async def rotate_secret(session: AsyncSession, tenant_id: uuid.UUID,
                        endpoint_id: uuid.UUID, secret: str | None = None) -> WebhookEndpoint:
    """A new signing secret (the one given, or one made), at once: every delivery sent from
    now on, retries of older events included, is signed with it (the secret is read when a
    delivery is sent)."""
    endpoint = await get_endpoint(session, tenant_id, endpoint_id)
    if not endpoint.active:
        raise Conflict("This endpoint is disabled: create a new one.")
    await _update_active(session, tenant_id, endpoint_id, {"secret": secret or new_secret()})
    await record(session, "webhook.rotate_secret", "webhook_endpoint", endpoint_id,
                 {"secret_given": secret is not None}, tenant_id=tenant_id)
    await session.refresh(endpoint)
    return endpoint


async def _update_active(session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: uuid.UUID,
                         values: dict[str, Any]) -> None:
    """Change an endpoint only while it is active: checked by the UPDATE itself, which on
    PostgreSQL waits for a concurrent disabling to commit and then finds nothing to change."""
    result = await session.execute(update(E).where(
        E.c.tenant_id == tenant_id, E.c.id == endpoint_id, E.c.active.is_(True)).values(**values))
    if not result.rowcount:
        raise Conflict("This endpoint is disabled: create a new one.")


async def disable_endpoint(session: AsyncSession, tenant_id: uuid.UUID,
                           endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """No new event goes to it, and its deliveries not yet sent are cancelled; the endpoint
    and its delivery log are kept."""
    endpoint = await get_endpoint(session, tenant_id, endpoint_id)
    if endpoint.active:
        now = utcnow()
        await session.execute(update(E).where(E.c.tenant_id == tenant_id,
                                              E.c.id == endpoint_id)
                              .values(active=False, disabled_at=now))
        # Cancelled now, not when each one's next attempt comes (up to an hour away in the
        # backoff): their jobs then find them cancelled and send nothing.
        # A delivery whose attempts are all spent is failed, not pending, though its row
        # says pending (its job says dead): it keeps its last answer and error.
        from luxfact.jobs.queue import J

        spent = exists().where(J.c.tenant_id == D.c.tenant_id, J.c.id == D.c.job_id,
                               J.c.state == "dead")
        await session.execute(update(D).where(
            D.c.tenant_id == tenant_id, D.c.endpoint_id == endpoint_id,
            D.c.state == "pending", ~spent).values(state="cancelled",
                                                   last_error="the endpoint was disabled"))
        await record(session, "webhook.disable", "webhook_endpoint", endpoint_id, {},
                     tenant_id=tenant_id)
        await session.refresh(endpoint)
    return endpoint


async def deliveries(session: AsyncSession, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, *,
                     limit: int, after: tuple[Any, uuid.UUID] | None) -> list[Any]:
    """An endpoint's deliveries, newest first, each with its job's attempts and state."""
    from luxfact.jobs.queue import J

    query = (select(D, J.c.attempts.label("job_attempts"), J.c.state.label("job_state"),
                    J.c.last_error.label("job_error"), J.c.run_at.label("next_attempt_at"))
             .select_from(D.outerjoin(J, (J.c.tenant_id == D.c.tenant_id)
                                      & (J.c.id == D.c.job_id)))
             .where(D.c.tenant_id == tenant_id, D.c.endpoint_id == endpoint_id))
    if after:
        query = query.where((D.c.created_at < after[0])
                            | ((D.c.created_at == after[0]) & (D.c.id < after[1])))
    query = query.order_by(D.c.created_at.desc(), D.c.id.desc()).limit(limit)
    return list((await session.execute(query)).all())

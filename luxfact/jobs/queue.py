"""The job table's queries: enqueue in the caller's transaction, claim, finish, retry.

Every query runs as one tenant (row-level security), so the worker claims tenant by tenant:
no connection ever needs to see every hospital's rows. PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`, so several workers never take the same job.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.jobs.models import Job
from luxfact.kit import context
from luxfact.kit.time import utcnow

J = Job.__table__  # type: ignore[attr-defined]
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_MAX = timedelta(hours=1)


def backoff(attempts: int) -> timedelta:
    """5 s after the first failure, then doubling, at most an hour."""
    return min(BACKOFF_BASE * (2 ** max(0, attempts - 1)), BACKOFF_MAX)


async def enqueue(session: AsyncSession, tenant_id: uuid.UUID, kind: str,
                  payload: dict[str, Any], *, run_at: datetime | None = None,
                  max_attempts: int = 8) -> uuid.UUID:
    """A job, written in the caller's transaction: it exists exactly when the work it
    follows was committed."""
    job_id = uuid.uuid4()
    now = utcnow()
    await session.execute(insert(J).values(
        tenant_id=tenant_id, id=job_id, kind=kind, payload=payload, state="queued",
        attempts=0, max_attempts=max_attempts, run_at=run_at or now,
        request_id=context.current().request_id, created_at=now))
    return job_id


def _skip_locked(session: AsyncSession, query: Any) -> Any:
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        return query.with_for_update(skip_locked=True)
    return query  # SQLite: one writer at a time anyway


async def claim(session: AsyncSession, tenant_id: uuid.UUID, worker: str, limit: int,
                now: datetime | None = None) -> list[Any]:
    """Up to `limit` queued jobs whose time has come, marked running by `worker`."""
    now = now or utcnow()
    due = _skip_locked(session, select(J.c.id).where(
        J.c.tenant_id == tenant_id, J.c.state == "queued", J.c.run_at <= now)
        .order_by(J.c.run_at).limit(limit))
    ids = [row.id for row in (await session.execute(due)).all()]
    if not ids:
        return []
    return list((await session.execute(
        update(J).where(J.c.tenant_id == tenant_id, J.c.id.in_(ids))
        .values(state="running", locked_by=worker, locked_at=now, attempts=J.c.attempts + 1)
        .returning(J))).all())


async def hold(session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID,
               worker: str) -> Any | None:
    """Lock the job for the transaction that does its work; None if it is no longer this
    worker's (recovered and taken by another, or done)."""
    query = select(J).where(J.c.tenant_id == tenant_id, J.c.id == job_id)
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None or row.state != "running" or row.locked_by != worker:
        return None
    return row


async def done(session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    await session.execute(update(J).where(J.c.tenant_id == tenant_id, J.c.id == job_id)
                          .values(state="done", finished_at=utcnow(), locked_by=None))


async def failed(session: AsyncSession, tenant_id: uuid.UUID, job_id: uuid.UUID,
                 worker: str, error: str, *, permanent: bool = False) -> str:
    """After a failure: queued again later (backoff), or dead after max_attempts (or at
    once when no retry can help)."""
    row = (await session.execute(select(J.c.attempts, J.c.max_attempts, J.c.locked_by).where(
        J.c.tenant_id == tenant_id, J.c.id == job_id))).first()
    if row is None or row.locked_by != worker:
        return "lost"
    state = "dead" if permanent or row.attempts >= row.max_attempts else "queued"
    await session.execute(update(J).where(J.c.tenant_id == tenant_id, J.c.id == job_id).values(
        state=state, locked_by=None, locked_at=None, last_error=error[:4000],
        run_at=utcnow() + backoff(row.attempts),
        finished_at=utcnow() if state == "dead" else None))
    return state


async def release(session: AsyncSession, tenant_id: uuid.UUID, job_ids: Sequence[uuid.UUID],
                  worker: str) -> None:
    """Jobs a stopping worker claimed but did not start: queued again at once, the attempt
    not counted."""
    if job_ids:
        await session.execute(update(J).where(
            J.c.tenant_id == tenant_id, J.c.id.in_(list(job_ids)), J.c.state == "running",
            J.c.locked_by == worker).values(state="queued", locked_by=None, locked_at=None,
                                             attempts=J.c.attempts - 1))


async def recover(session: AsyncSession, tenant_id: uuid.UUID, older_than: timedelta,
                  now: datetime | None = None) -> int:
    """Running jobs whose worker died (its transaction rolled back, so the row is no longer
    locked) are queued again. A job still being worked on is locked: skipped."""
    now = now or utcnow()
    stuck = _skip_locked(session, select(J.c.id).where(
        J.c.tenant_id == tenant_id, J.c.state == "running",
        J.c.locked_at < now - older_than))
    ids = [row.id for row in (await session.execute(stuck)).all()]
    if ids:
        await session.execute(update(J).where(J.c.tenant_id == tenant_id, J.c.id.in_(ids))
                              .values(state="queued", locked_by=None, locked_at=None,
                                      run_at=now))
    return len(ids)


async def depth(session: AsyncSession, tenant_id: uuid.UUID) -> tuple[int, datetime | None]:
    """Queued jobs of the tenant and the oldest one's time (for the metrics)."""
    row = (await session.execute(select(func.count(), func.min(J.c.run_at)).where(
        J.c.tenant_id == tenant_id, J.c.state == "queued"))).one()
    return row[0], row[1]

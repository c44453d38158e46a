"""Job kinds of the tests: each leaves an audit event per run, so runs can be counted."""

import asyncio
import os

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.jobs.registry import Permanent, Staged, handles, stages
from luxfact.kit import context


@handles("test.effect")
async def effect(session: AsyncSession, job: object) -> None:
    # The job runs as its own tenant: the audit event lands in that hospital.
    assert context.current_tenant_id() == job.tenant_id  # type: ignore[attr-defined]
    await record(session, "test.job_ran", "job", job.id,  # type: ignore[attr-defined]
                 {"pid": os.getpid()})


@handles("test.slow")
async def slow(session: AsyncSession, job: object) -> None:
    await record(session, "test.job_ran", "job", job.id, {})  # type: ignore[attr-defined]
    await asyncio.sleep(float(job.payload.get("seconds", 1)))  # type: ignore[attr-defined]


@handles("test.fail")
async def fail(session: AsyncSession, job: object) -> None:
    await record(session, "test.job_ran", "job", job.id, {})  # type: ignore[attr-defined]
    raise RuntimeError("the receiving system is down")


@handles("test.permanent")
async def permanent(session: AsyncSession, job: object) -> None:
    raise Permanent("the payload names no invoice")


async def _prepare(session: AsyncSession, job: object) -> dict | None:
    payload = job.payload  # type: ignore[attr-defined]
    await record(session, "test.job_prepared", "job", job.id, {})  # type: ignore[attr-defined]
    return None if payload.get("nothing") else dict(payload)


async def _call(plan: dict) -> str:
    STAGED_CALLS.append(plan)
    if CALLED is not None:  # a test waiting for the call to be under way
        CALLED.set()
    await asyncio.sleep(float(plan.get("seconds", 0)))
    if plan.get("fail"):
        raise RuntimeError("the receiver answered 503")
    return "answered"


async def _finish(session: AsyncSession, job: object, plan: dict, outcome: str) -> None:
    await record(session, "test.job_ran", "job", job.id,  # type: ignore[attr-defined]
                 {"outcome": outcome})


STAGED_CALLS: list[dict] = []
CALLED: asyncio.Event | None = None  # made by the test, in its own event loop
stages("test.staged", Staged(_prepare, _call, _finish))

"""Job kinds of the tests: each leaves an audit event per run, so runs can be counted."""

import asyncio
import os

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.jobs.registry import Permanent, handles
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

"""The job worker: once per job, retries with backoff, recovery after a crash, shutdown."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from luxfact.audit.models import AuditEvent
from luxfact.db.engine import Database
from luxfact.jobs import queue
from luxfact.jobs.models import Job
from luxfact.jobs.worker import Worker
from luxfact.kit import context
from luxfact.settings import Settings
from tests.conftest import BACKEND, Hospitals
from tests.jobs import kinds  # registers the tests' job kinds

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app_db(settings: Settings) -> Database:
    db = Database(settings.effective_app_database_url, pool_size=8)
    yield db  # type: ignore[misc]
    await db.dispose()


async def enqueue(db: Database, tenant_id: uuid.UUID, kind: str, count: int = 1,
                  **payload: object) -> list[uuid.UUID]:
    with context.tenant_scope(tenant_id, actor="test"):
        async with db.transaction() as session:
            return [await queue.enqueue(session, tenant_id, kind, dict(payload),
                                        max_attempts=3) for _ in range(count)]


async def runs(db: Database, tenant_id: uuid.UUID, job_ids: list[uuid.UUID]) -> dict[str, int]:
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            rows = await session.execute(
                select(AuditEvent.object_id, func.count()).where(
                    AuditEvent.tenant_id == tenant_id, AuditEvent.action == "test.job_ran",
                    AuditEvent.object_id.in_([str(j) for j in job_ids]))
                .group_by(AuditEvent.object_id))
            return {str(object_id): count for object_id, count in rows.all()}


async def jobs_of(db: Database, tenant_id: uuid.UUID, job_ids: list[uuid.UUID]) -> list[Job]:
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            return list((await session.exec(select(Job).where(  # type: ignore[call-overload]
                Job.tenant_id == tenant_id, Job.id.in_(job_ids)))).scalars().all())


async def drain(worker: Worker, rounds: int = 200) -> None:
    for _ in range(rounds):
        await worker.run_once()
        if worker.running:
            await asyncio.wait(worker.running)
        else:
            return


async def test_a_job_runs_once_as_its_tenant_and_only_if_committed(
        app_db: Database, hospitals: Hospitals) -> None:
    tenant = hospitals.a.id
    with context.tenant_scope(tenant, actor="test"), pytest.raises(RuntimeError):
        async with app_db.transaction() as session:
            rolled_back = await queue.enqueue(session, tenant, "test.effect", {})
            raise RuntimeError("the request failed")
    ids = await enqueue(app_db, tenant, "test.effect", 3)
    worker = Worker(app_db, concurrency=2, tenants=[tenant])
    await drain(worker)
    assert await runs(app_db, tenant, [*ids, rolled_back]) == {str(i): 1 for i in ids}
    assert {job.state for job in await jobs_of(app_db, tenant, ids)} == {"done"}
    assert await jobs_of(app_db, tenant, [rolled_back]) == []
    # The other hospital sees none of these jobs.
    assert await jobs_of(app_db, hospitals.b.id, ids) == []


async def test_failures_are_retried_with_backoff_then_dead(app_db: Database,
                                                           hospitals: Hospitals) -> None:
    tenant = hospitals.a.id
    [failing] = await enqueue(app_db, tenant, "test.fail")
    [hopeless] = await enqueue(app_db, tenant, "test.permanent")
    worker = Worker(app_db, tenants=[tenant])
    await drain(worker)
    by_id = {job.id: job for job in await jobs_of(app_db, tenant, [failing, hopeless])}
    assert by_id[hopeless].state == "dead" and "names no invoice" in by_id[hopeless].last_error
    first = by_id[failing]
    assert (first.state, first.attempts) == ("queued", 1)
    assert "receiving system is down" in first.last_error
    assert timedelta(seconds=4) < first.run_at - first.locked_at if first.locked_at else True
    # Its effect rolled back with it: the audit event of the failed run is not there.
    assert await runs(app_db, tenant, [failing]) == {}
    # Due again (as if the backoff had passed): fails again, then dies at max_attempts (3).
    for attempt in (2, 3):
        with context.tenant_scope(tenant):
            async with app_db.transaction() as session:
                await session.execute(queue.J.update().where(queue.J.c.id == failing)
                                      .values(run_at=queue.utcnow()))
        await drain(worker)
        [job] = await jobs_of(app_db, tenant, [failing])
        assert job.attempts == attempt
    assert job.state == "dead" and job.finished_at is not None
    assert queue.backoff(1) == timedelta(seconds=5) and queue.backoff(3) == timedelta(seconds=20)
    assert queue.backoff(30) == timedelta(hours=1)


async def test_stop_lets_running_jobs_finish(app_db: Database, hospitals: Hospitals) -> None:
    ids = await enqueue(app_db, hospitals.a.id, "test.slow", 2, seconds=0.3)
    worker = Worker(app_db, concurrency=4, poll=0.05, grace=5, tenants=[hospitals.a.id])
    serving = asyncio.create_task(worker.serve())
    for _ in range(100):
        if len(worker.running) == 2:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(serving, 10)
    assert {job.state for job in await jobs_of(app_db, hospitals.a.id, ids)} == {"done"}


@pytest.mark.skipif(BACKEND != "postgres", reason="on SQLite every transaction takes the "
                    "write lock (BEGIN IMMEDIATE): the worker's loop waits for the running "
                    "job, so a stop is seen only once it ends")
async def test_a_stop_past_the_grace_period_releases_the_job(app_db: Database,
                                                             hospitals: Hospitals) -> None:
    [job_id] = await enqueue(app_db, hospitals.a.id, "test.slow", seconds=5)
    worker = Worker(app_db, poll=0.05, grace=0.2, tenants=[hospitals.a.id])
    serving = asyncio.create_task(worker.serve())
    for _ in range(100):
        if worker.running:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await asyncio.wait_for(serving, 10)
    [job] = await jobs_of(app_db, hospitals.a.id, [job_id])
    assert (job.state, job.attempts, job.locked_by) == ("queued", 0, None)
    assert await runs(app_db, hospitals.a.id, [job_id]) == {}  # its work rolled back


@pytest.mark.skipif(BACKEND != "postgres", reason="SKIP LOCKED and concurrent workers: "
                                                  "PostgreSQL")
async def test_three_workers_run_each_job_exactly_once(app_db: Database,
                                                       hospitals: Hospitals) -> None:
    ids = await enqueue(app_db, hospitals.a.id, "test.effect", 150)
    ids += await enqueue(app_db, hospitals.b.id, "test.effect", 50)
    # Only these two hospitals: the suite's other tests leave jobs of their own behind.
    mine = [hospitals.a.id, hospitals.b.id]
    workers = [Worker(app_db, concurrency=3, poll=0.02, tenants=mine) for _ in range(3)]
    serving = [asyncio.create_task(w.serve()) for w in workers]
    for _ in range(500):
        if sum(w.completed for w in workers) >= 200:
            break
        await asyncio.sleep(0.02)
    for w in workers:
        w.stop()
    await asyncio.gather(*serving)
    counted = {**await runs(app_db, hospitals.a.id, ids), **await runs(app_db, hospitals.b.id,
                                                                         ids)}
    assert counted == {str(i): 1 for i in ids}
    assert sum(1 for w in workers if w.completed) >= 2  # the work was shared


async def worker_process_running(app_db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID,
                                 settings: Settings) -> subprocess.Popen:
    """A worker process (tests/jobs/run_worker.py) once it is inside the job."""
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.jobs.run_worker", settings.effective_app_database_url,
         str(tenant_id)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL)
    for _ in range(300):
        [job] = await jobs_of(app_db, tenant_id, [job_id])
        if job.state == "running":
            return process
        await asyncio.sleep(0.05)
    process.kill()
    raise AssertionError(f"the worker never started the job: {job.state}")


@pytest.mark.skipif(BACKEND != "postgres", reason="a killed connection's rollback: PostgreSQL")
async def test_a_worker_killed_mid_job_leaves_it_to_be_run_once(
        app_db: Database, hospitals: Hospitals, settings: Settings) -> None:
    [job_id] = await enqueue(app_db, hospitals.a.id, "test.slow", seconds=30)
    process = await worker_process_running(app_db, hospitals.a.id, job_id, settings)
    try:
        await asyncio.sleep(0.3)  # inside the job, its audit event written, not committed
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
    finally:
        if process.poll() is None:
            process.kill()
    assert await runs(app_db, hospitals.a.id, [job_id]) == {}  # rolled back with the process
    with context.tenant_scope(hospitals.a.id):
        async with app_db.transaction() as session:
            await session.execute(queue.J.update().where(queue.J.c.id == job_id)
                                  .values(payload={"seconds": 0}))
    worker = Worker(app_db, stuck_after=timedelta(seconds=1), poll=0.05,
                    tenants=[hospitals.a.id])
    await asyncio.sleep(1.1)
    await drain(worker)
    [job] = await jobs_of(app_db, hospitals.a.id, [job_id])
    assert (job.state, job.attempts) == ("done", 2)
    assert await runs(app_db, hospitals.a.id, [job_id]) == {str(job_id): 1}


@pytest.mark.skipif(BACKEND != "postgres", reason="on SQLite every transaction takes the "
                    "write lock: the test cannot see the job running while it runs")
async def test_sigterm_lets_the_running_job_finish_then_exits(
        app_db: Database, hospitals: Hospitals, settings: Settings) -> None:
    [job_id] = await enqueue(app_db, hospitals.a.id, "test.slow", seconds=1.5)
    process = await worker_process_running(app_db, hospitals.a.id, job_id, settings)
    try:
        process.send_signal(signal.SIGTERM)  # as an orchestrator stops a pod
        code = await asyncio.to_thread(process.wait, 20)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    [job] = await jobs_of(app_db, hospitals.a.id, [job_id])
    assert (job.state, job.attempts) == ("done", 1)  # finished, not released nor retried
    assert await runs(app_db, hospitals.a.id, [job_id]) == {str(job_id): 1}


async def actions(db: Database, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[str]:
    with context.tenant_scope(tenant_id):
        async with db.transaction() as session:
            rows = await session.execute(select(AuditEvent.action).where(
                AuditEvent.tenant_id == tenant_id, AuditEvent.object_id == str(job_id))
                .order_by(AuditEvent.at))
            return [row[0] for row in rows.all()]


async def test_a_staged_job_calls_out_between_two_transactions(
        app_db: Database, hospitals: Hospitals) -> None:
    """Prepared, called with no transaction open, finished with its `done` mark; nothing to
    call is done at once; a failed call is retried; a job recovered by another worker
    during the call is not finished by this one."""
    tenant = hospitals.a.id
    [called] = await enqueue(app_db, tenant, "test.staged", seconds=0.5)
    [nothing] = await enqueue(app_db, tenant, "test.staged", nothing=True)
    [failing] = await enqueue(app_db, tenant, "test.staged", fail=True)
    worker = Worker(app_db, tenants=[tenant])
    kinds.STAGED_CALLS.clear()
    kinds.CALLED = asyncio.Event()
    draining = asyncio.create_task(drain(worker))
    await asyncio.wait_for(kinds.CALLED.wait(), 10)
    # During the call the database takes a write (on SQLite a transaction of the worker's
    # would hold its only write lock until the call ended).
    started = asyncio.get_running_loop().time()
    with context.tenant_scope(tenant, actor="test"):
        async with app_db.transaction() as session:
            await queue.enqueue(session, tenant, "test.other", {})
    assert asyncio.get_running_loop().time() - started < 0.3
    await draining
    assert await actions(app_db, tenant, called) == ["test.job_prepared", "test.job_ran"]
    assert await actions(app_db, tenant, nothing) == ["test.job_prepared"]
    assert await actions(app_db, tenant, failing) == ["test.job_prepared"]
    by_id = {job.id: job for job in await jobs_of(app_db, tenant, [called, nothing, failing])}
    assert (by_id[called].state, by_id[nothing].state) == ("done", "done")
    assert (by_id[failing].state, by_id[failing].attempts) == ("queued", 1)
    assert "answered 503" in by_id[failing].last_error
    assert sorted(plan.get("fail", False) for plan in kinds.STAGED_CALLS) == [False, True]

    [taken] = await enqueue(app_db, tenant, "test.staged", seconds=0.5)
    kinds.STAGED_CALLS.clear()
    kinds.CALLED = asyncio.Event()
    draining = asyncio.create_task(drain(worker))
    await asyncio.wait_for(kinds.CALLED.wait(), 10)
    with context.tenant_scope(tenant):  # recovered and claimed by another worker meanwhile
        async with app_db.transaction() as session:
            await session.execute(queue.J.update().where(queue.J.c.id == taken)
                                  .values(locked_by="another-worker"))
    await draining
    assert await actions(app_db, tenant, taken) == ["test.job_prepared"]
    [job] = await jobs_of(app_db, tenant, [taken])
    assert (job.state, job.locked_by) == ("running", "another-worker")

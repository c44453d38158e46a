"""The job worker: claims jobs tenant by tenant and runs each in one transaction.

A job's work and its `done` mark commit together, with the job row locked: if the worker
dies mid-job, PostgreSQL rolls the work back and releases the row, and `recover` queues it
again after `stuck_after`; two workers can never both complete it (the second finds it
done or taken). A `Staged` job (a webhook delivery) waits on another system between two
such transactions, with none open. On SIGTERM the worker stops claiming, lets running jobs
finish within the grace period, and releases what it claimed but had not started.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from luxfact.db.engine import Database
from luxfact.jobs import queue
from luxfact.jobs.registry import HANDLERS, Permanent, Staged
from luxfact.kit import context
from luxfact.tenancy.models import Tenant

log = logging.getLogger("luxfact.jobs")


class Worker:
    def __init__(self, db: Database, *, concurrency: int = 4, poll: float = 1.0,
                 stuck_after: timedelta = timedelta(minutes=10), grace: float = 30.0,
                 tenants: Sequence[uuid.UUID] | None = None) -> None:
        self.db = db
        # Only these hospitals' jobs (a worker dedicated to a large hospital); None: all.
        self.only = list(tenants) if tenants is not None else None
        self.concurrency = concurrency
        self.poll = poll
        self.stuck_after = stuck_after
        self.grace = grace
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.stopping = asyncio.Event()
        self.running: set[asyncio.Task[None]] = set()
        # The running jobs of each hospital: one may hold all the slots but one (see
        # `run_once`).
        self.running_of: dict[uuid.UUID, set[asyncio.Task[None]]] = {}
        self.completed = 0
        self._last_recovery = 0.0
        self._rounds = 0

    async def _tenants(self) -> list[uuid.UUID]:
        if self.only is not None:
            return self.only
        async with self.db.transaction() as session:
            rows = await session.execute(select(Tenant.id).where(Tenant.active))
            return [row[0] for row in rows.all()]

    async def run_once(self) -> int:
        """One round over the tenants: recover stuck jobs (now and then), claim what there is
        room for, start it. Returns how many jobs were started."""
        started = 0
        recover = time.monotonic() - self._last_recovery > min(
            60.0, self.stuck_after.total_seconds() / 2)
        tenants = await self._tenants()
        # Each round starts one hospital further, and while other hospitals exist none may
        # hold every slot: a receiver that hangs (ten seconds a delivery) with a backlog
        # would otherwise keep the others' jobs waiting behind all of its own.
        if tenants:
            shift = self._rounds % len(tenants)
            tenants = tenants[shift:] + tenants[:shift]
        self._rounds += 1
        most = self.concurrency - 1 if len(tenants) > 1 and self.concurrency > 1 else (
            self.concurrency)
        for tenant_id in tenants:
            with context.tenant_scope(tenant_id, actor=f"worker:{self.name}"):
                if recover:
                    async with self.db.transaction() as session:
                        count = await queue.recover(session, tenant_id, self.stuck_after)
                    if count:
                        log.warning("jobs recovered", extra={"fields": {"count": count}})
                own = self.running_of.setdefault(tenant_id, set())
                room = min(self.concurrency - len(self.running), most - len(own))
                if room <= 0 or self.stopping.is_set():
                    continue  # the next hospitals are still recovered
                async with self.db.transaction() as session:
                    claimed = await queue.claim(session, tenant_id, self.name, room)
            for job in claimed:
                task = asyncio.create_task(self._run(job))
                self.running.add(task)
                task.add_done_callback(self.running.discard)
                own.add(task)
                task.add_done_callback(own.discard)
                started += 1
        if recover:
            self._last_recovery = time.monotonic()
        return started

    async def _run(self, job: Any) -> None:
        # A context of its own (the task's copy of the context variable would otherwise
        # share the worker loop's RequestInfo, which moves from tenant to tenant), carrying
        # the id of the request that enqueued the job into its log lines.
        context.install(context.RequestInfo(request_id=job.request_id or uuid.uuid4().hex))
        with context.tenant_scope(job.tenant_id, actor=f"job:{job.id}"):
            try:
                if not await self._work(job):
                    return  # recovered and taken by another worker, or done
                self.completed += 1
                log.info("job done", extra={"fields": {"job": str(job.id), "kind": job.kind}})
            except asyncio.CancelledError:
                # Stopped at the end of the grace period: the work rolled back; queued again.
                async with self.db.transaction() as session:
                    await queue.release(session, job.tenant_id, [job.id], self.name)
                raise
            except Exception as error:  # any failure of a job is recorded, then retried
                reason = f"{type(error).__name__}: {error}"
                async with self.db.transaction() as session:
                    state = await queue.failed(session, job.tenant_id, job.id, self.name,
                                               reason, permanent=isinstance(error, Permanent))
                log.warning("job failed", extra={"fields": {
                    "job": str(job.id), "kind": job.kind, "state": state,
                    "error": reason[:300]}})

    async def _work(self, job: Any) -> bool:
        """The job's work and its `done` mark; False when the job is no longer this
        worker's."""
        handler = HANDLERS.get(job.kind)
        async with self.db.transaction() as session:
            held = await queue.hold(session, job.tenant_id, job.id, self.name)
            if held is None:
                return False
            if handler is None:
                raise Permanent(f"no handler for job kind {job.kind!r}")
            plan = None
            if isinstance(handler, Staged):
                plan = await handler.prepare(session, held)
            else:
                await handler(session, held)
            if plan is None:  # done in this transaction
                await queue.done(session, job.tenant_id, job.id)
                return True
        assert isinstance(handler, Staged)
        outcome = await handler.call(plan)  # no transaction open: nothing waits with it
        async with self.db.transaction() as session:
            if await queue.hold(session, job.tenant_id, job.id, self.name) is None:
                return False  # recovered meanwhile: its next run calls again
            await handler.finish(session, held, plan, outcome)
            await queue.done(session, job.tenant_id, job.id)
        return True

    async def serve(self) -> None:
        """Run until `stop()`: then finish or release the running jobs."""
        while not self.stopping.is_set():
            started = 0
            try:
                started = await self.run_once()
            except Exception:  # the database restarting: log, wait, go on
                log.exception("worker round failed")
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.poll)
            elif len(self.running) >= self.concurrency:
                await asyncio.wait(self.running, return_when=asyncio.FIRST_COMPLETED)
        if self.running:
            _, late = await asyncio.wait(self.running, timeout=self.grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)

    async def serve_until_signalled(self) -> None:
        """`serve()` until SIGTERM or SIGINT (what `luxfact worker` runs)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        await self.serve()

    def stop(self) -> None:
        self.stopping.set()

"""A worker process with the tests' job kinds, run as `luxfact worker` runs one (for the
SIGKILL and SIGTERM tests)."""

import asyncio
import sys
import uuid
from datetime import timedelta

from luxfact.db.engine import Database
from luxfact.jobs.worker import Worker
from tests.jobs import kinds  # noqa: F401 (registers the kinds)


async def main(url: str, tenant: str) -> None:
    db = Database(url, pool_size=4)
    worker = Worker(db, concurrency=2, poll=0.05, stuck_after=timedelta(seconds=1),
                    tenants=[uuid.UUID(tenant)])
    print("ready", flush=True)
    await worker.serve_until_signalled()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

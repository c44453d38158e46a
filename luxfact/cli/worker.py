"""`luxfact worker`: the job worker as its own process (several may run at once)."""

import asyncio
from datetime import timedelta

import typer

from luxfact.cli.common import fail, settings
from luxfact.cli.serve import require_database
from luxfact.db.engine import Database
from luxfact.jobs import handlers  # noqa: F401 (registers the job kinds)
from luxfact.jobs.worker import Worker
from luxfact.kit import logging as luxlog
from luxfact.tenancy.repository import TenantRepository
from luxfact.webhooks import addresses as webhook_addresses


def worker(
    concurrency: int = typer.Option(4, min=1, max=64, help="Jobs run at once."),
    poll: float = typer.Option(1.0, min=0.05, help="Seconds between looks at the queue."),
    # At least 60: a staged job's call (a webhook's: 10 s for the name's look-up, 10 s for
    # the exchange) holds no row lock that shows it alive, and the job's clock starts when
    # it is claimed: a shorter wait could queue it again while it runs.
    stuck_after: int = typer.Option(600, min=60, help="Seconds after which a running job "
                                                      "whose worker died is queued again."),
    grace: float = typer.Option(30.0, min=0, help="Seconds running jobs get to finish on "
                                                  "SIGTERM before they are released."),
    tenant: list[str] = typer.Option([], help="Only this hospital's jobs (slug; repeat for "
                                              "several). Default: every hospital."),
) -> None:
    """Run queued jobs until SIGTERM or SIGINT (then finish or release them)."""
    config = settings()
    require_database(config)
    luxlog.configure(config.log_level)
    webhook_addresses.configure(config.webhook_networks)

    async def main() -> None:
        db = Database(config.effective_app_database_url, pool_size=concurrency + 2,
                      tenant_setting_mode=config.tenant_setting_mode,
                      statement_cache_size=config.db_statement_cache)
        only = None
        if tenant:
            async with db.transaction() as session:
                found = {t.slug: t.id for t in await TenantRepository(session).all()}
            unknown = sorted(set(tenant) - set(found))
            if unknown:
                await db.dispose()
                fail(f"no such hospital: {', '.join(unknown)}")
            only = [found[slug] for slug in tenant]
        runner = Worker(db, concurrency=concurrency, poll=poll,
                        stuck_after=timedelta(seconds=stuck_after), grace=grace, tenants=only)
        try:
            await runner.serve_until_signalled()
        finally:
            await db.dispose()

    asyncio.run(main())

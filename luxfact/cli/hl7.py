"""`luxfact hl7`: the log of HL7 v2 messages received."""

from datetime import timedelta

import typer

from luxfact.cli.common import console, owner_db, run, settings
from luxfact.hl7.repository import HL7Repository
from luxfact.kit import context
from luxfact.kit.time import utcnow
from luxfact.settings import Settings
from luxfact.tenancy.repository import TenantRepository

app = typer.Typer(help="HL7 v2 messages received.", no_args_is_help=True)


@app.command()
def purge(days: int | None = typer.Option(
        None, "--days", min=1, help="Default: LUXFACT_HL7_RETENTION_DAYS (90).")) -> None:
    """Remove the messages received more than DAYS days ago, in every hospital (they hold
    patient data: keep them no longer than needed). Run it daily."""
    config = settings()
    keep = days if days is not None else config.hl7_retention_days
    removed = run(_purge(config, keep))
    for slug, count in removed:
        console.print(f"{slug}: {count} message(s) removed")
    console.print(f"kept: the last {keep} day(s)")


async def _purge(config: Settings, days: int) -> list[tuple[str, int]]:
    before = utcnow() - timedelta(days=days)
    out = []
    async with owner_db(config) as db:
        async with db.transaction() as session:
            tenants = [(t.id, t.slug) for t in await TenantRepository(session).all()]
        for tenant_id, slug in tenants:
            # Row-level security: each hospital's rows are reached as that hospital.
            with context.tenant_scope(tenant_id, actor="cli"):
                async with db.transaction() as session:
                    out.append((slug, await HL7Repository(session, tenant_id).purge(before)))
    return out

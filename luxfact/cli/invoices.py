"""`luxfact invoices`: documents of a whole period, out of the web process."""

import re
import time
from datetime import datetime

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from luxfact.billing import documents, rendering
from luxfact.billing.repository import BillingRepository
from luxfact.cli.common import as_tenant, console, err, fail, owner_db, run, settings
from luxfact.kit import context
from luxfact.kit.time import month_bounds
from luxfact.settings import Settings

app = typer.Typer(help="Invoice documents.", no_args_is_help=True)
PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """A YYYY-MM month as [start, end) in Luxembourg time."""
    match = PERIOD.match(period)
    if not match:
        fail(f"--period {period!r}: expected YYYY-MM, e.g. 2026-11")
    return month_bounds(int(match[1]), int(match[2]))


@app.command()
def render(tenant: str = typer.Option(..., "--tenant", help="The hospital's slug."),
           period: str = typer.Option(..., "--period", help="The month issued, YYYY-MM."),
           workers: int = typer.Option(0, help="Rendering processes (0: one per core).")) -> None:
    """Render and archive the PDF of every patient invoice and credit note issued in a month
    that has none yet. Safe to rerun: archived documents are never rendered again."""
    start, end = period_bounds(period)
    config = settings()
    if workers:
        config = Settings(**{**config.model_dump(), "render_workers": workers})
    began = time.perf_counter()
    try:
        count = run(_render(config, tenant, start, end))
    finally:
        rendering.shutdown()
    elapsed = time.perf_counter() - began
    rate = f" ({count / elapsed:.1f} documents/s)" if count else ""
    console.print(f"{tenant} {period}: {count} document(s) rendered and archived in "
                  f"{elapsed:.1f} s{rate}")


async def _render(config: Settings, slug: str, start: datetime, end: datetime) -> int:
    async with owner_db(config) as db:
        async with as_tenant(db, slug) as (session, tenant):
            ids = await BillingRepository(session, tenant.id).issued_in(
                start, end, without_document=True, limit=10_000_000, after=None,
                kinds=documents.PRINTED)
        with context.tenant_scope(tenant.id, actor="cli"), Progress(
                TextColumn("rendering"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=err, transient=True) as progress:
            task = progress.add_task("pdf", total=len(ids))
            return await documents.render_pending(
                db, tenant, start, end, config, lambda n: progress.advance(task, n))

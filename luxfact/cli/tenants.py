"""`luxfact tenants ...`: the hospitals served, from their TOML files."""

from pathlib import Path

import typer

from luxfact.cli.common import console, err, fail, owner_db, run, settings
from luxfact.tenancy.config import read_tenant_dir
from luxfact.tenancy.service import sync_tenants

app = typer.Typer(help="Tenants (hospitals).", no_args_is_help=True)


@app.command()
def sync(
    directory: Path | None = typer.Argument(None, help="Default: LUXFACT_TENANTS_DIR."),
) -> None:
    """Create or update tenants from DIR/*.toml. All files are checked first; one bad file
    refuses the whole sync, so no tenant is ever half-updated."""
    config = settings()
    directory = directory or config.tenants_dir
    configs, problems = read_tenant_dir(directory)
    if problems:
        for problem in problems:
            err.print(f"{directory / problem.path.name}: {problem.field}: {problem.reason}")
        fail(f"{len(problems)} problem(s) in {directory}; nothing was changed")
    if not configs:
        fail(f"no tenant file (*.toml) in {directory}")

    async def _sync() -> list[str]:
        async with owner_db(config) as db, db.transaction() as session:
            return [str(c) for c in await sync_tenants(session, configs)]

    for line in run(_sync()):
        console.print(line)
    for tenant_config in configs:
        if not tenant_config.data.iban:
            err.print(f"warning: {tenant_config.slug} has no IBAN: its invoices carry no bank "
                      "details and no payment QR code")

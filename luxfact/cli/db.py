"""`luxfact db ...`: the schema."""

import typer

from luxfact.cli.common import console, run, settings
from luxfact.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database (as its owner) and grant the application role."""
    config = settings()
    run(migrate.upgrade(config, revision))
    target = migrate.head_revision() if revision == "head" else revision
    console.print(f"database at revision {target}")

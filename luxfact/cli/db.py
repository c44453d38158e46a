"""`luxfact db ...`: the schema."""

import typer

from luxfact.cli.common import console, run, settings
from luxfact.db import migrate

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database (as its owner) and grant the application role."""
    config = settings()
    reached = run(migrate.upgrade(config, revision))
    console.print(f"database at revision {reached}")
    if migrate.is_revision(revision) and reached != revision:
        # Alembic treats an older target as done: say so rather than name the target.
        console.print(f"(asked for {revision}: `db upgrade` never goes back; the database is "
                      "already past it)")

"""The `luxfact` command."""

import typer
from rich.table import Table

from luxfact.cli import claims, db, hl7, invoices, privacy, tariffs, tenants, users
from luxfact.cli.backup import backup, restore
from luxfact.cli.common import console, run, settings
from luxfact.cli.demo import seed_demo, seed_demo_tariffs
from luxfact.cli.mllp import mllp
from luxfact.cli.serve import serve
from luxfact.cli.worker import worker

app = typer.Typer(help="Luxfact: hospital admission and billing.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.command()(serve)
app.command()(mllp)
app.command()(worker)
app.command()(backup)
app.command()(restore)
app.add_typer(db.app, name="db")
app.add_typer(claims.app, name="claims")
app.add_typer(hl7.app, name="hl7")
app.add_typer(invoices.app, name="invoices")
app.add_typer(privacy.app, name="privacy")
app.add_typer(tariffs.app, name="tariffs")
app.add_typer(tenants.app, name="tenants")
app.add_typer(users.users_app, name="users")
app.add_typer(users.keys_app, name="apikeys")


@app.command()
def demo() -> None:
    """Seed the demo tariffs (on an empty catalogue), users and API keys, idempotently,
    and show the logins."""
    config = settings()
    console.print(run(seed_demo_tariffs(config)))
    rows = run(seed_demo(config))
    if not rows:
        console.print("no demo tenant (slug 'demo-...'): run `luxfact tenants sync` first")
        return
    table = Table(title="Demo logins (for the demo hospitals only)")
    for column in ("tenant", "role", "email", "password"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row["tenant"], row["role"], row["email"], row["password"])
    console.print(table)
    console.print("Demo API keys (Authorization: Bearer <key>):")
    for row in rows:
        # Plain print: a key must never be wrapped or styled, it is meant to be copied.
        print(f"  {row['tenant']:<10} {row['role']:<12} {row['api_key']}")


if __name__ == "__main__":
    app()

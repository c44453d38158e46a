"""`luxfact tariffs ...`: import the catalogue, look up a price."""

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from luxfact.cli.common import as_tenant, console, err, fail, owner_db, run, settings
from luxfact.settings import Settings
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import service
from luxfact.tariffs.package import Package, count_rows, read_hospital_prices, read_package

app = typer.Typer(help="Tariff catalogue (CNS nomenclatures, key letters, cotes).",
                  no_args_is_help=True)

DEMO_PACKAGE = Path(__file__).resolve().parent.parent / "tariffs" / "demo"
SHOWN = 15  # keys listed per kind of change; the counts say the rest


def _read_with_progress(directory: Path) -> Package:
    total = count_rows(directory) if directory.is_dir() else 0
    with Progress(TextColumn("reading {task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=total < 20000) as progress:
        task = progress.add_task(directory.name, total=total)
        package = read_package(directory, lambda n: progress.advance(task, n))
    return package


def _print_diff(changes: service.PackageDiff) -> None:
    table = Table(title="Changes to the catalogue")
    for column in ("table", "added", "changed", "withdrawn"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, counts in changes.summary().items():
        table.add_row(name.removeprefix("tariff_"), *(str(v) for v in counts.values()))
    console.print(table)
    for name, diff in changes.tables.items():
        label = name.removeprefix("tariff_")
        for kind, keys in (("+", diff.added), ("-", diff.withdrawn)):
            for key in keys[:SHOWN]:
                console.print(f"  {kind} {label} {' '.join(str(k) for k in key)}")
            if len(keys) > SHOWN:
                console.print(f"  {kind} {label}: … and {len(keys) - SHOWN} more")
        for key, fields in diff.changed[:SHOWN]:
            console.print(f"  ~ {label} {' '.join(str(k) for k in key)}: {', '.join(fields)}")
        if len(diff.changed) > SHOWN:
            console.print(f"  ~ {label}: … and {len(diff.changed) - SHOWN} more")


async def import_package(config: Settings, package: Package, *, dry_run: bool, yes: bool,
                         confirm: bool = True, show_diff: bool = True) -> str:
    async with owner_db(config) as db, db.transaction() as session:
        # Held until this import ends (its prompt included): another one waits, then sees
        # what this one applied, instead of applying a diff made before it.
        await service.lock_imports(session)
        changes = await service.diff(session, package)
        if show_diff:
            _print_diff(changes)
        if changes.empty:
            return "nothing to change: the catalogue already matches the package"
        if dry_run:
            await session.rollback()
            return "dry run: nothing was applied"
        if not yes and not (confirm and typer.confirm("Apply these changes?", default=False)):
            await session.rollback()
            return "not applied"
        version = await service.apply(session, package, changes)
        return f"applied: catalogue version {version}"


@app.command("import")
def import_(
    directory: Path = typer.Argument(..., help="The package: a directory of CSV files."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes, apply nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
) -> None:
    """Stage a tariff package, show what it adds, changes and withdraws, and apply it on
    confirmation. A package with any bad row is refused whole, every error listed."""
    config = settings()
    package = _read_with_progress(directory)
    if package.problems:
        for problem in package.problems:
            err.print(str(problem))
        fail(f"{len(package.problems)} problem(s) in {directory}; nothing was applied")
    console.print(run(import_package(config, package, dry_run=dry_run, yes=yes)))


@app.command()
def price(
    code: str = typer.Argument(..., help="Act code, e.g. N101."),
    on: str = typer.Option(..., "--date", help="The act's date, YYYY-MM-DD."),
    quantity: int = typer.Option(1, min=1, max=999),
    tenant: str | None = typer.Option(
        None, "--tenant", help="A hospital (slug): its own price list too, as its staff "
        "and its invoices see it (without it, the national catalogue alone)."),
) -> None:
    """Explain the tariff price of an act on a date; the last line is the amount alone."""
    config = settings()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", on):
            raise ValueError(on)  # fromisoformat would also take 20230901 or 2023-W35-5
        day = date.fromisoformat(on)
    except ValueError:
        fail(f"--date {on!r} is not a date (YYYY-MM-DD)", 2)

    async def _snapshot() -> cat.TariffSnapshot:
        async with owner_db(config) as db:
            if tenant is None:
                async with db.transaction() as session:
                    return await service.snapshot(session)
            async with as_tenant(db, tenant) as (session, found):
                return await service.snapshot(session, found.id)

    snapshot = run(_snapshot())
    try:
        act = snapshot.act(code.strip().upper(), day)
        value, cote, row = snapshot.key_letter_value(act.key_letter, day)
    except cat.CatalogueError as exc:
        fail(str(exc))
    unit = cat.unit_price(act.coefficient, value)
    total = (unit * Decimal(quantity)).quantize(cat.CENT)
    console.print(f"{act.code} — {act.label_fr} ({act.nomenclature}), version {act.version_id}"
                  f" valid {act.valid_from}..{act.valid_to or ''}")
    if act.nomenclature == service.TENANT_NOMENCLATURE:
        console.print(f"the hospital's own price ({tenant}): {act.coefficient} EUR, always "
                      "the patient's")
    elif cote is not None:
        console.print(f"key letter {act.key_letter}: {row.value} at index 100 × cote {cote} / 100"
                      f" = {value} (rounded to 4 decimals)")
    else:
        console.print(f"key letter {act.key_letter}: {value} EUR")
    console.print(f"unit price: coefficient {act.coefficient} × {value} = {unit} EUR"
                  " (rounded half up to the cent)")
    console.print(f"quantity {quantity}: {total} EUR")
    print(total)


@app.command("hospital-prices")
def hospital_prices(
    file: Path = typer.Argument(..., help="CSV: code,label_fr,label_de,label_en,amount,"
                                "valid_from,valid_to"),
    tenant: str = typer.Option(..., help="Tenant slug."),
) -> None:
    """Replace a hospital's own price list (comfort items, single room): always the
    patient's. A file with any bad row is refused whole."""
    config = settings()
    rows, problems = read_hospital_prices(file)
    if problems:
        for problem in problems:
            err.print(str(problem))
        fail(f"{len(problems)} problem(s) in {file}; nothing was applied")

    async def _apply() -> tuple[int, int]:
        async with owner_db(config) as db, as_tenant(db, tenant) as (session, t):
            return await service.replace_hospital_prices(session, t.id, rows)

    removed, added = run(_apply())
    console.print(f"{tenant}: {added} price(s) loaded, {removed} replaced")

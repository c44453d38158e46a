"""`luxfact claims`: claim files from the command line."""

import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from luxfact.claims import service, xml
from luxfact.claims.repository import ClaimRepository
from luxfact.claims.schemas import BatchIn
from luxfact.cli.common import as_tenant, err, fail, owner_db, run, settings
from luxfact.kit.errors import LuxfactError
from luxfact.settings import Settings

app = typer.Typer(help="Claims to the insurers.", no_args_is_help=True)


@app.command()
def build(tenant: str = typer.Option(..., "--tenant", help="The hospital's slug."),
          period: str = typer.Option(..., "--period", help="The month issued, YYYY-MM."),
          payer: str = typer.Option("CNS", "--payer", help="The insurer claimed.")) -> None:
    """Build (or take the open) batch of a payer and month, validate and freeze it, and write
    its file under LUXFACT_DOCUMENTS_DIR/claims/; the file's path is the last line printed."""
    try:
        data = BatchIn(payer=payer, period=period)
    except ValueError as exc:
        fail(f"--period or --payer: {exc}")
    config = settings()
    try:
        path = run(_build(config, tenant, data))
    except LuxfactError as exc:
        for error in exc.errors:
            err.print(f"{error.get('field')}: {error.get('reason')}")
        fail(exc.detail)
    print(path)


async def _build(config: Settings, slug: str, data: BatchIn) -> str:
    async with owner_db(config) as db:
        async with as_tenant(db, slug) as (session, tenant):
            batch, _ = await service.build(session, tenant, data, "cli")
        async with as_tenant(db, slug) as (session, tenant):
            with Progress(TextColumn("writing {task.description}"), BarColumn(),
                          MofNCompleteColumn(), console=err, transient=True) as progress:
                task = progress.add_task(batch.file_reference, total=batch.invoice_count)
                frozen = (batch if batch.state == "frozen" else await service.freeze(
                    session, tenant, batch.id, lambda n: progress.advance(task, n)))
        directory = config.documents_dir / "claims"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{frozen.file_reference}.xml"
        async with as_tenant(db, slug) as (session, tenant):
            repo = ClaimRepository(session, tenant.id)
            with path.open("wb") as out:
                n = 0
                while (piece := await repo.file_chunk(frozen.id, n)) is not None:
                    out.write(piece)
                    n += 1
    return str(path)


@app.command("simulate-return")
def simulate_return(batch_file: Path = typer.Argument(..., help="A frozen claim file."),
                    output: Path | None = typer.Option(None, "--output",
                                                       help="Default: standard output."),
                    seed: int = typer.Option(0, help="Another seed, another answer.")) -> None:
    """Write a plausible insurer answer to a claim file (most lines paid, some paid in part
    or rejected with anomaly codes), for demonstrations and tests."""
    from luxfact.claims import simulate  # only this command needs it

    try:
        claim = batch_file.read_bytes()
    except OSError as exc:
        fail(f"{batch_file}: {exc.strerror}")
    try:
        answer = simulate.simulate_return(claim, seed=seed)
    except (xml.ClaimsXmlError, ValueError) as exc:
        fail(f"{batch_file}: not a claim file this command can answer ({exc})")
    if output is None:
        sys.stdout.buffer.write(answer)
    else:
        output.write_bytes(answer)
        err.print(f"written: {output}")

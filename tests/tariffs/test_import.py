"""`luxfact tariffs import` against the test database: diff, dry run, apply, idempotence."""

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from luxfact.cli.main import app
from luxfact.cli.tariffs import DEMO_PACKAGE
from luxfact.db.engine import Database
from luxfact.settings import Settings
from tests.conftest import Hospitals

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("catalogue")


def tariffs(env: dict[str, str], *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["tariffs", *args], env=env, input=stdin)


def test_reimporting_the_same_package_changes_nothing(cli_env: dict[str, str]) -> None:
    result = tariffs(cli_env, "import", str(DEMO_PACKAGE), "--yes")
    assert result.exit_code == 0, result.output
    assert "nothing to change" in result.output


def test_diff_then_apply_then_restore(cli_env: dict[str, str], tmp_path: Path) -> None:
    changed = tmp_path / "pkg"
    shutil.copytree(DEMO_PACKAGE, changed)
    acts = changed / "acts.csv"
    text = acts.read_text(encoding="utf-8")
    text = text.replace("TECH,4K12,Suture de plaie simple,Einfache Wundnaht,22.50",
                        "TECH,4K12,Suture de plaie simple,Einfache Wundnaht,23.00")
    text = text.replace("MED,C2,Visite du médecin généraliste au domicile,"
                        "Hausbesuch des Allgemeinmediziners,16.20,M,2019-01-01,\n", "")
    text += "TECH,9Z99,Acte nouveau,Neue Leistung,3.00,T,2026-01-01,\n"
    acts.write_text(text, encoding="utf-8")
    (changed / "cotes.csv").write_text(
        (changed / "cotes.csv").read_text(encoding="utf-8") + "2026-12-01,992.24\n",
        encoding="utf-8")
    try:
        dry = tariffs(cli_env, "import", str(changed), "--dry-run")
        assert dry.exit_code == 0, dry.output
        assert "+ acts 9Z99 2026-01-01" in dry.output
        assert "~ acts 4K12 2019-01-01: coefficient" in dry.output
        assert "- acts C2 2019-01-01" in dry.output
        assert "+ cotes 2026-12-01" in dry.output
        assert "dry run: nothing was applied" in dry.output
        price = tariffs(cli_env, "price", "9Z99", "--date", "2026-06-01")
        assert price.exit_code == 1 and "unknown act code" in price.output

        refused = tariffs(cli_env, "import", str(changed), stdin="n\n")
        assert "not applied" in refused.output

        applied = tariffs(cli_env, "import", str(changed), stdin="y\n")
        assert applied.exit_code == 0 and "applied: catalogue version" in applied.output
        price = tariffs(cli_env, "price", "9Z99", "--date", "2026-12-01")
        assert price.exit_code == 0, price.output
        # 3.00 × (0.49210 × 992.24 / 100 = 4.8828) = 14.6484 → 14.65
        assert price.output.strip().splitlines()[-1] == "14.65"
        assert "4.8828" in price.output
        again = tariffs(cli_env, "import", str(changed), "--yes")
        assert "nothing to change" in again.output
    finally:
        restored = tariffs(cli_env, "import", str(DEMO_PACKAGE), "--yes")
        assert restored.exit_code == 0, restored.output
    assert "+ acts C2 2019-01-01" in restored.output and "- acts 9Z99" in restored.output
    price = tariffs(cli_env, "price", "C2", "--date", "2024-01-01")
    assert price.exit_code == 0


def test_bad_package_is_refused_whole_listing_every_error(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(DEMO_PACKAGE, bad)
    with (bad / "acts.csv").open("a", encoding="utf-8") as handle:
        handle.write("MED,X1,Acte,,1.00,Q,2019-01-01,\nMED,X2,Acte,,abc,M,2019-01-01,\n")
    with (bad / "cotes.csv").open("a", encoding="utf-8") as handle:
        handle.write("2030-02-30,1000\n")
    result = tariffs(cli_env, "import", str(bad), "--yes")
    assert result.exit_code == 1
    assert "acts.csv:24: unknown key letter 'Q'" in result.output
    assert "acts.csv:25: coefficient 'abc' is not a decimal" in result.output
    assert "cotes.csv:10: valid_from '2030-02-30' is not a date" in result.output
    assert "3 problem(s)" in result.output and "nothing was applied" in result.output
    assert tariffs(cli_env, "price", "X1", "--date", "2024-01-01").exit_code == 1


@pytest.mark.parametrize(("code", "day", "quantity", "amount"), [
    ("N101", "2023-09-01", 1, "19.30"),
    ("N104", "2023-09-01", 1, "9.84"),
    ("N202", "2023-09-01", 1, "41.62"),
    ("N205", "2023-09-01", 1, "39.88"),
    ("N101", "2023-08-31", 1, "18.83"),  # the day before: cote 921.40 → 7.3834 × 2.55 = 18.8277
    ("C1", "2023-09-01", 2, "115.40"),
])
def test_price_prints_the_explanation_and_the_amount_last(
    cli_env: dict[str, str], code: str, day: str, quantity: int, amount: str
) -> None:
    result = tariffs(cli_env, "price", code, "--date", day, "--quantity", str(quantity))
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == amount
    assert any("cote" in line for line in lines[:-1])


def test_price_errors_are_clear(cli_env: dict[str, str]) -> None:
    not_valid = tariffs(cli_env, "price", "C1", "--date", "2018-06-01")
    assert not_valid.exit_code == 1
    assert "C1 is not valid on 2018-06-01; its versions: 2019-01-01..2022-12-31" in not_valid.output
    bad_date = tariffs(cli_env, "price", "C1", "--date", "June")
    assert bad_date.exit_code == 2
    for other_form in ("20230901", "2023-W35-5"):  # ISO forms, but not the one asked for
        assert tariffs(cli_env, "price", "C1", "--date", other_form).exit_code == 2
    lower = tariffs(cli_env, "price", "n101", "--date", "2023-09-01")
    assert lower.exit_code == 0 and lower.output.strip().splitlines()[-1] == "19.30"
    zero = tariffs(cli_env, "price", "C1", "--date", "2024-01-01", "--quantity", "0")
    assert zero.exit_code == 2


def test_a_package_deep_in_the_file_system_is_recorded_by_its_end(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The import's record keeps 500 characters of the path: PostgreSQL refused a longer one
    # after the package had been checked and shown.
    deep = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 150) / "pkg"
    shutil.copytree(DEMO_PACKAGE, deep)
    with (deep / "cotes.csv").open("a", encoding="utf-8") as cotes:
        cotes.write("2031-01-01,999.99\n")
    try:
        applied = tariffs(cli_env, "import", str(deep), "--yes")
        assert applied.exit_code == 0 and "applied" in applied.output, applied.output
    finally:
        restored = tariffs(cli_env, "import", str(DEMO_PACKAGE), "--yes")
        assert restored.exit_code == 0, restored.output
    assert "- cotes 2031-01-01" in restored.output


@pytest.mark.postgres  # on SQLite the reading transaction holds the only write lock
async def test_a_snapshot_never_mixes_two_catalogues(owner_db: Database,
                                                     catalogue: None) -> None:
    """An import committing while a process reads the tables one by one: the process must
    not keep the old key letters with the new acts (a price of neither catalogue)."""
    from datetime import date
    from decimal import Decimal

    from sqlalchemy import text, update

    from luxfact.tariffs import service as tariffs
    from luxfact.tariffs.models import TariffAct, TariffKeyLetter
    from luxfact.tariffs.repository import TariffRepository

    day = date(2024, 1, 1)
    letters, acts = TariffKeyLetter.__table__, TariffAct.__table__  # type: ignore[attr-defined]

    def change(value: Decimal, coefficient: Decimal) -> list:
        return [update(letters).where(letters.c.key_letter == "N").values(value=value),
                update(acts).where(acts.c.code == "N101").values(coefficient=coefficient)]

    async with owner_db.transaction() as session:
        before = await tariffs.snapshot(session)
    old = (before.act("N101", day).coefficient,
           before.key_letter_value("N", day)[2].value)  # the row's value, at index 100
    reading = TariffRepository.rows
    imported: list[int] = []

    async def rows_then_import(self: TariffRepository, name: str) -> list:
        found = await reading(self, name)
        if name == "tariff_key_letters" and not imported:
            async with owner_db.transaction() as other:  # another process's import
                for statement in change(Decimal("0.90000"), Decimal("3.00")):
                    await other.execute(statement)
                await other.execute(text(
                    "INSERT INTO tariff_imports (at, source, package_sha256, summary) "
                    "VALUES (CURRENT_TIMESTAMP, 'test', 'x', '{}')"))
            imported.append(1)
        return found

    tariffs._tables_cache.clear()
    tariffs._cache.clear()
    tariffs._forget_version()
    try:
        TariffRepository.rows = rows_then_import  # type: ignore[method-assign]
        async with owner_db.transaction() as session:
            after = await tariffs.snapshot(session)
    finally:
        TariffRepository.rows = reading  # type: ignore[method-assign]
        async with owner_db.transaction() as session:
            for statement in change(old[1], old[0]):
                await session.execute(statement)
        tariffs._tables_cache.clear()
        tariffs._cache.clear()
        tariffs._forget_version()
    assert imported
    assert (after.act("N101", day).coefficient,
            after.key_letter_value("N", day)[2].value) == (Decimal("3.00"), Decimal("0.90000"))


@pytest.mark.postgres  # on SQLite a writing transaction holds the only write lock already
async def test_a_second_import_waits_for_the_first_and_sees_what_it_did(
        owner_db: Database, settings: Settings, catalogue: None, tmp_path: Path) -> None:
    """Two imports at once: the second, computed while the first was waiting at its prompt,
    would find nothing to change and leave the first's change in place (or apply a diff that
    no longer fits). It waits, then compares against what the first left."""
    import asyncio

    from luxfact.cli.tariffs import import_package
    from luxfact.tariffs import service
    from luxfact.tariffs.package import read_package

    changed = tmp_path / "pkg"
    shutil.copytree(DEMO_PACKAGE, changed)
    acts = changed / "acts.csv"
    acts.write_text(acts.read_text(encoding="utf-8").replace(
        "TECH,4K12,Suture de plaie simple,Einfache Wundnaht,22.50",
        "TECH,4K12,Suture de plaie simple,Einfache Wundnaht,23.00"), encoding="utf-8")
    demo = read_package(DEMO_PACKAGE)
    try:
        async with owner_db.transaction() as first:
            await service.lock_imports(first)
            modified = read_package(changed)
            await service.apply(first, modified, await service.diff(first, modified))
            second = asyncio.create_task(import_package(
                settings, demo, dry_run=False, yes=True, show_diff=False))
            await asyncio.sleep(0.5)
            assert not second.done()  # waiting for the first import
        assert (await second).startswith("applied")  # the demo catalogue put back
    finally:
        async with owner_db.transaction() as session:
            await service.lock_imports(session)
            left = await service.diff(session, demo)
            if not left.empty:
                await service.apply(session, demo, left)
    assert left.empty


async def test_price_of_a_hospitals_own_item_with_its_tenant(
    cli_env: dict[str, str], tmp_path: Path, hospitals: Hospitals
) -> None:
    """A hospital's own price list is its own: priced with --tenant, unknown without it."""

    async def cli(*args: str):  # type: ignore[no-untyped-def]
        # In a thread: the command runs its own event loop, and this test's is running.
        return await asyncio.to_thread(tariffs, cli_env, *args)

    prices = tmp_path / "prices.csv"
    prices.write_text("code,label_fr,label_de,label_en,amount,valid_from,valid_to\n"
                      "TV-CLI,Télévision,Fernseher,Television,4.25,2019-01-01,\n",
                      encoding="utf-8")
    slug = hospitals.a.slug
    loaded = await cli("hospital-prices", str(prices), "--tenant", slug)
    assert loaded.exit_code == 0, loaded.output
    own = await cli("price", "TV-CLI", "--date", "2024-01-01", "--quantity", "2",
                  "--tenant", slug)
    assert own.exit_code == 0, own.output
    assert f"the hospital's own price ({slug}): 4.25 EUR" in own.output
    assert own.output.strip().splitlines()[-1] == "8.50"
    national = await cli("price", "TV-CLI", "--date", "2024-01-01")
    assert national.exit_code == 1 and "unknown act code" in national.output
    # The national catalogue is the same with a hospital named.
    both = [await cli("price", "N101", "--date", "2023-09-01", *extra)
            for extra in ((), ("--tenant", slug))]
    assert [r.output.strip().splitlines()[-1] for r in both] == ["19.30", "19.30"]
    unknown = await cli("price", "N101", "--date", "2023-09-01", "--tenant", "nope")
    assert unknown.exit_code != 0

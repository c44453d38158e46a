"""Tariff use cases: compare a package with the catalogue, apply it, build snapshots."""

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, text
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.kit.errors import Conflict, ValidationFailed
from luxfact.kit.memory import freeze_long_lived
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs.models import TariffImport, TenantPrice
from luxfact.tariffs.package import RESERVED_NOMENCLATURE, Key, Package, Row
from luxfact.tariffs.repository import CATALOGUE, TariffRepository

TENANT_NOMENCLATURE = RESERVED_NOMENCLATURE
# Not a code a tariff package can use (codes are A-Z, 0-9 and '_.-'): a national key letter
# of the same name, such as the demo's EUR, would otherwise price the hospital's own items.
TENANT_KEY_LETTER = "€"

log = logging.getLogger("luxfact.tariffs")


@dataclass
class TableDiff:
    added: list[Key] = field(default_factory=list)
    changed: list[tuple[Key, list[str]]] = field(default_factory=list)
    withdrawn: list[Key] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.withdrawn)


@dataclass
class PackageDiff:
    tables: dict[str, TableDiff]

    @property
    def empty(self) -> bool:
        return all(d.empty for d in self.tables.values())

    def summary(self) -> dict[str, dict[str, int]]:
        return {name: {"added": len(d.added), "changed": len(d.changed),
                       "withdrawn": len(d.withdrawn)} for name, d in self.tables.items()}


def _row_of(model_row: Any, columns: Iterable[str]) -> Row:
    return {c: getattr(model_row, c) for c in columns}


# One import at a time, whoever runs it (the CLI, the desk): a second one waits for the
# first to end, then compares against what the first left (PostgreSQL's advisory lock). On
# SQLite the first holds the database's only write lock: a second gives up after the busy
# timeout, "database is locked".
IMPORT_LOCK = 4_242_017_001


async def lock_imports(session: AsyncSession) -> None:
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})


async def diff(session: AsyncSession, package: Package) -> PackageDiff:
    repo = TariffRepository(session)
    result: dict[str, TableDiff] = {}
    for name, (model, key_columns) in CATALOGUE.items():
        staged = package.tables.get(name, {})
        columns = list(model.model_fields)
        current = {tuple(getattr(r, c) for c in key_columns): _row_of(r, columns)
                   for r in await repo.table(name)}
        table = TableDiff()
        for key, row in staged.items():
            old = current.get(key)
            if old is None:
                table.added.append(key)
            else:
                fields = [c for c in columns if old.get(c) != row.get(c)]
                if fields:
                    table.changed.append((key, fields))
        table.withdrawn = [k for k in current if k not in staged]
        table.added.sort(key=str)
        table.changed.sort(key=lambda item: str(item[0]))
        table.withdrawn.sort(key=str)
        result[name] = table
    return PackageDiff(result)


async def apply(session: AsyncSession, package: Package, changes: PackageDiff) -> int:
    """Apply a checked package in the caller's transaction; returns the new catalogue version.

    Rows are matched by primary key: added rows inserted, changed ones updated, withdrawn ones
    deleted. Acts already priced are not touched: each priced line keeps a copy of the tariff
    version it was priced with.
    """
    for name, (model, key_columns) in CATALOGUE.items():
        table = changes.tables[name]
        staged = package.tables.get(name, {})
        for key in table.withdrawn:
            conditions = [getattr(model, c) == v for c, v in zip(key_columns, key, strict=True)]
            await session.exec(delete(model).where(*conditions))  # type: ignore[call-overload]
        for key, _ in table.changed:
            existing = await session.get(model, key)
            for column, value in staged[key].items():
                setattr(existing, column, value)
            session.add(existing)
        for key in table.added:
            session.add(model(**staged[key]))
    # The column holds 500 characters: a longer path keeps its end, the package's own name.
    source = package.source if len(package.source) <= 500 else "…" + package.source[-499:]
    record = TariffImport(source=source, package_sha256=package.sha256,
                          summary=changes.summary())
    session.add(record)
    await session.flush()
    _cache.clear()
    _forget_version()
    return record.id or 0


# --- snapshots ---------------------------------------------------------------------------

def build_snapshot(
    tables: dict[str, list[Any]], tenant_prices: Iterable[TenantPrice] = ()
) -> cat.TariffSnapshot:
    acts: dict[str, list[cat.ActVersion]] = {}
    for r in tables["tariff_acts"]:
        acts.setdefault(r.code, []).append(cat.ActVersion(
            r.valid_from, r.valid_to, r.nomenclature, r.code, r.label_fr, r.label_de,
            r.coefficient, r.key_letter))
    letters: dict[str, list[cat.KeyLetterValue]] = {}
    for r in tables["tariff_key_letters"]:
        letters.setdefault(r.key_letter, []).append(
            cat.KeyLetterValue(r.valid_from, r.valid_to, r.key_letter, r.basis, r.value))
    nomenclatures = {r.code: cat.Nomenclature(r.code, r.label_fr, r.label_de, r.category)
                     for r in tables["tariff_nomenclatures"]}
    tenant_prices = list(tenant_prices)
    if tenant_prices:
        # A hospital's own items: priced in euros (coefficient = amount, key letter EUR = 1)
        # and always the patient's.
        nomenclatures[TENANT_NOMENCLATURE] = cat.Nomenclature(
            TENANT_NOMENCLATURE, "Prestations propres de l'établissement",
            "Eigene Leistungen des Krankenhauses", "supplement")
        letters[TENANT_KEY_LETTER] = [cat.KeyLetterValue(
            date(1900, 1, 1), None, TENANT_KEY_LETTER, "eur", Decimal("1.0000"))]
        own: dict[str, list[cat.ActVersion]] = {}
        for p in tenant_prices:
            own.setdefault(p.code, []).append(cat.ActVersion(
                p.valid_from, p.valid_to, TENANT_NOMENCLATURE, p.code, p.label_fr, p.label_de,
                Decimal(p.amount_cents) / 100, TENANT_KEY_LETTER))
        # A national import may later bring a code the hospital already sells (its price
        # list refuses national codes only when it is loaded): the hospital's own price then
        # stands for that code in its snapshot, never a mix of both.
        for code in sorted(own.keys() & acts.keys()):
            log.warning("hospital price %s shadows the national act of the same code", code)
        acts.update(own)
    modifiers: dict[str, list[cat.Modifier]] = {}
    for r in tables["tariff_modifiers"]:
        modifiers.setdefault(r.code, []).append(cat.Modifier(
            r.valid_from, r.valid_to, r.code, r.label_fr, r.label_de, r.percent,
            tuple(a for a in r.applies_to.split("|") if a), r.patient_only))
    parameters: dict[str, list[cat.Parameter]] = {}
    for r in tables["tariff_parameters"]:
        parameters.setdefault(r.name, []).append(
            cat.Parameter(r.valid_from, r.valid_to, r.name, r.value))
    return cat.TariffSnapshot(
        nomenclatures=nomenclatures,
        acts=acts,
        key_letters=letters,
        cotes=[cat.Cote(r.valid_from, r.cote) for r in tables["tariff_cotes"]],
        rules=[cat.Rule(r.valid_from, r.valid_to, r.rule, r.target,
                        tuple(o for o in r.others.split("|") if o), r.value)
               for r in tables["tariff_rules"]],
        modifiers=modifiers,
        parameters=parameters,
    )


def _forget_version() -> None:
    """This process changed the catalogue: read the version afresh next time."""
    global _version
    _version = (-1, 0.0)


# (catalogue version, tenant) -> (snapshot, built at); national tables are cached per version.
_cache: dict[tuple[int, uuid.UUID | None], tuple[cat.TariffSnapshot, float]] = {}
_tables_cache: dict[int, dict[str, list[Any]]] = {}
TENANT_PRICES_TTL = 30.0  # seconds: a new hospital price reaches every process within this


VERSION_TTL = 5.0  # seconds a process trusts the catalogue version it last read
_version: tuple[int, float] = (-1, 0.0)


async def snapshot(session: AsyncSession, tenant_id: uuid.UUID | None = None) -> cat.TariffSnapshot:
    """The catalogue as the pricing engine reads it, cached per catalogue version.

    The version is re-read at most every VERSION_TTL seconds (an import is rare and every
    priced line records the version it used), not once per act.
    """
    global _version
    repo = TariffRepository(session)
    version, read_at = _version
    if time.monotonic() - read_at > VERSION_TTL:
        version = await repo.version()
        _version = (version, time.monotonic())
    if cached := _cached(version, tenant_id):
        return cached
    tables = _tables_cache.get(version)
    if tables is None:
        version, tables = await _consistent_tables(repo)
        _version = (version, time.monotonic())
        if cached := _cached(version, tenant_id):
            return cached
        _tables_cache.clear()
        _tables_cache[version] = tables
        freeze_long_lived()  # the catalogue lives as long as its version: once per version
    prices = await repo.tenant_prices(tenant_id) if tenant_id else []
    built = build_snapshot(tables, prices)
    _cache[(version, tenant_id)] = (built, time.monotonic())
    return built


def _cached(version: int, tenant_id: uuid.UUID | None) -> cat.TariffSnapshot | None:
    """The snapshot built for this version (and hospital, while its prices are fresh)."""
    cached = _cache.get((version, tenant_id))
    if cached and (tenant_id is None or time.monotonic() - cached[1] < TENANT_PRICES_TTL):
        return cached[0]
    return None


async def _consistent_tables(repo: TariffRepository) -> tuple[int, dict[str, list[Any]]]:
    """Every table of one catalogue version, and that version. Each table is its own
    SELECT: an import committing between two of them would give old key letters with new
    acts, a price of neither catalogue. The import changes the version in its transaction,
    so the same version read before and after the tables means no import came between."""
    for _ in range(5):
        before = await repo.version()
        tables = {name: await repo.rows(name) for name in CATALOGUE}
        if await repo.version() == before:
            return before, tables
    raise Conflict("The tariff catalogue is being imported again and again: try again.")


def catalogue_error(exc: cat.CatalogueError, field: str | None = None) -> ValidationFailed:
    """A catalogue error as a 422 naming the field, with its details."""
    return ValidationFailed(str(exc), errors=[{"field": field or exc.field, "reason": str(exc)}],
                            **{k: v for k, v in exc.details.items() if k != "code"})


async def replace_hospital_prices(session: AsyncSession, tenant_id: uuid.UUID,
                                  rows: list[Row]) -> tuple[int, int]:
    """Replace the hospital's price list (rows from `read_hospital_prices`): (removed, added)."""
    national = {r.code for r in await TariffRepository(session).table("tariff_acts")}
    clashes = sorted({r["code"] for r in rows} & national)
    if clashes:
        raise ValidationFailed(
            "Hospital price codes must not reuse national codes: " + ", ".join(clashes),
            errors=[{"field": "code", "reason": f"{c} is a national code"} for c in clashes])
    removed = await session.exec(  # type: ignore[call-overload]
        delete(TenantPrice).where(TenantPrice.tenant_id == tenant_id))  # type: ignore[arg-type]
    for row in rows:
        session.add(TenantPrice(tenant_id=tenant_id, **row))
    await session.flush()
    _cache.clear()
    _forget_version()
    return removed.rowcount or 0, len(rows)

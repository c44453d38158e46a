"""A catalogue value corrected in place for the length of a test, as an import would, then
put back: what the tests of a tariff changed after acts were priced share."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import select, update

from luxfact.db.engine import Database
from luxfact.tariffs import service as tariffs


def _forget_catalogue() -> None:
    """As after an import: the next look-up reads the tables again."""
    tariffs._tables_cache.clear()
    tariffs._cache.clear()


@asynccontextmanager
async def corrected(db: Database, model: Any, column: str, value: Any,
                    **where: Any) -> AsyncIterator[None]:
    """`column` set to `value` in the rows of `model`'s table matching `where`; each row's
    own value back afterwards."""
    table = model.__table__
    keys = list(table.primary_key.columns)
    matching = [table.c[name] == wanted for name, wanted in where.items()]
    async with db.transaction() as session:
        rows = (await session.execute(select(*keys, table.c[column]).where(*matching))).all()
        assert rows, f"no {table.name} row matches {where}"
        await session.execute(update(table).where(*matching).values({column: value}))
    _forget_catalogue()
    try:
        yield
    finally:
        async with db.transaction() as session:
            for row in rows:
                await session.execute(update(table).where(
                    *(key == row[n] for n, key in enumerate(keys))).values(
                    {column: row[-1]}))
        _forget_catalogue()

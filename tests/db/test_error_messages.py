"""A database error's message, which a traceback in the logs carries, holds no values."""

import pytest
from sqlalchemy import text

from luxfact.db.engine import Database
from luxfact.settings import Settings


async def test_a_failed_statement_does_not_echo_its_values(settings: Settings) -> None:
    db = Database(settings.database_url, pool_size=1)
    try:
        async with db.engine.connect() as connection:
            with pytest.raises(Exception) as failed:
                await connection.execute(text("SELECT * FROM no_such_table WHERE name = :n"),
                                         {"n": "Müller-Kayser 1985031512345"})
    finally:
        await db.dispose()
    message = str(failed.value)
    assert "no_such_table" in message  # the statement is there to debug with
    assert "Müller" not in message and "1985031512345" not in message

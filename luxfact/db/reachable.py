"""`python -m luxfact.db.reachable URL`: exit 0 when a PostgreSQL answers at URL (for make)."""

import asyncio
import sys

import asyncpg
from sqlalchemy.engine import make_url


async def _reachable(url: str) -> bool:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception:  # any failure means "not reachable", which is what is asked
        return False
    await conn.close()
    return True


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(_reachable(sys.argv[1])) else 1)

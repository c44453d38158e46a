"""`python -m luxfact.db.reachable URL`: exit 0 when a PostgreSQL answers at URL (for make)."""

import asyncio
import sys

import asyncpg

from luxfact.db.engine import asyncpg_dsn


async def _reachable(url: str) -> bool:
    dsn = asyncpg_dsn(url)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception:  # any failure means "not reachable", which is what is asked
        return False
    await conn.close()
    return True


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(_reachable(sys.argv[1])) else 1)

"""Which exceptions mean the database cannot be reached (503, retry), as opposed to a bug."""

from collections.abc import Iterator

from sqlalchemy import exc as sa_exc

DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)

# PostgreSQL's disk_full; SQLite's SQLITE_FULL ("database or disk is full"), which extended
# result codes keep in their low byte.
_POSTGRES_DISK_FULL = "53100"
_SQLITE_FULL = 13


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and those it wraps (SQLAlchemy's `orig`, then the driver's cause)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__


def storage_full(exc: BaseException) -> bool:
    """Whether the database refused a write for lack of disk space (a 503 until an operator
    frees some, not a bug). asyncpg's DiskFullError reaches us as a bare DBAPIError, not an
    OperationalError, so the class alone cannot tell; the SQLSTATE or SQLite's code can."""
    for error in _chain(exc):
        if getattr(error, "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return True
    return False


# SQLSTATEs of a server that dropped the connection or takes none yet: class 08 (connection
# exception), 57P01-57P03 (backend ended by a shutdown or a crash; the server starting up) and
# 53300 (too many connections). asyncpg raises them as bare DBAPIErrors, not OperationalError.
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def unavailable_sqlstate(error: BaseException) -> bool:
    """Whether the driver's error says the server dropped or refused the connection."""
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES)


# PostgreSQL's deadlock_detected and serialization_failure: the transaction lost a race with
# a concurrent one and was rolled back; run again, it usually goes through.
_CONFLICT_SQLSTATES = ("40P01", "40001")


def lost_race(exc: BaseException) -> bool:
    """Whether the database rolled the transaction back for a deadlock or a serialization
    failure (asyncpg's errors reach us as bare DBAPIErrors: the SQLSTATE tells)."""
    return any(getattr(error, "sqlstate", None) in _CONFLICT_SQLSTATES
               for error in _chain(exc))

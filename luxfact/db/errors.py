"""Which exceptions mean the database cannot be reached (503, retry), as opposed to a bug."""

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

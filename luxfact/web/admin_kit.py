"""What the admin pages share: path ids, times shown in Luxembourg, a create shown once."""

import hashlib
import uuid
from datetime import date, datetime

from starlette.responses import Response

from luxfact.http import idempotency
from luxfact.kit.errors import NotFound
from luxfact.kit.time import LUXEMBOURG
from luxfact.web.desk import Desk
from luxfact.web.i18n import N_

# The roles of people (users); API keys, for systems, may also have `integration`.
USER_ROLES = ("clerk", "billing", "admin")
KEY_ROLES = ("integration", "clerk", "billing", "admin")

# Texts the services give as reasons, so that they are translated where shown.
REASONS = (
    N_("not an e-mail address"),
    N_("a password needs at least 12 characters"),
    N_("a password needs more variety (and no leading or trailing spaces)"),
    N_("1 to 100 characters"),
    N_("not a cursor returned by this list"),
)


def path_uuid(desk: Desk, name: str) -> uuid.UUID:
    """A path id; anything that is not a UUID cannot exist: the 404 page."""
    try:
        return uuid.UUID(str(desk.request.path_params[name]))
    except (KeyError, ValueError):
        raise NotFound() from None


def when(value: datetime | date | None) -> str:
    """A time as the desk shows it: Luxembourg time, to the minute."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(LUXEMBOURG)
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _print(desk: Desk) -> str:
    return hashlib.sha256(desk.request.url.path.encode()).hexdigest()


def _idem(desk: Desk) -> str | None:
    key = desk.value("idem")
    return f"desk:{key}" if key and len(key) <= 100 else None


async def replayed(desk: Desk) -> Response | None:
    """A create whose result is shown once (a key, a generated password), sent twice: the
    second goes where the first one's record is, without the secret, and creates nothing."""
    key = _idem(desk)
    if key is None:
        return None
    stored = await idempotency.stored(desk.session, desk.tenant_id, desk.user.actor, key,
                                      _print(desk))
    return desk.redirect(stored.headers.get("location", "/desk")) if stored else None


async def remember(desk: Desk, url: str) -> None:
    """Where a second sending of this form goes (see `replayed`)."""
    key = _idem(desk)
    if key is not None:
        await idempotency.store(desk.session, desk.tenant_id, desk.user.actor, key,
                                _print(desk), Response(b"", status_code=303,
                                                       headers={"Location": url}))


def new_idem() -> str:
    return uuid.uuid4().hex

"""/desk/admin/audit: the hospital's audit trail, filtered, newest first, page by page.

The same query and cursors as `GET /api/v1/audit-events` (`luxfact/audit/api.py`): the
repository's `page`, `decode_time_cursor` and the cursor of the last row shown. Dates are
days of the hospital's time zone, both ends included.
"""

import json
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.audit.repository import AuditRepository
from luxfact.audit.schemas import AuditQuery
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.http.pagination import decode_time_cursor, encode_cursor
from luxfact.kit import problems
from luxfact.kit.errors import ValidationFailed
from luxfact.kit.time import LUXEMBOURG
from luxfact.kit.types import MAX_YEAR, MIN_YEAR
from luxfact.tenancy.repository import TenantRepository
from luxfact.web.admin_kit import when
from luxfact.web.desk import Desk, page

PAGE_SIZE = 50
TEXT_FILTERS = ("action", "object_type", "object_id", "actor")
# Objects with a page of their own here.
LINKS = {"user": "/desk/admin/users/", "api_key": "/desk/admin/keys/"}


def _day(desk: Desk, name: str, raw: str) -> date | None:
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        desk.errors[name] = desk._("Not a date: write it as YYYY-MM-DD.")
    elif not MIN_YEAR <= day.year <= MAX_YEAR:
        desk.errors[name] = desk._("Not a date: write it as YYYY-MM-DD.")
        day = None
    return day


async def _zone(desk: Desk) -> ZoneInfo:
    tenant = await TenantRepository(desk.session).by_id(desk.tenant_id)
    try:
        return ZoneInfo(tenant.timezone) if tenant else LUXEMBOURG
    except (ValueError, KeyError):
        return LUXEMBOURG


async def _names(desk: Desk) -> dict[str, str]:
    """Actors as a person reads them: the user's e-mail, the key's name."""
    repo = AuthRepository(desk.session, desk.tenant_id)
    names = {f"user:{u.id}": u.email for u in await repo.users()}
    names.update({f"key:{k.id}": k.name for k in await repo.keys()})
    return names


@page(Role.admin)
async def audit(desk: Desk) -> Response:
    """The audit trail with its filters; a bad filter is a 422 shown next to its field."""
    params = desk.request.query_params
    filters = {name: params.get(name, "").strip() for name in (*TEXT_FILTERS, "from", "to")}
    cursor = params.get("cursor") or None
    for name in TEXT_FILTERS:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in filters[name]):
            desk.errors[name] = desk._("Control characters are not allowed.")
    query: AuditQuery | None = None
    try:
        query = AuditQuery(**{name: filters[name] or None for name in TEXT_FILTERS},
                           cursor=cursor, limit=PAGE_SIZE)
    except ValidationError as exc:
        desk.field_errors(ValidationFailed(errors=problems.field_errors(exc)))
    start, end = _day(desk, "from", filters["from"]), _day(desk, "to", filters["to"])
    if start and end and end < start:
        desk.errors["to"] = desk._("The end date is before the start date.")
    events: list = []
    next_url = ""
    kept = {k: v for k, v in filters.items() if v}
    first_url = "/desk/admin/audit" + ("?" + urlencode(kept) if kept else "")
    if query is not None and not desk.errors:
        zone = await _zone(desk)
        since = datetime.combine(start, time(), zone) if start else None
        until = datetime.combine(end + timedelta(days=1), time(), zone) if end else None
        try:
            after = decode_time_cursor(query.cursor)
        except ValidationFailed:
            desk.errors["cursor"] = desk._("This page link is not valid any more: start "
                                           "again from the first page.")
            after = None
        if not desk.errors:
            rows = await AuditRepository(desk.session, desk.tenant_id).page(
                limit=PAGE_SIZE + 1, after=after, action=query.action,
                object_type=query.object_type, object_id=query.object_id, actor=query.actor,
                since=since, until=until)
            events = rows[:PAGE_SIZE]
            if len(rows) > PAGE_SIZE:
                last = events[-1]
                next_url = "/desk/admin/audit?" + urlencode(
                    {**kept, "cursor": encode_cursor([last.at.isoformat(), str(last.id)])})
    return desk.render(
        "desk/admin/audit.html", status=422 if desk.errors else 200, events=events,
        filters=filters, next_url=next_url, first_url=first_url, paged=bool(cursor),
        names=await _names(desk), links=LINKS, when=when,
        details=lambda event: json.dumps(event.details, ensure_ascii=False, sort_keys=True,
                                         default=str))


def routes() -> list[BaseRoute]:
    return [Route("/desk/admin/audit", audit, methods=["GET"])]

"""GET /api/v1/audit-events: the hospital's audit trail, for its administrator."""

import uuid
from datetime import datetime

from starlette.responses import Response

from luxfact.audit.repository import AuditRepository
from luxfact.audit.schemas import AuditEventOut, AuditQuery
from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, bad_cursor, decode_cursor, encode_cursor


@endpoint(Role.admin, query=AuditQuery, response=Page[AuditEventOut])
async def list_audit_events(ctx: Ctx) -> Response:
    """The hospital's audit trail, newest first."""
    query = ctx.query(AuditQuery)
    position = decode_cursor(query.cursor, 2)
    after = None
    if position:
        try:
            after = (datetime.fromisoformat(position[0]), uuid.UUID(position[1]))
        except (TypeError, ValueError):
            raise bad_cursor() from None
    events = await AuditRepository(ctx.session, ctx.tenant_id).page(
        limit=query.limit + 1, after=after, action=query.action, object_type=query.object_type,
        object_id=query.object_id, actor=query.actor, since=query.since, until=query.until,
    )
    more = len(events) > query.limit
    events = events[: query.limit]
    next_cursor = encode_cursor([events[-1].at.isoformat(), str(events[-1].id)]) if more else None
    page = Page[AuditEventOut](
        items=[AuditEventOut.model_validate(e, from_attributes=True) for e in events],
        next_cursor=next_cursor,
    )
    return json_response(page)

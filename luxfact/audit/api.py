"""GET /api/v1/audit-events: the hospital's audit trail, for its administrator."""

from starlette.responses import Response

from luxfact.audit.repository import AuditRepository
from luxfact.audit.schemas import AuditEventOut, AuditQuery
from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, decode_time_cursor, page


@endpoint(Role.admin, query=AuditQuery, response=Page[AuditEventOut])
async def list_audit_events(ctx: Ctx) -> Response:
    """The hospital's audit trail, newest first."""
    query = ctx.query(AuditQuery)
    events = await AuditRepository(ctx.session, ctx.tenant_id).page(
        limit=query.limit + 1, after=decode_time_cursor(query.cursor), action=query.action,
        object_type=query.object_type, object_id=query.object_id, actor=query.actor,
        since=query.since, until=query.until,
    )
    return json_response(page(AuditEventOut, events, query.limit,
                              lambda e: [e.at.isoformat(), str(e.id)]))

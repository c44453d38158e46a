"""/api/v1/webhooks: the administrator's endpoints and their delivery log."""

import re
from typing import Any

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, PageQuery, decode_time_cursor, encode_cursor
from luxfact.kit.errors import ValidationFailed
from luxfact.webhooks import addresses, service
from luxfact.webhooks.schemas import (
    DeliveryOut,
    SecretIn,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)

_STATUS = re.compile(r"HTTP (\d{3})\b")


def _out(row: Any) -> WebhookOut:
    return WebhookOut.model_validate(row, from_attributes=True)


@endpoint(Role.admin, response=Page[WebhookOut])
async def list_webhooks(ctx: Ctx) -> Response:
    """The hospital's webhook endpoints (never their secrets)."""
    rows = await service.endpoints(ctx.session, ctx.tenant_id)
    return json_response(Page[WebhookOut](items=[_out(r) for r in rows]))


@endpoint(Role.admin, body=WebhookIn, response=WebhookCreated, status=201)
async def create_webhook(ctx: Ctx) -> Response:
    """Add an endpoint; its signing secret is in this response only."""
    data = await ctx.body(WebhookIn)
    await _checked_url(str(data.url))
    row = await service.create_endpoint(
        ctx.session, ctx.tenant_id, url=str(data.url), events=list(data.events),
        description=data.description, created_by=ctx.principal.actor, secret=data.secret)
    out = WebhookCreated(**_out(row).model_dump(), secret=row.secret)
    return json_response(out, 201, headers={"Cache-Control": "no-store",
                                             "Location": f"/api/v1/webhooks/{row.id}"})


async def _checked_url(url: str) -> None:
    # A name not resolving yet is taken (its receiver may not be set up): each delivery
    # looks it up again.
    refused = await addresses.refusal(url, unresolved=True)
    if refused:
        raise ValidationFailed(errors=[{"field": "url", "reason": refused}])


@endpoint(Role.admin, body=WebhookPatch, response=WebhookOut)
async def update_webhook(ctx: Ctx) -> Response:
    """Change an endpoint's URL, events or description (what is not given stays)."""
    data = await ctx.body(WebhookPatch)
    changes = data.model_dump(exclude_unset=True)
    nulls = sorted(name for name, value in changes.items() if value is None)
    if nulls:  # left out, a field stays as it is; it cannot be emptied
        raise ValidationFailed(errors=[{"field": name, "reason": "may not be null"}
                                       for name in nulls])
    if "url" in changes:
        changes["url"] = str(data.url)
        await _checked_url(changes["url"])
    row = await service.update_endpoint(ctx.session, ctx.tenant_id,
                                        ctx.path_uuid("webhook_id"), changes)
    return json_response(_out(row))


@endpoint(Role.admin, body=SecretIn, response=WebhookCreated)
async def rotate_webhook_secret(ctx: Ctx) -> Response:
    """A new signing secret, in this response only; the old one signs nothing more. The
    body is optional: `{"secret": ...}` sets the one the receiver was given, else one is
    made."""
    given = None
    if await ctx.request.body():
        given = (await ctx.body(SecretIn)).secret
    row = await service.rotate_secret(ctx.session, ctx.tenant_id, ctx.path_uuid("webhook_id"),
                                      given)
    out = WebhookCreated(**_out(row).model_dump(), secret=row.secret)
    return json_response(out, headers={"Cache-Control": "no-store"})


@endpoint(Role.admin, response=WebhookOut)
async def disable_webhook(ctx: Ctx) -> Response:
    """Disable an endpoint: no new events, pending deliveries cancelled; the log is kept."""
    row = await service.disable_endpoint(ctx.session, ctx.tenant_id,
                                         ctx.path_uuid("webhook_id"))
    return json_response(_out(row))


def delivery_out(row: Any) -> DeliveryOut:
    if row.state in ("delivered", "cancelled"):
        state, error, status, next_at = row.state, row.last_error, row.last_status, None
    else:
        state = "failed" if row.job_state == "dead" else "pending"
        error = row.job_error
        match = _STATUS.search(error or "")
        status = int(match.group(1)) if match else None
        next_at = row.next_attempt_at if state == "pending" else None
    attempts = row.job_attempts if row.job_attempts is not None else row.attempts
    return DeliveryOut(id=row.id, event_id=row.event_id, event_type=row.event_type,
                       state=state, attempts=attempts, last_status_code=status,
                       last_error=error, next_attempt_at=next_at, created_at=row.created_at,
                       delivered_at=row.delivered_at)


@endpoint(Role.admin, query=PageQuery, response=Page[DeliveryOut])
async def list_deliveries(ctx: Ctx) -> Response:
    """An endpoint's delivery log, newest first: each event, its attempts and outcome."""
    query = ctx.query(PageQuery)
    endpoint_row = await service.get_endpoint(ctx.session, ctx.tenant_id,
                                              ctx.path_uuid("webhook_id"))
    rows = await service.deliveries(ctx.session, ctx.tenant_id, endpoint_row.id,
                                    limit=query.limit + 1,
                                    after=decode_time_cursor(query.cursor))
    shown = rows[:query.limit]
    cursor = (encode_cursor([shown[-1].created_at.isoformat(), str(shown[-1].id)])
              if len(rows) > query.limit else None)
    return json_response(Page[DeliveryOut](items=[delivery_out(r) for r in shown],
                                           next_cursor=cursor))

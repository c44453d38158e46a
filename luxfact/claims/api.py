"""/api/v1/claim-batches: build, check, validate, freeze, download and send claim files."""

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.claims import service
from luxfact.claims.models import ClaimBatch
from luxfact.claims.repository import ClaimRepository
from luxfact.claims.schemas import BatchError, BatchIn, BatchOut, BatchState
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, PageQuery, decode_time_cursor, encode_cursor
from luxfact.kit.errors import Conflict, NotFound
from luxfact.kit.money import cents_str
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.service import tenant_by_id

BILLING = (Role.billing,)
SENDERS = (Role.billing, Role.integration)
READERS = (Role.billing, Role.admin, Role.integration)


class BatchQuery(PageQuery):
    state: BatchState | None = None


async def _tenant(ctx: Ctx) -> Tenant:
    tenant = await tenant_by_id(ctx.session, ctx.tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


def batch_out(batch: ClaimBatch) -> BatchOut:
    return BatchOut(
        id=batch.id, payer=batch.payer, period=batch.period, state=batch.state,  # type: ignore[arg-type]
        file_reference=batch.file_reference, invoice_count=batch.invoice_count,
        line_count=batch.line_count, gross=cents_str(batch.gross_cents),
        net=cents_str(batch.net_cents), sha256=batch.sha256, size=batch.size,
        created_at=batch.created_at, frozen_at=batch.frozen_at, sent_at=batch.sent_at,
        version=batch.version)


@endpoint(*BILLING, idempotent=True, body=BatchIn, response=BatchOut, status=201,
          also=((200, "The batch of this payer and month was open already"),))
async def build_batch(ctx: Ctx) -> Response:
    """Gather the issued insurer invoices of a payer and month not yet claimed.

    While that month's batch is open, building it again returns it (200)."""
    batch, created = await service.build(ctx.session, await _tenant(ctx),
                                         await ctx.body(BatchIn), ctx.principal.actor)
    return json_response(batch_out(batch), 201 if created else 200,
                         headers={"Location": f"/api/v1/claim-batches/{batch.id}"})


@endpoint(*READERS, query=BatchQuery, response=Page[BatchOut])
async def list_batches(ctx: Ctx) -> Response:
    """Claim batches, newest first."""
    query = ctx.query(BatchQuery)
    rows = await ClaimRepository(ctx.session, ctx.tenant_id).page(
        limit=query.limit + 1, after=decode_time_cursor(query.cursor), state=query.state)
    shown = rows[:query.limit]
    cursor = (encode_cursor([shown[-1].created_at.isoformat(), str(shown[-1].id)])
              if len(rows) > query.limit else None)
    return json_response(Page[BatchOut](items=[batch_out(b) for b in shown],
                                        next_cursor=cursor))


@endpoint(*READERS, response=BatchOut)
async def get_batch(ctx: Ctx) -> Response:
    """A claim batch: its state, counts and totals."""
    return json_response(batch_out(await service.get_batch(ctx.session, ctx.tenant_id,
                                                           ctx.path_uuid("batch_id"))))


@endpoint(*READERS, response=Page[BatchError])
async def batch_errors(ctx: Ctx) -> Response:
    """What stops the batch from being frozen, pinned to each invoice and line."""
    batch = await service.get_batch(ctx.session, ctx.tenant_id, ctx.path_uuid("batch_id"))
    errors = await service.errors_of(ctx.session, await _tenant(ctx), batch)
    return json_response(Page[BatchError](items=errors))


@endpoint(*BILLING, response=BatchOut)
async def validate_batch(ctx: Ctx) -> Response:
    """Check every invoice and line; 422 listing the errors, else the batch is `validated`."""
    batch = await service.validate(ctx.session, await _tenant(ctx), ctx.path_uuid("batch_id"))
    return json_response(batch_out(batch))


@endpoint(*BILLING, response=BatchOut)
async def freeze_batch(ctx: Ctx) -> Response:
    """Validate, then write and store the XML file: nothing in the batch changes after."""
    batch = await service.freeze(ctx.session, await _tenant(ctx), ctx.path_uuid("batch_id"))
    return json_response(batch_out(batch))


@endpoint(*SENDERS, response=BatchOut)
async def mark_sent(ctx: Ctx) -> Response:
    """Say the frozen file was sent to the insurer."""
    batch = await service.mark_sent(ctx.session, await _tenant(ctx), ctx.path_uuid("batch_id"))
    return json_response(batch_out(batch))


@endpoint(*READERS)
async def batch_file(ctx: Ctx) -> Response:
    """The frozen claim file, byte for byte."""
    batch = await service.get_batch(ctx.session, ctx.tenant_id, ctx.path_uuid("batch_id"))
    if batch.content is None or batch.sha256 is None:
        raise Conflict(f"The batch is {batch.state}: its file exists once it is frozen.")
    return Response(batch.content, media_type="application/xml", headers={
        "ETag": f'"{batch.sha256}"', "X-Content-SHA256": batch.sha256,
        "Content-Disposition": f'attachment; filename="{batch.file_reference}.xml"'})

"""/api/v1/claim-batches: build, check, validate, freeze, download and send claim files."""

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response, StreamingResponse

from luxfact.auth.roles import Role
from luxfact.claims import anomalies, returns, service
from luxfact.claims.models import ClaimBatch
from luxfact.claims.repository import ClaimRepository
from luxfact.claims.schemas import BatchError, BatchIn, BatchOut, BatchState
from luxfact.db.engine import Database
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import (
    Page,
    PageQuery,
    bad_cursor,
    decode_cursor,
    decode_time_cursor,
    encode_cursor,
)
from luxfact.kit.errors import Conflict, NotFound, UnsupportedMediaType
from luxfact.kit.language import negotiate
from luxfact.kit.money import cents_str
from luxfact.kit.types import PlainText
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


def frozen_file(db: Database, tenant_id: uuid.UUID, batch: ClaimBatch) -> Response:
    """A frozen batch's file, streamed from its stored pieces (API and desk alike)."""
    if batch.sha256 is None:
        raise Conflict(f"The batch is {batch.state}: its file exists once it is frozen.")
    batch_id = batch.id

    async def pieces() -> AsyncIterator[bytes]:
        # Each piece read in a short transaction of its own, after the request's one has
        # ended: the stored pieces never change once frozen.
        n = 0
        while True:
            async with db.transaction() as session:
                piece = await ClaimRepository(session, tenant_id).file_chunk(batch_id, n)
            if piece is None:
                return
            yield piece
            n += 1

    return StreamingResponse(pieces(), media_type="application/xml", headers={
        "ETag": f'"{batch.sha256}"', "X-Content-SHA256": batch.sha256,
        "Content-Length": str(batch.size),
        "Content-Disposition": f'attachment; filename="{batch.file_reference}.xml"'})


@endpoint(*READERS)
async def batch_file(ctx: Ctx) -> Response:
    """The frozen claim file, byte for byte (streamed: it can weigh hundreds of MB)."""
    batch = await service.get_batch(ctx.session, ctx.tenant_id, ctx.path_uuid("batch_id"))
    return frozen_file(ctx.request.state.db, ctx.tenant_id, batch)


class ClaimLineQuery(PageQuery):
    status: Literal["rejected", "partly_paid", "paid", "reversed", "written_off",
                    "credited"] = "rejected"


class Figure(BaseModel):
    count: int
    claimed: str
    paid: str


class AnomalyFigure(Figure):
    code: str
    label: str
    resolution: str


class Reconciliation(BaseModel):
    batch_id: uuid.UUID
    state: str
    claimed: Figure
    paid: Figure
    partly_paid: Figure
    rejected: Figure
    reversed: Figure
    written_off: Figure
    credited: Figure
    outstanding: Figure
    by_anomaly: list[AnomalyFigure] = Field(
        description="Lines not paid whole, by the insurer's anomaly code (a line with two "
                    "codes counts under each)")


class AnomalyOut(BaseModel):
    type: str
    code: str
    label: str = Field(description="Our label of the code, in the Accept-Language")
    motif: str = Field(description="The insurer's own words, as received")
    resolution: Literal["correct", "write_off", "check"] = Field(
        description="correct: credit the line and claim it again corrected; write_off: the "
                    "insurer will not pay it; check: read the motif")


class ClaimLineOut(BaseModel):
    invoice_id: uuid.UUID
    invoice_number: str
    stay_id: uuid.UUID
    line: int
    code: str
    day: dt.date
    status: str
    claimed: str
    paid: str
    paid_code: str
    anomalies: list[AnomalyOut]


RETURN_TYPES = ("application/xml", "text/xml")


@endpoint(*SENDERS, response=BatchOut, raw_body="application/xml")
async def import_return(ctx: Ctx) -> Response:
    """The insurer's answer (the return file as the body, `application/xml`): applied whole
    or not at all; importing the same return again changes nothing."""
    media = ctx.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in RETURN_TYPES:
        raise UnsupportedMediaType("Send the return file as application/xml.")
    result = await returns.import_return(
        ctx.session, await _tenant(ctx), ctx.path_uuid("batch_id"), await ctx.request.body(),
        max_bytes=ctx.request.state.settings.max_return_bytes)
    return json_response(batch_out(result.batch))


def _anomaly_codes(ctx: Ctx) -> dict[str, anomalies.AnomalyCode]:
    return anomalies.load(ctx.request.state.settings.invoices_dir)


def _figures(ctx: Ctx, batch: ClaimBatch,
             found: tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]],
             ) -> Reconciliation:
    figures, by_code = found
    codes, language = _anomaly_codes(ctx), negotiate(ctx.request.headers.get("accept-language"))
    return Reconciliation(batch_id=batch.id, state=batch.state, **{
        name: Figure(count=value["count"], claimed=cents_str(value["claimed_cents"]),
                     paid=cents_str(value["paid_cents"])) for name, value in figures.items()},
        by_anomaly=[AnomalyFigure(
            code=code, count=value["count"], claimed=cents_str(value["claimed_cents"]),
            paid=cents_str(value["paid_cents"]),
            **{key: described[key] for key in ("label", "resolution")})
            for code, value in sorted(by_code.items(), key=lambda item: -item[1]["count"])
            for described in [anomalies.describe(codes, {"code": code}, language)]])


@endpoint(*READERS, response=Reconciliation)
async def reconcile(ctx: Ctx) -> Response:
    """Claimed, paid, partly paid, rejected, reversed, written off and outstanding, in count
    and amount."""
    batch = await service.get_batch(ctx.session, ctx.tenant_id, ctx.path_uuid("batch_id"))
    found = await returns.reconciliation(ctx.session, ctx.tenant_id, batch)
    return json_response(_figures(ctx, batch, found))


@endpoint(*READERS)
async def reconcile_csv(ctx: Ctx) -> Response:
    """The reconciliation as CSV, for a spreadsheet."""
    batch = await service.get_batch(ctx.session, ctx.tenant_id, ctx.path_uuid("batch_id"))
    figures = _figures(ctx, batch,
                       await returns.reconciliation(ctx.session, ctx.tenant_id, batch))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["status", "count", "claimed", "paid"])
    for name in returns.FIGURES:
        figure: Figure = getattr(figures, name)
        writer.writerow([name, figure.count, figure.claimed, figure.paid])
    for by_code in figures.by_anomaly:
        writer.writerow([f"anomaly {by_code.code}: {by_code.label}", by_code.count,
                         by_code.claimed, by_code.paid])
    return Response(out.getvalue(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{batch.file_reference}.csv"'})


@endpoint(*READERS, query=ClaimLineQuery, response=Page[ClaimLineOut])
async def claim_lines(ctx: Ctx) -> Response:
    """The worklist: claimed lines by the insurer's answer (rejected ones by default)."""
    query = ctx.query(ClaimLineQuery)
    position = decode_cursor(query.cursor, 2)
    after = None
    if position is not None:
        try:
            after = (uuid.UUID(str(position[0])), int(position[1]))
        except (TypeError, ValueError):
            raise bad_cursor() from None
    rows = await returns.worklist(ctx.session, ctx.tenant_id, query.status, query.limit + 1,
                                  after)
    shown = rows[:query.limit]
    cursor = (encode_cursor([str(shown[-1].invoice_id), shown[-1].seq])
              if len(rows) > query.limit else None)
    codes, language = _anomaly_codes(ctx), negotiate(ctx.request.headers.get("accept-language"))
    return json_response(Page[ClaimLineOut](items=[ClaimLineOut(
        invoice_id=row.invoice_id, invoice_number=row.number, stay_id=row.stay_id,
        line=row.seq, code=row.code, day=row.day, status=row.status,
        claimed=cents_str(row.claimed_cents), paid=cents_str(row.paid_cents),
        paid_code=row.paid_code,
        anomalies=[AnomalyOut(**anomalies.describe(codes, anomaly, language))
                   for anomaly in row.anomalies]) for row in shown],
        next_cursor=cursor))


class WriteOffIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: PlainText = Field(min_length=1, max_length=500)


@endpoint(*BILLING, body=WriteOffIn, status=204)
async def write_off(ctx: Ctx) -> Response:
    """Close a rejected, partly paid or reversed line with a reason (audited): it is not
    claimed again.

    The other way to resolve it is a credit note and a corrected invoice, which goes into a
    later batch."""
    data = await ctx.body(WriteOffIn)
    seq = ctx.request.path_params["line"]
    if not seq.isdigit() or len(seq) > 6:
        raise NotFound("No such line.")
    await returns.write_off(ctx.session, ctx.tenant_id, ctx.path_uuid("invoice_id"), int(seq),
                            data.reason)
    return Response(status_code=204)

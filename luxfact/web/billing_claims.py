"""Claim batches (build, validate, freeze, download, send, the insurer's return and the
reconciliation) and the worklist of the lines the insurer did not pay whole. Mirrors
`luxfact/claims/api.py`: the same services, schemas and audit."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.billing import service as billing_service
from luxfact.billing.repository import BillingRepository
from luxfact.billing.schemas import CreditNoteIn
from luxfact.claims import anomalies, returns, service
from luxfact.claims.api import frozen_file
from luxfact.claims.models import ClaimBatch
from luxfact.claims.repository import ClaimRepository
from luxfact.claims.schemas import BatchIn
from luxfact.http.pagination import decode_cursor, decode_time_cursor, encode_cursor
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.types import PlainText
from luxfact.web.billing import (
    BILLING,
    PAGE_SIZE,
    attempt,
    parse_uuid,
    path_uuid,
    query_string,
    render,
    schema_errors,
    service_errors,
    tenant_of,
)
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

STATES = {"open": N_("Open"), "validated": N_("Validated"), "frozen": N_("Frozen"),
          "sent": N_("Sent"), "answered": N_("Answered"), "reconciled": N_("Reconciled")}
FIGURES = {"claimed": N_("Claimed"), "paid": N_("Paid"), "partly_paid": N_("Partly paid"),
           "rejected": N_("Rejected"), "reversed": N_("Reversed"),
           "written_off": N_("Written off"), "credited": N_("Credited (to claim again)"),
           "outstanding": N_("Not answered yet")}
# The worklist's statuses: what the insurer did not pay whole, and how it was resolved.
LINE_STATUSES = {"rejected": N_("Rejected"), "partly_paid": N_("Partly paid"),
                 "reversed": N_("Reversed"), "credited": N_("Credited"),
                 "written_off": N_("Written off")}
RESOLUTIONS = {"correct": N_("Correct it: credit the line and bill the stay again"),
               "write_off": N_("Write it off: the insurer will not pay it"),
               "check": N_("Check the insurer's motif")}
BUILD_MESSAGES = {"payer": N_("Enter the payer: letters, digits, spaces, dots, dashes or "
                              "slashes."),
                  "period": N_("Enter the month as YYYY-MM.")}
REASON_NEEDED = N_("Give a reason: one line, at most 500 characters.")
BAD_CURSOR = N_("This page link is not valid: start from the first page.")
ERRORS_SHOWN = 200


class WriteOffIn(BaseModel):
    """The API's write-off body (`claims.api.WriteOffIn`)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reason: PlainText = Field(min_length=1, max_length=500)


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/claims", batches, methods=["GET"]),
        Route("/desk/claims", build_batch, methods=["POST"]),
        Route("/desk/claims/{batch_id}", batch_page, methods=["GET"]),
        Route("/desk/claims/{batch_id}/validate", validate_batch, methods=["POST"]),
        Route("/desk/claims/{batch_id}/freeze", freeze_batch, methods=["POST"]),
        Route("/desk/claims/{batch_id}/sent", mark_sent, methods=["POST"]),
        Route("/desk/claims/{batch_id}/file", batch_file, methods=["GET"]),
        Route("/desk/claims/{batch_id}/return", import_return, methods=["POST"]),
        Route("/desk/claims/{batch_id}/reconciliation", reconciliation, methods=["GET"]),
        Route("/desk/claims/{batch_id}/totals", live_totals, methods=["GET"]),
        Route("/desk/claim-lines", claim_lines, methods=["GET"]),
        Route("/desk/claim-lines/{invoice_id}/{line}/write-off", write_off, methods=["POST"]),
        Route("/desk/claim-lines/{invoice_id}/{line}/credit", credit_line, methods=["POST"]),
    ]


# ------------------------------------------------------------------------------ batches


@page(*BILLING)
async def batches(desk: Desk) -> Response:
    return await _batches(desk)


async def _batches(desk: Desk, status: int = 200,
                   typed: dict[str, str] | None = None) -> Response:
    """Claim batches, newest first, with the form that builds one."""
    params = desk.request.query_params
    state = params.get("state", "")
    if state not in STATES:
        state = ""
    try:
        after = decode_time_cursor(params.get("cursor") or None)
    except ValidationFailed:
        after = None
        desk.errors.setdefault("cursor", desk._(BAD_CURSOR))
    rows = await ClaimRepository(desk.session, desk.tenant_id).page(
        limit=PAGE_SIZE + 1, after=after, state=state or None)
    shown = rows[:PAGE_SIZE]
    next_link = None
    if len(rows) > PAGE_SIZE:
        next_link = "/desk/claims" + query_string({"state": state, "cursor": encode_cursor(
            [shown[-1].created_at.isoformat(), str(shown[-1].id)])})
    on = billing_service.today()
    return render(desk, "claims.html", status, batches=shown, next_link=next_link,
                  state=state, states=STATES, typed=typed or {
                      "payer": "CNS", "period": on.strftime("%Y-%m")},
                  state_options=[("", desk._("All")), *((value, desk._(text))
                                                       for value, text in STATES.items())],
                  idem=uuid.uuid4())


@page(*BILLING)
async def build_batch(desk: Desk) -> Response:
    """Gather the issued insurer invoices of a payer and month not claimed yet (the open
    batch of that month when there is one)."""
    typed = {"payer": desk.value("payer"), "period": desk.value("period")}
    try:
        data = BatchIn.model_validate(typed)
    except ValidationError as error:
        schema_errors(desk, error, BUILD_MESSAGES)
        return await _batches(desk, 422, typed)
    tenant = await tenant_of(desk)

    async def make() -> str:
        batch, _created = await service.build(desk.session, tenant, data, desk.user.actor)
        return f"/desk/claims/{batch.id}"

    try:
        async with attempt(desk):
            return await desk.once(make)
    except ValidationFailed as error:
        service_errors(desk, error, ("payer", "period"))
        return await _batches(desk, 422, typed)


@page(*BILLING)
async def batch_page(desk: Desk) -> Response:
    return await _batch(desk, path_uuid(desk, "batch_id"))


async def _batch(desk: Desk, batch_id: uuid.UUID, status: int = 200, *,
                 batch_errors: list[Any] | None = None, problem: str = "",
                 reasons: list[str] | None = None) -> Response:
    """A batch: its state, counts and totals, what can be done next, and once answered the
    reconciliation."""
    batch = await service.get_batch(desk.session, desk.tenant_id, batch_id)
    notice = ""
    if desk.request.query_params.get("imported") == "0":
        notice = desk._("This return was imported already: nothing changed.")
    elif desk.request.query_params.get("imported") == "1":
        notice = desk._("The return is imported.")
    shown = (batch_errors or [])[:ERRORS_SHOWN]
    return render(desk, "claim.html", status, batch=batch, states=STATES,
                  live=batch.state in ("open", "validated"),
                  answered=batch.state in ("answered", "reconciled"), batch_errors=shown,
                  more_errors=max(0, len(batch_errors or []) - len(shown)), problem=problem,
                  reasons=reasons or [], notice=notice)


@page(*BILLING)
async def live_totals(desk: Desk) -> Response:
    """The lines and amounts of a batch not frozen yet, as they stand: the sums the file's
    header will carry (`claimed_totals`, over every line of the batch). The batch page
    loads them after itself (htmx); without script, a page of its own."""
    batch = await service.get_batch(desk.session, desk.tenant_id, path_uuid(desk, "batch_id"))
    totals = None
    if batch.state in ("open", "validated"):
        _invoices, lines, gross, net = await ClaimRepository(
            desk.session, desk.tenant_id).claimed_totals(batch.id)
        totals = {"lines": lines, "gross": gross, "net": net}
    template = ("claim_totals.html" if desk.request.headers.get("hx-request")
                else "claim_totals_page.html")
    return render(desk, template, batch=batch, totals=totals)


@page(*BILLING)
async def reconciliation(desk: Desk) -> Response:
    """The reconciliation of an answered batch. The batch page loads it after itself (htmx):
    `returns.reconciliation` reads every line of the batch, a month of a hospital's claims,
    and the page's state and actions need not wait for it. Without script, a page of its
    own."""
    batch = await service.get_batch(desk.session, desk.tenant_id, path_uuid(desk, "batch_id"))
    figures = await _reconciliation(desk, batch) if batch.state in ("answered",
                                                                    "reconciled") else None
    template = ("claim_reconciliation.html" if desk.request.headers.get("hx-request")
                else "claim_reconciliation_page.html")
    return render(desk, template, batch=batch, reconciliation=figures)


async def _reconciliation(desk: Desk, batch: ClaimBatch) -> dict[str, Any]:
    """`returns.reconciliation` with the anomalies' labels in the user's language."""
    figures, by_code = await returns.reconciliation(desk.session, desk.tenant_id, batch)
    codes = anomalies.load(desk.request.state.settings.invoices_dir)
    return {
        "figures": [(name, label, figures[name]) for name, label in FIGURES.items()],
        "by_anomaly": [{**value, **anomalies.describe(codes, {"code": code}, desk.language)}
                       for code, value in sorted(by_code.items(),
                                                 key=lambda item: (-item[1]["count"], item[0]))],
        "resolutions": RESOLUTIONS}


async def _refused(desk: Desk, batch_id: uuid.UUID, error: ValidationFailed) -> Response:
    """Validation or freezing refused: every error pinned to its invoice and line (what the
    API's GET .../errors lists), or the service's own reasons when no rule names a line."""
    tenant = await tenant_of(desk)
    batch = await service.get_batch(desk.session, desk.tenant_id, batch_id)
    pinned = await service.errors_of(desk.session, tenant, batch)
    reasons = [] if pinned else [desk.translate_reason(str(item.get("reason", "")))
                                 for item in error.errors or []]
    return await _batch(desk, batch_id, 422, batch_errors=pinned,
                        problem=desk.translate_reason(error.detail), reasons=reasons)


async def _transition(desk: Desk, step: Callable[..., Awaitable[Any]]) -> Response:
    """Run one step of the batch's life (validate, freeze, sent): the batch page again,
    or the page with the errors (422) or the reason it cannot be done now (409)."""
    batch_id = path_uuid(desk, "batch_id")
    tenant = await tenant_of(desk)
    try:
        async with attempt(desk):
            await step(desk.session, tenant, batch_id)
    except ValidationFailed as error:
        return await _refused(desk, batch_id, error)
    except Conflict as error:
        return await _batch(desk, batch_id, 409, problem=desk.translate_reason(error.detail))
    return desk.redirect(f"/desk/claims/{batch_id}")


@page(*BILLING)
async def validate_batch(desk: Desk) -> Response:
    """Check every invoice and line: the batch is `validated`, or the errors are listed."""
    return await _transition(desk, service.validate)


@page(*BILLING)
async def freeze_batch(desk: Desk) -> Response:
    """Validate, then write and store the claim file: nothing in the batch changes after."""
    return await _transition(desk, service.freeze)


@page(*BILLING)
async def mark_sent(desk: Desk) -> Response:
    """Say the frozen file was sent to the insurer."""
    return await _transition(desk, service.mark_sent)


@page(*BILLING)
async def batch_file(desk: Desk) -> Response:
    """The frozen claim file, byte for byte, streamed from its stored pieces."""
    batch = await service.get_batch(desk.session, desk.tenant_id, path_uuid(desk, "batch_id"))
    return frozen_file(desk.request.state.db, desk.tenant_id, batch)


@page(*BILLING)
async def import_return(desk: Desk) -> Response:
    """The insurer's return file, uploaded (field `file`): applied whole or not at all;
    the same return again changes nothing."""
    batch_id = path_uuid(desk, "batch_id")
    upload = desk.form.get("file") if desk.form is not None else None
    data = b""
    if isinstance(upload, UploadFile):
        data = await upload.read()
    if not data:
        desk.errors["file"] = desk._("Choose the insurer's return file (XML): this one is "
                                     "missing or empty.")
        return await _batch(desk, batch_id, 422)
    tenant = await tenant_of(desk)
    try:
        async with attempt(desk):
            result = await returns.import_return(
                desk.session, tenant, batch_id, data,
                max_bytes=desk.request.state.settings.max_return_bytes)
    except ValidationFailed as error:
        desk.errors["file"] = desk.translate_reason(error.detail)
        return await _batch(desk, batch_id, 422, reasons=[
            desk.translate_reason(str(item.get("reason", ""))) for item in error.errors or []])
    except Conflict as error:
        return await _batch(desk, batch_id, 409, problem=desk.translate_reason(error.detail))
    return desk.redirect(f"/desk/claims/{batch_id}?imported={int(result.changed)}")


# ----------------------------------------------------------------------------- worklist


@page(*BILLING)
async def claim_lines(desk: Desk) -> Response:
    return await _worklist(desk)


async def _worklist(desk: Desk, status_code: int = 200, *, status: str | None = None,
                    cursor: str | None = None, typed: dict[str, str] | None = None) -> Response:
    """The claimed lines the insurer did not pay whole, by status, with what to do."""
    params = desk.request.query_params
    status = status if status is not None else params.get("status", "rejected")
    cursor = cursor if cursor is not None else params.get("cursor", "")
    if status not in LINE_STATUSES:
        desk.errors["status"] = desk._("Choose a status from the list.")
        status, status_code = "rejected", 422
    after = None
    try:
        position = decode_cursor(cursor or None, 2)
        if position is not None:
            after = (uuid.UUID(str(position[0])), int(position[1]))
    except (ValidationFailed, TypeError, ValueError):
        desk.errors["cursor"] = desk._(BAD_CURSOR)
        cursor, status_code = "", 422
    rows = await returns.worklist(desk.session, desk.tenant_id, status, PAGE_SIZE + 1, after)
    shown = rows[:PAGE_SIZE]
    next_link = None
    if len(rows) > PAGE_SIZE:
        next_link = "/desk/claim-lines" + query_string({"status": status, "cursor": encode_cursor(
            [str(shown[-1].invoice_id), shown[-1].seq])})
    codes = anomalies.load(desk.request.state.settings.invoices_dir)
    items = [{
        "key": f"{row.invoice_id}-{row.seq}", "idem": uuid.uuid4(), "invoice_id": row.invoice_id,
        "number": row.number, "stay_id": row.stay_id, "line": row.seq, "code": row.code,
        "day": row.day, "status": row.status, "claimed": row.claimed_cents,
        "paid": row.paid_cents, "paid_code": row.paid_code,
        "anomalies": [anomalies.describe(codes, anomaly, desk.language)
                      for anomaly in row.anomalies]} for row in shown]
    note = await _credit_note_done(desk)
    return render(desk, "claim_lines.html", status_code, items=items, line_status=status,
                  cursor=cursor, next_link=next_link, statuses=LINE_STATUSES,
                  resolutions=RESOLUTIONS, typed=typed or {}, note=note,
                  written_off=params.get("done") == "written_off",
                  actionable=status in returns.UNRESOLVED,
                  status_options=[(value, desk._(text)) for value, text in LINE_STATUSES.items()])


async def _credit_note_done(desk: Desk) -> Any:
    """The credit note just issued from the worklist (named in the URL), for its notice."""
    note_id = parse_uuid(desk.request.query_params.get("note", ""))
    if note_id is None:
        return None
    note = await BillingRepository(desk.session, desk.tenant_id).get(note_id)
    return note if note is not None and note.doc_type == "credit_note" else None


def _line_number(desk: Desk) -> int:
    seq = str(desk.request.path_params["line"])
    if not seq.isdigit() or len(seq) > 6:
        raise NotFound("No such line.")
    return int(seq)


@page(*BILLING)
async def write_off(desk: Desk) -> Response:
    """Close a rejected, partly paid or reversed line with a reason (audited)."""
    invoice_id, seq = path_uuid(desk, "invoice_id"), _line_number(desk)
    key = f"{invoice_id}-{seq}"
    status, cursor = desk.value("status", "rejected"), desk.value("cursor")
    typed = {f"off-{key}": desk.value("reason")}
    try:
        data = WriteOffIn(reason=desk.value("reason"))
    except ValidationError:
        desk.errors[f"off-{key}"] = desk._(REASON_NEEDED)
        return await _worklist(desk, 422, status=status, cursor=cursor, typed=typed)
    try:
        async with attempt(desk):
            await returns.write_off(desk.session, desk.tenant_id, invoice_id, seq, data.reason)
    except Conflict as error:
        desk.errors[f"off-{key}"] = desk.translate_reason(error.detail)
        return await _worklist(desk, 409, status=status, cursor=cursor, typed=typed)
    return desk.redirect("/desk/claim-lines" + query_string(
        {"status": status if status in LINE_STATUSES else "rejected", "done": "written_off"}))


@page(*BILLING)
async def credit_line(desk: Desk) -> Response:
    """Resolve a refused line by a credit note of that line: its act is released, and the
    stay can be billed again, corrected (the preview page)."""
    invoice_id, seq = path_uuid(desk, "invoice_id"), _line_number(desk)
    key = f"{invoice_id}-{seq}"
    status, cursor = desk.value("status", "rejected"), desk.value("cursor")
    typed = {f"credit-{key}": desk.value("reason")}
    try:
        data = CreditNoteIn(reason=desk.value("reason"), lines=[seq])
    except ValidationError:
        desk.errors[f"credit-{key}"] = desk._(REASON_NEEDED)
        return await _worklist(desk, 422, status=status, cursor=cursor, typed=typed)
    tenant = await tenant_of(desk)
    back = status if status in LINE_STATUSES else "rejected"

    async def make() -> str:
        note, _lines = await billing_service.credit(desk.session, tenant, invoice_id, data,
                                                    desk.user.actor)
        return "/desk/claim-lines" + query_string({"status": back, "note": note.id})

    try:
        async with attempt(desk):
            return await desk.once(make)
    except (Conflict, ValidationFailed) as error:
        reason = error.errors[0].get("reason", "") if error.errors else error.detail
        desk.errors[f"credit-{key}"] = desk.translate_reason(str(reason))
        return await _worklist(desk, error.status, status=status, cursor=cursor, typed=typed)

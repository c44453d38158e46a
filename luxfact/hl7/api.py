"""/api/v1/hl7: HL7 v2 messages over HTTP, and the log of messages received."""

from starlette.requests import Request
from starlette.responses import Response

from luxfact.audit.service import record
from luxfact.auth.roles import Role
from luxfact.hl7 import parse, service
from luxfact.hl7.repository import HL7Repository
from luxfact.hl7.schemas import MessageOut, MessageQuery, ReplayOut, ReplayQuery
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, decode_time_cursor, encode_cursor
from luxfact.kit.errors import UnsupportedMediaType

ER7 = "x-application/hl7-v2+er7"
MEDIA_TYPES = (ER7, "text/plain", "application/hl7-v2+er7", "application/hl7-v2")
_BODY = "luxfact.hl7_body"


def raw_text(raw: bytes) -> str:
    try:
        return parse.decode(raw)[0]
    except parse.Rejected:
        return raw.decode("utf-8", errors="replace")


def message_out(row: object, with_raw: bool) -> MessageOut:
    data = {name: getattr(row, name) for name in MessageOut.model_fields if name != "raw"}
    return MessageOut(**data, raw=raw_text(row.raw) if with_raw else None)  # type: ignore[attr-defined]


async def _read_body(request: Request) -> None:
    """The body's first bytes, up to one more than a message may have, and its size, kept in
    the request's scope (`request.state` may be shared between requests: the lifespan's): a
    larger body is read to its end (LUXFACT_MAX_HL7_BODY_BYTES bounds it) and not held.
    Read before the transaction opens."""
    head, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if len(head) <= parse.MAX_BYTES:
            head += chunk[:parse.MAX_BYTES + 1 - len(head)]
    request.scope[_BODY] = (bytes(head), size)


# Documented as text/plain (what every HTTP client and tool knows); ER7's own media type is
# accepted the same way.
@endpoint(Role.integration, Role.admin, raw_body="text/plain", read_first=_read_body)
async def receive_message(ctx: Ctx) -> Response:
    """Deliver one HL7 v2 message (ER7, `x-application/hl7-v2+er7` or `text/plain`).

    The answer is the message's ACK in the same media type, with status 200 whatever the
    acknowledgement code: MSA-1 `AA` (applied), `AE` (refused, nothing applied: ERR and MSA-3
    say why) or `AR` (cannot be processed). A control id (MSH-10) received before from the
    same sending facility is not applied again: its first ACK is sent again."""
    media = ctx.request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in MEDIA_TYPES:
        raise UnsupportedMediaType(f"Send one HL7 v2 message as {ER7} or text/plain.")
    body, size = ctx.request.scope[_BODY]
    parsed: parse.Parsed | None = None
    rejection: parse.Rejected | None = None
    if size > parse.MAX_BYTES:  # as over MLLP: answered AR, its beginning kept
        rejection = parse.TransportRejected(
            f"the message is over {parse.MAX_BYTES} bytes ({size}): not processed",
            parse.Location("MSH"), parse.DATA_TYPE, parse.header_of(body))
        body = body[:parse.KEPT_BYTES]
    else:
        try:
            parsed = parse.read(body)
        except parse.Rejected as exc:
            rejection = exc
    received = await service.receive(ctx.session, ctx.tenant_id, body, channel="http",
                                     parsed=parsed, rejection=rejection, size=size)
    payload, charset = received.encoded(), received.charset
    return Response(payload, media_type=f"{media}; charset={charset}")


@endpoint(Role.admin, Role.integration, query=MessageQuery, response=Page[MessageOut])
async def list_messages(ctx: Ctx) -> Response:
    """Messages received, newest first; the raw message (patient data) for administrators
    only."""
    query = ctx.query(MessageQuery)
    with_raw = ctx.principal.role == Role.admin
    rows = await HL7Repository(ctx.session, ctx.tenant_id).page(
        limit=query.limit + 1, status=query.status, with_raw=with_raw,
        after=decode_time_cursor(query.cursor))
    shown = rows[: query.limit]
    if with_raw and shown:
        # The raw messages carry patients' data (names, matricules): reading them is audited
        # as a patient search is, its `results` the patients they name (which a patient's
        # export finds, the others' ids left out: privacy/export.py `_own`).
        patients = sorted({str(p) for row in shown for p in row.patient_ids})
        await record(ctx.session, "hl7.read", "hl7_message", "list",
                     {"results": patients, "messages": len(shown)}, tenant_id=ctx.tenant_id)
    cursor = None
    if len(rows) > query.limit and shown:
        cursor = encode_cursor([shown[-1].received_at.isoformat(), str(shown[-1].id)])
    return json_response(Page[MessageOut](items=[message_out(r, with_raw) for r in shown],
                                          next_cursor=cursor))


@endpoint(Role.admin, query=ReplayQuery, response=ReplayOut)
async def replay_message(ctx: Ctx) -> Response:
    """Apply a refused message again (after the missing data was fixed); a message applied
    already is not applied twice. 409 when other messages of its visit were applied since
    it came, listing them (`applied_since`), unless `force=true`."""
    message, applied = await service.replay(ctx.session, ctx.tenant_id,
                                            ctx.path_uuid("message_id"),
                                            force=ctx.query(ReplayQuery).force)
    # The answer shows the message whole (patient data), replayed or not: a read of the
    # patients it names, audited as the list's is.
    await record(ctx.session, "hl7.read", "hl7_message", message.id,
                 {"results": sorted(str(p) for p in message.patient_ids), "messages": 1},
                 tenant_id=ctx.tenant_id)
    return json_response(ReplayOut(applied=applied, message=message_out(message, True)))

"""Claim batches: build one per payer and month, validate it, freeze its XML file, send it.

Never commits: the request (or the command) commits or rolls back the whole.
"""

import asyncio
import contextlib
import functools
import hashlib
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.claims import xml
from luxfact.claims.document import (
    ClaimHeader,
    ClaimInvoice,
    ClaimLine,
    ClaimStay,
    ClaimTotals,
)
from luxfact.claims.models import ClaimBatch
from luxfact.claims.repository import ClaimRepository
from luxfact.claims.schemas import BatchError, BatchIn
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.money import from_cents
from luxfact.kit.time import LUXEMBOURG, month_bounds, utcnow
from luxfact.observability.metrics import CLAIM_BATCH_FREEZE, CLAIM_BATCH_LINES
from luxfact.patients.matricule import InvalidMatricule, parse
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import service as tariffs
from luxfact.tenancy.models import Tenant
from luxfact.webhooks.service import emit

# How many invoices are read (and written) at a time: memory stays flat whatever the batch.
CHUNK = 500


async def build(session: AsyncSession, tenant: Tenant, data: BatchIn,
                actor: str) -> tuple[ClaimBatch, bool]:
    """The open batch of this payer and month, made now if there is none: (batch, created)."""
    repo = ClaimRepository(session, tenant.id)
    existing = await repo.open_batch(data.payer, data.period)
    if existing is not None:
        return existing, False
    start, end = month_bounds(int(data.period[:4]), int(data.period[5:7]))
    invoice_ids = await repo.claimable(data.payer, start, end)
    if not invoice_ids:
        # A concurrent build may have just taken them all into its batch: that is the one.
        existing = await repo.open_batch(data.payer, data.period)
        if existing is not None:
            return existing, False
        raise ValidationFailed(
            f"No invoice of {data.payer} issued in {data.period} is left to claim.",
            errors=[{"field": "period", "reason": "no insurer invoice to claim in this month"}])
    batch_id = uuid.uuid4()
    reference = f"LXF-{tenant.cns_provider_code}-{data.period.replace('-', '')}-" \
                f"{batch_id.hex[:8].upper()}"
    created = await repo.insert_open({
        "id": batch_id, "payer": data.payer, "period": data.period, "state": "open",
        "file_reference": reference, "invoice_count": len(invoice_ids), "line_count": 0,
        "gross_cents": 0, "net_cents": 0, "actor": actor, "version": 1,
        "created_at": utcnow()})
    if not created:
        # A concurrent build made the batch first: that one is the batch of this month.
        existing = await repo.open_batch(data.payer, data.period)
        assert existing is not None
        return existing, False
    await repo.add_invoices(batch_id, invoice_ids)
    await record(session, "claim_batch.build", "claim_batch", batch_id,
                 {"payer": data.payer, "period": data.period, "invoices": len(invoice_ids)},
                 tenant_id=tenant.id)
    batch = await repo.get(batch_id)
    assert batch is not None
    return batch, True


async def get_batch(session: AsyncSession, tenant_id: uuid.UUID, batch_id: uuid.UUID,
                    *, lock: bool = False) -> ClaimBatch:
    batch = await ClaimRepository(session, tenant_id).get(batch_id, lock=lock)
    if batch is None:
        raise NotFound("No such claim batch.")
    return batch


# ------------------------------------------------------------------------- the contents


@dataclass
class _Loaded:
    invoice: Any
    claim: ClaimInvoice | None
    errors: list[BatchError]


async def _load(session: AsyncSession, tenant: Tenant, batch: ClaimBatch,
                invoice_ids: list[uuid.UUID]) -> list[_Loaded]:
    """Invoices of a chunk with what the claim file says of them, and what is wrong."""
    found = await ClaimRepository(session, tenant.id).contents(invoice_ids)
    snapshot = await tariffs.snapshot(session, tenant.id)
    loaded = []
    for invoice_id in invoice_ids:
        invoice = found["invoices"][invoice_id]
        lines = found["lines"][invoice_id]
        patient = found["patients"][invoice.patient_id]
        errors = _check(invoice, lines, patient, snapshot, found["others"].get(invoice_id),
                        batch.id)
        claim = None
        if not errors:
            claim = _claim_invoice(invoice, lines, patient, found["stays"][invoice.stay_id],
                                   found["coverages"].get(invoice.coverage_id))
        loaded.append(_Loaded(invoice, claim, errors))
    return loaded


def _check(invoice: Any, lines: list[Any], patient: Any, snapshot: cat.TariffSnapshot,
           other_batch: uuid.UUID | None, batch_id: uuid.UUID) -> list[BatchError]:
    """The business rules a claim must satisfy before the insurer sees it."""
    errors: list[BatchError] = []

    def error(field: str, reason: str, line: int | None = None) -> None:
        errors.append(BatchError(invoice_id=invoice.id, invoice_number=invoice.number,
                                 stay_id=invoice.stay_id, line=line, field=field,
                                 reason=reason))

    if not patient.matricule:
        error("matricule", "the patient has no national identification number "
                           f"({patient.no_matricule_reason or 'unknown'}): register it first")
    else:
        try:
            parse(patient.matricule)
        except InvalidMatricule as exc:
            error("matricule", f"the patient's identification number is invalid: {exc}")
    if other_batch is not None and other_batch != batch_id:
        error("invoice", "already claimed in another batch")
    if not lines:
        error("lines", "every line of the invoice is credited: nothing to claim")
    if sum(line.amount_cents for line in lines) <= 0 and lines:
        error("total", "the invoice claims nothing")
    for line in lines:
        if not line.is_act:
            error("code", "the daily participation is the patient's: not claimable", line.seq)
            continue
        try:
            # Priced when billed, but the catalogue may have withdrawn the code for that
            # day since (a retroactive correction): the insurer would refuse the line.
            snapshot.act(line.code, line.day)
        except cat.CatalogueError as exc:
            error("code", f"{line.code} is not valid on {line.day} any more: {exc}; credit "
                  "the invoice, correct or cancel the act, and bill the stay again", line.seq)
        if line.amount_cents < 0:
            error("amount", "negative amount", line.seq)
    return errors


def _local(moment: datetime | None) -> datetime | None:
    return moment.astimezone(LUXEMBOURG) if moment else None


# A month's lines repeat a few hundred prices: each Decimal is made once, not a million times.
_euros = functools.lru_cache(maxsize=65536)(from_cents)


def _claim_invoice(invoice: Any, lines: list[Any], patient: Any, stay: Any,
                   coverage: Any) -> ClaimInvoice:
    claim_lines = []
    for line in lines:
        claim_lines.append(ClaimLine(
            reference=str(line.seq), code=line.code,
            # JSON text, parsed only when there is something in it (most acts have none).
            modifiers=tuple(json.loads(line.modifiers)) if line.modifiers not in (
                None, "[]") else (),
            day=line.day, quantity=line.quantity, gross=_euros(line.gross_cents),
            net=_euros(line.amount_cents), performer=line.performer))
    return ClaimInvoice(
        number=invoice.number, matricule=patient.matricule, issued_on=invoice.issued_on,
        stay=ClaimStay(
            reference=stay.external_id or str(stay.id), kind=stay.kind,
            admitted_at=_local(stay.admitted_at),  # type: ignore[arg-type]
            discharged_at=_local(stay.discharged_at), unit=stay.unit or "",
            room_class=stay.room_class, payer=invoice.payer,
            member_number=coverage.member_number if coverage else "",
            accident_number=coverage.accident_number if coverage else None),
        lines=tuple(claim_lines))


async def errors_of(session: AsyncSession, tenant: Tenant, batch: ClaimBatch) -> list[BatchError]:
    """Every error of the batch, pinned to its invoice and line."""
    ids = await ClaimRepository(session, tenant.id).invoice_ids(batch.id)
    found: list[BatchError] = []
    for start in range(0, len(ids), CHUNK):
        for item in await _load(session, tenant, batch, ids[start:start + CHUNK]):
            found.extend(item.errors)
    return found


def _refusal(errors: list[BatchError]) -> ValidationFailed:
    return ValidationFailed(
        f"The batch has {len(errors)} error(s): correct them (GET .../errors lists them).",
        errors=[{"field": f"invoices.{e.invoice_number}"
                          + (f".lines.{e.line}" if e.line else "") + f".{e.field}",
                 "reason": e.reason} for e in errors[:200]])


async def _changeable(session: AsyncSession, tenant: Tenant, batch_id: uuid.UUID) -> ClaimBatch:
    batch = await get_batch(session, tenant.id, batch_id, lock=True)
    if batch.state not in ("open", "validated"):
        raise Conflict(f"The batch is {batch.state}: nothing in it can change.")
    return batch


async def validate(session: AsyncSession, tenant: Tenant, batch_id: uuid.UUID) -> ClaimBatch:
    batch = await _changeable(session, tenant, batch_id)
    errors = await errors_of(session, tenant, batch)
    if errors:
        raise _refusal(errors)
    await ClaimRepository(session, tenant.id).update(batch.id, {"state": "validated"})
    return await get_batch(session, tenant.id, batch.id)


class _Refused(Exception):
    """Business-rule errors found while the file was being written: nothing is kept."""

    def __init__(self, errors: list[BatchError]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


async def freeze(session: AsyncSession, tenant: Tenant, batch_id: uuid.UUID,
                 advance: Callable[[int], None] = lambda n: None) -> ClaimBatch:
    """Validate and write the file in one reading of the invoices (each checked against the
    business rules, then against the schema), store its bytes and SHA-256: from now on
    nothing in the batch changes. Any error refuses the whole and stores nothing."""
    started = time.perf_counter()
    batch = await _changeable(session, tenant, batch_id)
    repo = ClaimRepository(session, tenant.id)
    ids = await repo.invoice_ids(batch.id)
    summed = await repo.claimed_totals(batch.id)
    totals = ClaimTotals(invoices=summed[0], lines=summed[1], gross=from_cents(summed[2]),
                         net=from_cents(summed[3]))
    header = ClaimHeader(
        provider_code=tenant.cns_provider_code, payer=batch.payer,
        sent_on=utcnow().astimezone(LUXEMBOURG).date(), file_reference=batch.file_reference,
        year=int(batch.period[:4]), month=int(batch.period[5:7]))
    # Written to a temporary file and hashed on the way: memory stays flat however big.
    out = _Hashing(tempfile.TemporaryFile())  # noqa: SIM115 (closed below)
    chunks = [ids[start:start + CHUNK] for start in range(0, len(ids), CHUNK)]
    # The writer is synchronous (lxml's incremental writer) and runs in a thread; the
    # invoices are read on the event loop, a chunk at a time, as it asks for them.
    stream = _stream(session, tenant, batch, chunks, advance)
    invoices = _blocking(stream, asyncio.get_running_loop())
    try:
        try:
            await asyncio.to_thread(xml.write_claim, out, header, totals, invoices)
        finally:
            await stream.aclose()  # a chunk being read ahead is stopped before we go on
    except _Refused as refused:
        out.file.close()
        raise _refusal(refused.errors) from None
    except xml.InvalidInvoice as exc:
        out.file.close()
        raise ValidationFailed(f"Invoice {exc.number} does not match the claim schema.",
                               errors=[{"field": f"invoices.{exc.number}", "reason": message}
                                       for message in exc.messages]) from None
    except xml.ClaimsXmlError as exc:
        # The header, or totals that changed while the file was written: nothing is stored.
        out.file.close()
        raise ValidationFailed(f"The claim file could not be written: {exc}",
                               errors=[{"field": "batch", "reason": str(exc)}]) from None
    except BaseException:
        out.file.close()
        raise
    digest, size = out.sha256.hexdigest(), out.size
    out.file.seek(0)
    try:
        await repo.store_file(batch.id, out.file)
    finally:
        out.file.close()
    await repo.update(batch.id, {
        "state": "frozen", "sha256": digest, "size": size,
        "line_count": totals.lines, "gross_cents": summed[2], "net_cents": summed[3],
        "frozen_at": utcnow()})
    await record(session, "claim_batch.freeze", "claim_batch", batch.id,
                 {"sha256": digest, "invoices": totals.invoices, "lines": totals.lines},
                 tenant_id=tenant.id)
    await emit(session, tenant.id, "claim_batch.frozen", {
        "batch_id": str(batch.id), "payer": batch.payer, "period": batch.period,
        "file_reference": batch.file_reference, "invoices": totals.invoices,
        "lines": totals.lines, "gross": str(totals.gross), "net": str(totals.net),
        "sha256": digest})
    CLAIM_BATCH_LINES.observe(totals.lines)
    CLAIM_BATCH_FREEZE.observe(time.perf_counter() - started)
    return await get_batch(session, tenant.id, batch.id)


async def _stream(session: AsyncSession, tenant: Tenant, batch: ClaimBatch,
                  chunks: list[list[uuid.UUID]],
                  advance: Callable[[int], None]) -> AsyncIterator[list[ClaimInvoice]]:
    """The batch's invoices for the file, a chunk at a time; the next chunk is read while
    the writer writes this one (the database works on another core meanwhile). After a
    first error the rest is only checked, so that every error is listed, and the writer
    gets _Refused instead of the end."""
    errors: list[BatchError] = []
    following: asyncio.Future[list[_Loaded]] | None = None
    try:
        for n, chunk in enumerate(chunks):
            loaded = await following if following is not None else \
                await _load(session, tenant, batch, chunk)
            # One query at a time on the session: the next starts once this one is done.
            following = (asyncio.ensure_future(_load(session, tenant, batch, chunks[n + 1]))
                         if n + 1 < len(chunks) else None)
            for item in loaded:
                errors.extend(item.errors)
            if not errors:
                yield [item.claim for item in loaded if item.claim is not None]
            advance(len(chunk))
    finally:
        if following is not None and not following.done():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await following
    if errors:
        raise _Refused(errors)


def _blocking(source: AsyncIterator[list[ClaimInvoice]],
              loop: asyncio.AbstractEventLoop) -> Iterator[ClaimInvoice]:
    """An async iterator of chunks, read from another thread one invoice at a time."""
    async def following() -> list[ClaimInvoice]:
        return await anext(source)

    while True:
        try:
            chunk = asyncio.run_coroutine_threadsafe(following(), loop).result()
        except StopAsyncIteration:
            return
        yield from chunk


class _Hashing:
    """A binary file that keeps the SHA-256 and size of what is written to it."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()


async def mark_sent(session: AsyncSession, tenant: Tenant, batch_id: uuid.UUID) -> ClaimBatch:
    batch = await get_batch(session, tenant.id, batch_id, lock=True)
    if batch.state != "frozen":
        raise Conflict(f"The batch is {batch.state}: only a frozen batch is sent.")
    await ClaimRepository(session, tenant.id).update(batch.id, {"state": "sent",
                                                               "sent_at": utcnow()})
    await record(session, "claim_batch.sent", "claim_batch", batch.id, {}, tenant_id=tenant.id)
    return await get_batch(session, tenant.id, batch.id)


"""Stay use cases: admit, move, discharge, cancel, and the coverage check. Never commits."""

import contextlib
import uuid
from bisect import bisect_right
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import event_values, record, record_many
from luxfact.kit import context
from luxfact.kit.errors import Conflict, LuxfactError, NotFound, ValidationFailed
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.patients.models import Coverage, Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.service import STATUTORY_KINDS
from luxfact.stays import movements as rules
from luxfact.stays.models import Movement, Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import ActPatch, CoverageGap, MovementIn, StayIn, StayPatch
from luxfact.webhooks.service import emit


def local_day(moment: datetime) -> date:
    return moment.astimezone(LUXEMBOURG).date()


async def patient_of_tenant(session: AsyncSession, tenant_id: uuid.UUID,
                            patient_id: uuid.UUID, field: str = "patient_id") -> Patient:
    patient = await PatientRepository(session, tenant_id).get(patient_id)
    if patient is None:
        # Another hospital's patient does not exist here: the same answer as a typo.
        raise ValidationFailed(errors=[{"field": field, "reason": "no such patient"}])
    if patient.merged_into:
        raise ValidationFailed(errors=[{"field": field,
                                        "reason": f"merged into patient {patient.merged_into}"}])
    return patient


async def create_stay(session: AsyncSession, tenant_id: uuid.UUID, data: StayIn,
                      patient: Patient | None = None, *, external_id_free: bool = False) -> Stay:
    return (await admit(session, tenant_id, data, patient,
                        external_id_free=external_id_free))[0]


async def admit(session: AsyncSession, tenant_id: uuid.UUID, data: StayIn,
                patient: Patient | None = None, *, external_id_free: bool = False
                ) -> tuple[Stay, list[Movement]]:
    """A new stay (admitted, or planned), with its movements: the admission, or none.

    `patient`: the stay's patient as the caller read it in this transaction (an HL7
    admission registers or finds it just before), spared a second read.
    `external_id_free`: the caller looked the visit number up in this transaction and found
    no stay (the unique constraint still stands behind it)."""
    if patient is None or patient.id != data.patient_id or patient.merged_into:
        patient = await patient_of_tenant(session, tenant_id, data.patient_id)
    day = local_day(data.admitted_at)
    if day < patient.birth_date:
        raise ValidationFailed(errors=[{"field": "admitted_at", "reason": "before the patient's "
                                        "birth date"}])
    if patient.death_date and day > patient.death_date:
        raise ValidationFailed(errors=[{"field": "admitted_at", "reason": "after the patient's "
                                        "death"}])
    repo = StayRepository(session, tenant_id)
    if data.external_id and not external_id_free and await repo.by_external_id(data.external_id):
        raise Conflict(f"A stay with visit number {data.external_id} exists already.",
                       errors=[{"field": "external_id", "reason": "already used"}])
    now = utcnow()
    stay_id = uuid.uuid4()
    values = data.model_dump(exclude={"planned"})
    values.update(id=stay_id, state="planned" if data.planned else "admitted", version=1,
                  pre_admission=_planned(data) if data.planned else {}, created_at=now,
                  updated_at=now)
    await repo.insert_stay(values, event_values(
        "stay.admit" if not data.planned else "stay.plan", "stay", stay_id,
        {"kind": data.kind}, tenant_id=tenant_id))
    movements = []
    if not data.planned:
        movement = _movement(stay_id, 1, "admit", data.admitted_at, data.unit, data.room,
                             data.bed, data.room_class)
        await repo.insert_movement(movement)
        movements.append(Movement(tenant_id=tenant_id, cancelled_by=None, **movement))
        await emit(session, tenant_id, "stay.admitted", {
            "stay_id": str(stay_id), "patient_id": str(data.patient_id), "kind": data.kind,
            "admitted_at": data.admitted_at.isoformat(), "unit": data.unit})
    # What was inserted is what would be read back (times are UTC already): no round trip.
    return Stay(tenant_id=tenant_id, discharged_at=None, **values), movements


def _planned(data: StayIn) -> dict[str, str]:
    return {"admitted_at": data.admitted_at.isoformat(), "unit": data.unit, "room": data.room,
            "bed": data.bed, "room_class": data.room_class}


def _pre_admission(stay: Stay) -> rules.Position | None:
    """The stay as it was planned, or None for a stay admitted at once."""
    planned = stay.pre_admission
    if not planned:
        return None
    return rules.Position(state="planned",
                          admitted_at=datetime.fromisoformat(planned["admitted_at"]),
                          unit=planned["unit"], room=planned["room"], bed=planned["bed"],
                          room_class=planned["room_class"])


def _movement(stay_id: uuid.UUID, seq: int, kind: str, at: datetime, unit: str = "",
              room: str = "", bed: str = "", room_class: str = "",
              cancels: uuid.UUID | None = None) -> dict[str, object]:
    return {"id": uuid.uuid4(), "stay_id": stay_id, "seq": seq, "type": kind, "at": at,
            "unit": unit, "room": room, "bed": bed, "room_class": room_class,
            "cancels": cancels, "actor": context.current().actor or "system",
            "created_at": utcnow()}


def effective_events(movements: list[Movement]) -> list[rules.Event]:
    return [rules.Event(m.id, m.type, m.at, m.unit, m.room, m.bed, m.room_class)
            for m in movements if m.type in ("admit", "transfer", "discharge")
            and m.cancelled_by is None]


async def get_stay(session: AsyncSession, tenant_id: uuid.UUID, stay_id: uuid.UUID,
                   *, lock: bool = False) -> Stay:
    stay = await StayRepository(session, tenant_id).get(stay_id, lock=lock)
    if stay is None:
        raise NotFound("No such stay.")
    return stay


async def add_movement(session: AsyncSession, tenant_id: uuid.UUID, stay_id: uuid.UUID,
                       data: MovementIn, *, locked: Stay | None = None
                       ) -> tuple[Stay, Movement]:
    """The movement recorded, and the stay as it now is (built here, not read back).

    `locked`: the stay as the caller read it in this transaction with its row locked (an
    HL7 message finds it by its visit number that way): not read again."""
    repo = StayRepository(session, tenant_id)
    stay = locked if locked is not None and locked.id == stay_id else \
        await get_stay(session, tenant_id, stay_id, lock=True)
    history = await repo.movements(stay_id)
    events = effective_events(history)
    last = events[-1] if events else None
    position = rules.replay(initial_for(stay), events)
    if stay.state == "cancelled":
        raise Conflict("The stay was cancelled: nothing more can happen on it.")
    if stay.state == "closed":
        raise Conflict("The stay is closed (fully billed): credit its invoices first.")
    seq = len(history) + 1
    # The movement's audit event goes in with it (one statement on PostgreSQL).
    audit = event_values(f"stay.{data.type}", "stay", stay_id, {"seq": seq},
                         tenant_id=tenant_id)
    if data.type in rules.CANCELS:
        target = next((e for e in events if e.id == data.cancels), None)
        rules.check_cancel(data.type, target, last)
        assert target is not None
        if target.type == "transfer" and target.room_class:
            await _check_against_acts(repo, stay, target, position, undo=True)
        if data.type == "cancel_admit":
            await require_not_invoiced(session, tenant_id, stay_id,
                                       "cancelling the admission")
        values = _movement(stay_id, seq, data.type, data.at, cancels=target.id)
        await repo.insert_movement(values, audit)
        await repo.mark_cancelled(target.id, values["id"])  # type: ignore[arg-type]
        remaining = [e for e in events if e.id != target.id]
        if data.type == "cancel_admit":
            cancelled = await repo.cancel_recorded_acts(stay_id)
            if cancelled:  # each act's own trail says why it was cancelled
                await record_many(session, [("act.cancel", "act", act_id, {
                    "by": "cancel_admit"}) for act_id in cancelled], tenant_id=tenant_id)
            # Reversed exactly: a pre-admission stands again, as planned; a stay admitted at
            # once never was.
            new = _pre_admission(stay) or rules.Position(state="cancelled",
                                                         admitted_at=stay.admitted_at)
        else:
            new = rules.replay(initial_for(stay), remaining)
    else:
        event = rules.Event(None, data.type, data.at, data.unit, data.room, data.bed,
                            data.room_class or "")
        rules.check_new(position, last, event)
        await _check_against_acts(repo, stay, event, position)
        values = _movement(stay_id, seq, data.type, data.at, data.unit, data.room, data.bed,
                           data.room_class or "")
        new = rules.replay(initial_for(stay), [*events, rules.Event(
            values["id"], data.type, data.at, data.unit, data.room, data.bed,
            data.room_class or "")])
    changes = {
        "state": new.state, "admitted_at": new.admitted_at or stay.admitted_at,
        "discharged_at": new.discharged_at, "unit": new.unit, "room": new.room,
        "bed": new.bed, "room_class": new.room_class, "updated_at": utcnow()}
    if data.type in rules.CANCELS:
        await repo.update_stay(stay_id, changes)
    else:  # the movement, its audit event and the stay: one statement on PostgreSQL
        await repo.insert_movement(values, audit, stay_changes=changes)
    if data.type in ("admit", "discharge"):
        what = "admitted" if data.type == "admit" else "discharged"
        await emit(session, tenant_id, f"stay.{what}", {
            "stay_id": str(stay_id), "patient_id": str(stay.patient_id), "kind": stay.kind,
            f"{what}_at": data.at.isoformat(), "unit": new.unit or stay.unit})
    elif data.type in ("cancel_admit", "cancel_discharge"):
        # A receiver told of an admission or a discharge is told when it is undone, or it
        # goes on believing the patient in (or out).
        what = "admission" if data.type == "cancel_admit" else "discharge"
        await emit(session, tenant_id, f"stay.{what}_cancelled", {
            "stay_id": str(stay_id), "patient_id": str(stay.patient_id), "kind": stay.kind,
            "cancelled_at": data.at.isoformat(), "state": new.state})
    # What was written is what would be read back (times are UTC already): no round trip.
    updated = Stay(**{**stay.model_dump(), **changes, "version": stay.version + 1})
    return updated, Movement(tenant_id=tenant_id, cancelled_by=None, **values)


async def change_stay(session: AsyncSession, tenant_id: uuid.UUID, stay: Stay,
                      data: StayPatch) -> tuple[Stay, list[uuid.UUID]]:
    """A stay's kind or doctors corrected (the API's PATCH, HL7 A06, A07 and A08), `stay`
    read with its row locked. A new kind prices the acts not yet invoiced again under it
    (as the act correction's `reprice`) and is refused once any part of the stay is
    invoiced: its participation and acts would have been billed under the other kind.
    Returns the stay as it now is and the acts priced again."""
    if stay.state in ("cancelled", "closed"):
        raise Conflict(f"The stay is {stay.state}: it cannot change.")
    sent = data.model_dump(exclude_unset=True)
    if "kind" in sent and sent["kind"] is None:
        raise ValidationFailed(errors=[{"field": "kind", "reason": "cannot be removed"}])
    changes = {name: value for name, value in sent.items() if value != getattr(stay, name)}
    if not changes:
        return stay, []
    repo = StayRepository(session, tenant_id)
    live = []
    if "kind" in changes:
        await require_not_invoiced(session, tenant_id, stay.id, "changing its kind")
        live = await repo.acts(stay.id, include_cancelled=False)
    repriced: list[uuid.UUID] = []
    try:
        await _change(session, tenant_id, stay, changes, live, repriced)
    except LuxfactError:
        # The savepoint undid the writes; the objects loaded over meanwhile (the caller's
        # stay, the acts priced before the refusal) are loaded again as they are.
        await get_stay(session, tenant_id, stay.id)
        await repo.acts(stay.id, include_cancelled=False)
        raise
    return await get_stay(session, tenant_id, stay.id), repriced


async def _change(session: AsyncSession, tenant_id: uuid.UUID, stay: Stay,
                  changes: dict[str, Any], live: list[Any], repriced: list[uuid.UUID]) -> None:
    # Imported here: acts build on stays, not the other way round.
    from luxfact.stays import acts as act_service

    repo = StayRepository(session, tenant_id)
    # All or nothing, whatever the caller does with the error (the desk shows it and its
    # request commits): the kind is written first, for the acts to be priced under it, and
    # pricing one of them may refuse. Without acts to price, nothing can fail half-way.
    async with session.begin_nested() if live else contextlib.nullcontext():
        await repo.update_stay(stay.id, {**changes, "updated_at": utcnow()})
        if "kind" in changes:
            await record(session, "stay.change_kind", "stay", stay.id,
                         {"from": stay.kind, "to": changes["kind"]}, tenant_id=tenant_id)
        if doctors := sorted(set(changes) - {"kind"}):
            await record(session, "stay.update", "stay", stay.id, {"fields": doctors},
                         tenant_id=tenant_id)
        for act in live:
            try:
                repriced.append((await act_service.update_act(
                    session, tenant_id, act, ActPatch(reprice=True))).id)
            except ValidationFailed as error:
                # Said of the stay's kind, which the caller sent, not of the act's code.
                why = "; ".join(str(item.get("reason", "")) for item in error.errors
                                if item.get("reason")) or error.detail
                reason = f"act {act.code} of {local_day(act.performed_at)}: {why}"
                raise ValidationFailed(
                    f"The stay cannot become {changes['kind']}: {reason}. Correct or "
                    "cancel that act first.", errors=[{"field": "kind", "reason": reason}],
                    act_id=str(act.id)) from None


async def require_not_invoiced(session: AsyncSession, tenant_id: uuid.UUID,
                               stay_id: uuid.UUID, doing: str) -> None:
    """Refuse a change that would make the stay's invoices wrong: any part of them not
    credited, an act's or the daily participation's (an interim invoice bills days only)."""
    # Imported here: billing builds on stays, not the other way round.
    from luxfact.billing.repository import BillingRepository

    live = await BillingRepository(session, tenant_id).live_parts(stay_id)
    if live:
        raise Conflict(f"This stay is invoiced: credit its invoices before {doing}.",
                       invoice_id=str(live[0].invoice_id))


async def _check_against_acts(repo: StayRepository, stay: Stay, event: rules.Event,
                              position: rules.Position, undo: bool = False) -> None:
    """Acts are priced when recorded: a movement may not change, after the fact, what they
    were priced under (outside the stay, or in another room class). Correct them first."""
    if event.type == "discharge":
        late = [a for a in await repo.acts(stay.id, include_cancelled=False)
                if a.performed_at > event.at]
        if late:
            raise ValidationFailed(
                f"Act {late[0].code} at {late[0].performed_at.isoformat()} is after this "
                "discharge: correct or cancel it first.",
                errors=[{"field": "at", "reason": "before an act of the stay"}],
                act_id=str(late[0].id))
        # Imported here: billing builds on stays, not the other way round.
        from luxfact.billing.repository import BillingRepository

        live = await BillingRepository(repo.session, repo.tenant_id).live_parts(stay.id)
        billed_to = max((row.last_day for row in live if row.act_id is None), default=None)
        if billed_to is not None and local_day(event.at) <= billed_to:
            # Participation is due up to the day before discharge: days up to `billed_to`
            # are on an invoice, and a discharge on or before it would make that invoice
            # charge days the patient was not there.
            raise Conflict(
                f"Participation up to {billed_to} is invoiced already: a discharge on "
                f"{local_day(event.at)} would make that invoice wrong. Credit it first.",
                invoiced_until=str(billed_to))
    elif event.type == "transfer" and event.room_class and (
            undo or event.room_class != position.room_class):
        later = [a for a in await repo.acts(stay.id, include_cancelled=False)
                 if a.performed_at >= event.at]
        if later:
            raise Conflict(
                f"Act {later[0].code} at {later[0].performed_at.isoformat()} was priced in "
                "the room class before this change: correct or cancel it first.",
                act_id=str(later[0].id))


def initial_for(stay: Stay) -> rules.Position:
    return rules.Position(state="planned", admitted_at=stay.admitted_at)


def room_class_at(stay: Stay, movements: list[Movement], moment: datetime) -> str:
    """The room class the patient was in at that moment (first class allows a surcharge)."""
    return room_classes(movements)(moment)


def room_classes(movements: list[Movement]) -> Callable[[datetime], str]:
    """The room class at any moment of the stay, the history read once (a stay's acts are
    many, its movements few)."""
    changes: list[tuple[datetime, str]] = [
        (event.at, event.room_class) for event in effective_events(movements)
        if event.room_class]
    moments = [at for at, _ in changes]

    def at(moment: datetime) -> str:
        index = bisect_right(moments, moment)
        return changes[index - 1][1] if index else "second"

    return at


def coverage_gaps(stay: Stay, coverages: list[Coverage], today: date) -> list[CoverageGap]:
    """Days of the stay no statutory (or accident, foreign) coverage covers."""
    if stay.state in ("cancelled", "planned"):
        return []
    start = local_day(stay.admitted_at)
    end = local_day(stay.discharged_at) if stay.discharged_at else max(today, start)
    spans = sorted((c.valid_from, c.valid_to or date.max) for c in coverages
                   if c.kind in STATUTORY_KINDS or c.kind == "accident")
    gaps: list[CoverageGap] = []
    cursor = start
    for span_start, span_end in spans:
        if span_end < cursor:
            continue
        if span_start > end:
            break
        if span_start > cursor:
            gaps.append(CoverageGap(start=cursor, end=min(span_start - timedelta(days=1), end)))
        cursor = max(cursor, span_end + timedelta(days=1)) if span_end < date.max else \
            end + timedelta(days=1)
        if cursor > end:
            break
    if cursor <= end:
        gaps.append(CoverageGap(start=cursor, end=end))
    return gaps

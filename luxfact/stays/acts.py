"""Acts of a stay: recorded, checked against the tariff and the rules, priced at once.

Each act keeps the price it was given (its tariff version, the amounts and the whole
explanation), so a later tariff change never alters it silently: re-pricing is explicit.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import event_values, record
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.money import MAX_CENTS, cents_str, from_cents, to_cents
from luxfact.kit.time import utcnow
from luxfact.patients.repository import PatientRepository
from luxfact.stays.models import Act, Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import ActIn, ActOut, ActPatch
from luxfact.stays.service import get_stay, local_day, room_class_at
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import pricing
from luxfact.tariffs import service as tariffs

# How far past "now" an act may be dated (clock skew between systems), and no further.
FUTURE_TOLERANCE_SECONDS = 300


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal | date):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def act_out(act: Act) -> ActOut:
    return ActOut(
        id=act.id, stay_id=act.stay_id, code=act.code, performed_at=act.performed_at,
        performer=act.performer, specialty=act.specialty, quantity=act.quantity,
        modifiers=act.modifiers, note=act.note, state=act.state, invoice_id=act.invoice_id,
        tariff_version=act.tariff_version, gross=cents_str(act.gross_cents),
        insurer=cents_str(act.insurer_cents), patient=cents_str(act.patient_cents),
        pricing={k: v for k, v in act.pricing.items() if k != "explanation"},
        explanation=act.pricing.get("explanation", ""), version=act.version)


Facts = tuple[date, date | None, list[tuple[date, date | None]]]


async def pricing_context(session: AsyncSession, tenant_id: uuid.UUID, stay: Stay,
                   facts: Facts | None = None) -> tuple[pricing.StayInfo, pricing.PatientInfo]:
    """What the engine needs of the stay and the patient (read here unless given)."""
    if facts is None:
        facts = await PatientRepository(session, tenant_id).pricing_facts(stay.patient_id)
    birth_date, death_date, periods = facts
    attestations = tuple((start, end or date.max) for start, end in periods)
    stay_info = pricing.StayInfo(
        kind=stay.kind, admitted=local_day(stay.admitted_at),
        discharged=local_day(stay.discharged_at) if stay.discharged_at else None,
        childbirth=stay.childbirth, psychiatric=stay.psychiatric,
        social_tiers_payant=attestations)
    return stay_info, pricing.PatientInfo(birth_date, death_date)


CROSS_ACT_RULES = ("non_cumulable", "max_per_day", "max_per_stay")


def _has_cross_act_rules(snapshot: cat.TariffSnapshot, code: str) -> bool:
    """Whether a rule about other acts of the stay can concern this code (as its target, as
    an excluded code, or through its nomenclature)."""
    def build(snap: cat.TariffSnapshot) -> set[str]:
        names: set[str] = set()
        for rule in snap.rules:
            if rule.rule in CROSS_ACT_RULES:
                names.add(rule.target)
                names.update(rule.others)
        return names

    concerned = snapshot.derived("cross_act_rule_codes", build)
    versions = snapshot.acts.get(code, ())
    return code in concerned or any(f"@{v.nomenclature}" in concerned for v in versions)


def _pricing_error(exc: cat.CatalogueError) -> ValidationFailed:
    field = {"code": "code", "performed_at": "performed_at", "modifiers": "modifiers",
             "quantity": "quantity"}.get(exc.field, exc.field)
    return tariffs.catalogue_error(exc, field)


async def _price(session: AsyncSession, tenant_id: uuid.UUID, stay: Stay, act_id: uuid.UUID,
                 values: dict[str, Any], facts: Facts | None = None) -> dict[str, Any]:
    """Check and price an act's values; returns the pricing columns to store."""
    if stay.state not in ("admitted", "discharged"):
        raise Conflict(f"The stay is {stay.state}: acts are recorded on admitted or "
                       "discharged stays.")
    performed_at: datetime = values["performed_at"]
    if performed_at < stay.admitted_at or (stay.discharged_at and
                                           performed_at > stay.discharged_at):
        raise ValidationFailed("The act is outside the stay.", errors=[{
            "field": "performed_at", "reason": "outside the stay (admission to discharge)"}])
    if (performed_at - utcnow()).total_seconds() > FUTURE_TOLERANCE_SECONDS:
        raise ValidationFailed(errors=[{"field": "performed_at", "reason": "in the future"}])
    repo = StayRepository(session, tenant_id)
    # A stay never moved (version 1) is in its admission room class: no history to read.
    room_class = stay.room_class if stay.version == 1 else room_class_at(
        stay, await repo.movements(stay.id), performed_at)
    stay_info, patient_info = await pricing_context(session, tenant_id, stay, facts)
    act = pricing.ActInput(
        line_id=str(act_id), code=values["code"], day=local_day(performed_at),
        quantity=values["quantity"], modifiers=tuple(values["modifiers"]),
        performer=values.get("performer"), specialty=values.get("specialty"),
        first_class=room_class == "first")
    snapshot = await tariffs.snapshot(session, tenant_id)
    others: list[pricing.ActInput] = []
    if _has_cross_act_rules(snapshot, values["code"]):
        # Cumulation and limits need the stay's other acts; most codes have no such rule.
        others = [pricing.ActInput(line_id=str(a.id), code=a.code,
                                   day=local_day(a.performed_at), quantity=a.quantity,
                                   modifiers=tuple(a.modifiers), performer=a.performer,
                                   specialty=a.specialty)
                  for a in await repo.acts(stay.id, include_cancelled=False) if a.id != act_id]
    try:
        pricing.check_rules(snapshot, stay_info, patient_info, act, others)
        line = pricing.price_act(snapshot, stay_info, patient_info, act)
    except cat.CatalogueError as exc:
        raise _pricing_error(exc) from None
    if line.gross > (most := from_cents(MAX_CENTS)):
        raise ValidationFailed(errors=[{
            "field": "quantity" if act.quantity > 1 else "code",
            "reason": f"the line would amount to {line.gross} €, over the most a line can "
                      f"bill ({most} €)"}])
    record_ = {k: _jsonable(v) for k, v in line.as_record().items()}
    record_["explanation"] = line.explain()
    return {"tariff_version": line.version_id, "gross_cents": to_cents(line.gross),
            "insurer_cents": to_cents(line.insurer), "patient_cents": to_cents(line.patient),
            "pricing": record_}


async def lock_for_acts(session: AsyncSession, tenant_id: uuid.UUID,
                        stay_id: uuid.UUID) -> list[Row]:
    """The stay locked, with what pricing needs of its patient (one row per social
    tiers-payant attestation): what `record_act` reads first."""
    rows = await StayRepository(session, tenant_id).lock_for_act(stay_id)
    if not rows:
        raise NotFound("No such stay.")
    return rows


async def record_act(session: AsyncSession, tenant_id: uuid.UUID, stay_id: uuid.UUID,
                     data: ActIn, *, locked: list[Row] | None = None) -> Act:
    """`locked`: what `lock_for_acts` (or the repository's `lock_for_act_by_visit`)
    returned in this transaction, when the caller has read it already (an HL7 charge
    message, to find the stay and check its patient): read and locked once for all."""
    rows = locked if locked and locked[0].id == stay_id else \
        await lock_for_acts(session, tenant_id, stay_id)
    # The row reads like a Stay (same column names): no ORM object on the hot path.
    stay = rows[0]
    facts: Facts = (stay.birth_date, stay.death_date,
                    [(r.attestation_from, r.attestation_to) for r in rows
                     if r.attestation_from is not None])
    act_id = uuid.uuid4()
    values = data.model_dump()
    values["code"] = values["code"].upper()
    values["modifiers"] = [m.upper() for m in values["modifiers"]]
    priced = await _price(session, tenant_id, stay, act_id, values, facts)  # type: ignore[arg-type]
    now = utcnow()
    row = {**values, **priced, "id": act_id, "stay_id": stay_id, "state": "recorded",
           "version": 1, "created_at": now, "updated_at": now}
    await StayRepository(session, tenant_id).insert_act(row, event_values(
        "act.create", "act", act_id, {"stay": str(stay_id), "code": values["code"]},
        tenant_id=tenant_id))
    # What was inserted is what would be read back: no second round trip.
    return Act(tenant_id=tenant_id, invoice_id=None, **row)


async def get_act(session: AsyncSession, tenant_id: uuid.UUID, stay_id: uuid.UUID,
                  act_id: uuid.UUID) -> Act:
    act = await StayRepository(session, tenant_id).act(stay_id, act_id)
    if act is None:
        raise NotFound("No such act on this stay.")
    return act


def _editable(act: Act) -> None:
    if act.state == "invoiced":
        raise Conflict(f"The act is on invoice {act.invoice_id}: credit the invoice to "
                       "correct it.", invoice_id=str(act.invoice_id))
    if act.state == "cancelled":
        raise Conflict("The act was cancelled.")


# What an act's price depends on, of the act itself (the stay's kind and room class are
# the stay's: changing them re-prices its acts explicitly).
PRICING_INPUTS = ("code", "performed_at", "quantity", "modifiers", "performer", "specialty")


def _compared(name: str, value: Any) -> Any:
    """A pricing input as it prices: modifiers in any order price alike."""
    return sorted(value) if name == "modifiers" else value


async def update_act(session: AsyncSession, tenant_id: uuid.UUID, act: Act,
                     data: ActPatch) -> Act:
    _editable(act)
    changes = data.model_dump(exclude_unset=True)
    reprice = changes.pop("reprice", False)
    for required in ("code", "performed_at", "quantity", "modifiers"):
        if required in changes and changes[required] is None:
            raise ValidationFailed(errors=[{"field": required, "reason": "cannot be removed"}])
    if not changes and not reprice:
        return act
    values = {"code": act.code, "performed_at": act.performed_at, "quantity": act.quantity,
              "modifiers": act.modifiers, "performer": act.performer,
              "specialty": act.specialty, "note": act.note, **changes}
    values["code"] = values["code"].upper()
    values["modifiers"] = [m.upper() for m in values["modifiers"]]
    stay = await get_stay(session, tenant_id, act.stay_id, lock=True)
    # A price is kept until what makes it changes: a note alone, or the same values sent
    # again (a form sends them all), leave the act priced as it was, with its tariff
    # version, whatever the catalogue says today (re-pricing is asked for: `reprice`).
    if reprice or any(_compared(name, values[name]) != _compared(name, getattr(act, name))
                      for name in PRICING_INPUTS):
        priced = await _price(session, tenant_id, stay, act.id, values)
    else:
        priced = {}
    repo = StayRepository(session, tenant_id)
    if not await repo.update_act(act.id, act.version, {**values, **priced,
                                                       "updated_at": utcnow()}):
        raise Conflict("The act changed meanwhile: reload and retry.")
    await record(session, "act.update", "act", act.id,
                 {"fields": sorted(changes), **({"repriced": True} if priced else {})},
                 tenant_id=tenant_id)
    return await get_act(session, tenant_id, act.stay_id, act.id)


async def cancel_act(session: AsyncSession, tenant_id: uuid.UUID, act: Act) -> Act:
    _editable(act)
    repo = StayRepository(session, tenant_id)
    if not await repo.update_act(act.id, act.version, {"state": "cancelled",
                                                       "updated_at": utcnow()}):
        raise Conflict("The act changed meanwhile: reload and retry.")
    await record(session, "act.cancel", "act", act.id, {}, tenant_id=tenant_id)
    return await get_act(session, tenant_id, act.stay_id, act.id)

"""The clerk's stay pages: the stays in the house, a stay with its movements, coverage gaps
and acts, and the forms that move the patient and record, correct or cancel acts.

The billing officers see a stay's page too (read only)."""

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.audit.service import record
from luxfact.auth.roles import Role
from luxfact.http.pagination import decode_time_cursor, encode_cursor
from luxfact.kit.errors import Conflict, ValidationFailed
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients import service as patients
from luxfact.patients.repository import PatientRepository
from luxfact.stays import acts as act_service
from luxfact.stays import movements as rules
from luxfact.stays import service
from luxfact.stays.models import Act, Movement, Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import ActIn, ActPatch, MovementIn, StayPatch
from luxfact.tariffs import catalogue as cat
from luxfact.tariffs import pricing
from luxfact.tariffs import service as tariffs
from luxfact.tariffs.api import act_price
from luxfact.web import clerk
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

HOUSE_PAGE = 50
SUGGESTIONS = 8
MOVE_FIELDS = ("at", "unit", "room", "bed", "room_class")
ACT_FIELDS = ("code", "performed_at", "quantity", "performer", "specialty", "modifiers",
              "note")
# The cancellation of each movement.
CANCEL_OF = {kind: cancel for cancel, kind in rules.CANCELS.items()}
# What each movement page does, and the movements it takes.
MOVES = {"transfer": N_("Transfer"), "discharge": N_("Discharge"), "admit": N_("Admit")}


def _now() -> datetime:
    return datetime.now(LUXEMBOURG)


# --- stays in the house -----------------------------------------------------------------------

@page(Role.clerk)
async def stays_in_house(desk: Desk) -> Response:
    """The admitted stays, newest admission first, a page at a time."""
    try:
        after = decode_time_cursor(desk.request.query_params.get("cursor") or None)
    except ValidationFailed:
        after = None
    found = await StayRepository(desk.session, desk.tenant_id).page(
        limit=HOUSE_PAGE + 1, patient_id=None, state="admitted", after=after)
    next_url = ""
    if len(found) > HOUSE_PAGE:
        found = found[:HOUSE_PAGE]
        last = found[-1]
        next_url = "/desk/stays?" + urlencode({"cursor": encode_cursor(
            [last.admitted_at.isoformat(), str(last.id)])})
    # The patients' names in one query; reading them is recorded, as a search is.
    people = await PatientRepository(desk.session, desk.tenant_id).many(
        sorted({s.patient_id for s in found}))
    if people:
        await record(desk.session, "patient.list", "patient", "stays-in-house",
                     {"results": [str(i) for i in people]}, tenant_id=desk.tenant_id)
    return desk.render("desk/clerk/stays.html", **clerk.render_values(desk), stays=found,
                       people=people, next_url=next_url, first_page=after is not None)


# --- a stay -----------------------------------------------------------------------------------

async def _stay(desk: Desk, *, lock: bool = False) -> Stay:
    return await service.get_stay(desk.session, desk.tenant_id, clerk.path_id(desk, "stay_id"),
                                  lock=lock)


def _label(act: Act | dict[str, Any], language: str) -> str:
    priced = act.pricing if isinstance(act, Act) else act
    return str(priced.get("label_de" if language == "de" else "label_fr", ""))


def _last_movement(stay: Stay, movements: list[Movement]) -> Movement | None:
    """The movement a cancellation would undo: the latest effective one."""
    if stay.state in ("cancelled", "closed"):
        return None
    events = service.effective_events(movements)
    if not events:
        return None
    return next(m for m in movements if m.id == events[-1].id)


def _act_default_time(stay: Stay) -> str:
    now = _now()
    if stay.discharged_at and now > stay.discharged_at:
        return clerk.local_input(stay.discharged_at)
    return now.strftime("%Y-%m-%dT%H:%M")


def _act_values(stay: Stay) -> dict[str, str]:
    return dict.fromkeys(ACT_FIELDS, "") | {"performed_at": _act_default_time(stay),
                                            "quantity": "1"}


def _move_values(stay: Stay, kind: str) -> dict[str, str]:
    at = clerk.local_input(stay.admitted_at) if kind == "admit" else clerk.now_input()
    return dict.fromkeys(MOVE_FIELDS, "") | {"at": at}


@page(Role.clerk, Role.billing)
async def stay_page(desk: Desk) -> Response:
    stay = await _stay(desk)
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    repo = StayRepository(desk.session, desk.tenant_id)
    movements = await repo.movements(stay.id)
    coverages = await PatientRepository(desk.session, desk.tenant_id).coverages(patient.id)
    gaps = service.coverage_gaps(stay, coverages, _now().date())
    acts = await repo.acts(stay.id)
    live = [a for a in acts if a.state != "cancelled"]
    totals = {"gross": sum(a.gross_cents for a in live),
              "insurer": sum(a.insurer_cents for a in live),
              "patient": sum(a.patient_cents for a in live)}
    last = _last_movement(stay, movements)
    return desk.render(
        "desk/clerk/stay.html", **clerk.render_values(desk), stay=stay, patient=patient,
        movements=movements, gaps=gaps, acts=acts, totals=totals,
        labels_of={a.id: _label(a, desk.language) for a in acts},
        last=last, cancel_type=CANCEL_OF.get(last.type, "") if last else "",
        act=_act_values(stay) | {"idem": str(uuid.uuid4())},
        moves={kind: _move_values(stay, kind) | {"idem": str(uuid.uuid4())}
               for kind in MOVES},
        cancel_idem=str(uuid.uuid4()), room_classes=_room_classes(desk))


def _room_classes(desk: Desk) -> list[tuple[str, str]]:
    return clerk.options(desk, clerk.ROOM_CLASSES, N_("Unchanged"))


# --- movements ----------------------------------------------------------------------------------

async def _movement(desk: Desk, kind: str) -> Response:
    """Transfer, discharge, or admit a planned stay: a form of its own, also on the stay's
    page."""
    stay = await _stay(desk)
    values = clerk.page_values(desk, _move_values(stay, kind)) | {
        "idem": clerk.fresh_idem(desk)}
    status = 200
    if desk.form is not None:
        data: dict[str, Any] = {"type": kind}
        for name in MOVE_FIELDS if kind != "discharge" else ("at",):
            typed = values[name].strip()
            if typed:
                data[name] = clerk.aware(typed) if name == "at" else typed
        try:
            checked = clerk.validated(MovementIn, data)

            async def make() -> str:
                await service.add_movement(desk.session, desk.tenant_id, stay.id, checked)
                return f"/desk/stays/{stay.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, MOVE_FIELDS)
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/movement.html", status=status, **clerk.render_values(desk),
                       stay=stay, patient=patient, kind=kind, values=values,
                       title=MOVES[kind], room_classes=_room_classes(desk))


@page(Role.clerk)
async def transfer(desk: Desk) -> Response:
    return await _movement(desk, "transfer")


@page(Role.clerk)
async def discharge(desk: Desk) -> Response:
    return await _movement(desk, "discharge")


@page(Role.clerk)
async def admit_planned(desk: Desk) -> Response:
    return await _movement(desk, "admit")


@page(Role.clerk)
async def cancel_movement(desk: Desk) -> Response:
    """Cancel the latest movement (admission, transfer or discharge), as the API does."""
    stay = await _stay(desk)
    movements = await StayRepository(desk.session, desk.tenant_id).movements(stay.id)
    last = _last_movement(stay, movements)
    status = 200
    if desk.form is not None:
        data = {"type": desk.value("type"), "cancels": desk.value("cancels") or None,
                "at": _now().isoformat()}
        try:
            if data["type"] not in rules.CANCELS:
                raise ValidationFailed(errors=[{"field": "cancels", "reason":
                                                "no effective movement with this id"}])
            checked = clerk.validated(MovementIn, data)

            async def make() -> str:
                await service.add_movement(desk.session, desk.tenant_id, stay.id, checked)
                return f"/desk/stays/{stay.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, ())
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/movement_cancel.html", status=status,
                       **clerk.render_values(desk), stay=stay, patient=patient, last=last,
                       cancel_type=CANCEL_OF.get(last.type, "") if last else "",
                       idem=clerk.fresh_idem(desk))


# --- the stay's kind and doctors -------------------------------------------------------------

STAY_FIELDS = ("kind", "admitting_doctor", "attending_doctor")


@page(Role.clerk)
async def edit_stay(desk: Desk) -> Response:
    """Correct the stay's kind (its acts not yet invoiced are priced again) or doctors, as
    `PATCH /api/v1/stays/{id}` does."""
    stay = await _stay(desk, lock=desk.form is not None)
    values = clerk.page_values(desk, {
        "kind": stay.kind, "admitting_doctor": stay.admitting_doctor or "",
        "attending_doctor": stay.attending_doctor or "", "version": str(stay.version)}) | {
        "idem": clerk.fresh_idem(desk)}
    status = 200
    if desk.form is not None:
        try:
            sent = {name: values[name].strip() or None for name in STAY_FIELDS}
            checked = clerk.validated(StayPatch, sent)
            stale = values["version"] != str(stay.version)

            async def make() -> str:
                # A second submit of the same form goes where the first went.
                if stale:
                    raise Conflict("The stay changed meanwhile: reload and retry.")
                await service.change_stay(desk.session, desk.tenant_id, stay, checked)
                return f"/desk/stays/{stay.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, STAY_FIELDS)
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/stay_form.html", status=status, **clerk.render_values(desk),
                       stay=stay, patient=patient, values=values,
                       kinds=clerk.options(desk, clerk.STAY_KINDS))


# --- acts --------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s,;]+")


def _act_data(values: dict[str, str], *, partial: bool) -> dict[str, Any]:
    """The act form as the API's body: empty optional fields left out (or null, to clear
    them in a correction)."""
    data: dict[str, Any] = {}
    for name in ACT_FIELDS:
        typed = values[name].strip()
        if name == "modifiers":
            data[name] = [m for m in _SEPARATORS.split(typed) if m]
        elif name == "performed_at":
            if typed:
                data[name] = clerk.aware(typed)
        elif name == "note":
            data[name] = values[name].strip()
        elif typed:
            data[name] = typed
        elif partial and name in ("performer", "specialty"):
            data[name] = None
    return data


def _act_form_values(act: Act) -> dict[str, str]:
    return {"code": act.code, "performed_at": clerk.local_input(act.performed_at),
            "quantity": str(act.quantity), "performer": act.performer or "",
            "specialty": act.specialty or "", "modifiers": " ".join(act.modifiers),
            "note": act.note, "version": str(act.version)}


@page(Role.clerk)
async def new_act(desk: Desk) -> Response:
    stay = await _stay(desk)
    values = clerk.page_values(desk, _act_values(stay)) | {"idem": clerk.fresh_idem(desk)}
    status = 200
    if desk.form is not None:
        try:
            checked = clerk.validated(ActIn, _act_data(values, partial=False))

            async def make() -> str:
                created = await act_service.record_act(desk.session, desk.tenant_id, stay.id,
                                                       checked)
                return f"/desk/stays/{stay.id}#act-{created.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, ACT_FIELDS)
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/act_form.html", status=status, **clerk.render_values(desk),
                       stay=stay, patient=patient, act=values, editing=None)


@page(Role.clerk)
async def edit_act(desk: Desk) -> Response:
    """Correct an act not yet invoiced: it is priced again."""
    stay = await _stay(desk)
    act = await act_service.get_act(desk.session, desk.tenant_id, stay.id,
                                    clerk.path_id(desk, "act_id"))
    values = clerk.page_values(desk, _act_form_values(act)) | {"idem": clerk.fresh_idem(desk)}
    status = 200
    if desk.form is not None:
        try:
            checked = clerk.validated(ActPatch, _act_data(values, partial=True))
            current = {"code": act.code, "performed_at": act.performed_at,
                       "quantity": act.quantity, "performer": act.performer,
                       "specialty": act.specialty, "modifiers": act.modifiers,
                       "note": act.note}
            changes = {name: value for name, value in
                       checked.model_dump(exclude_unset=True).items()
                       if _normal(name, value) != _normal(name, current[name])}
            stale = values["version"] != str(act.version)

            async def make() -> str:
                # A second submit of the same form goes where the first went.
                if stale:
                    raise Conflict("The act changed meanwhile: reload and retry.")
                if changes:
                    await act_service.update_act(
                        desk.session, desk.tenant_id, act,
                        ActPatch.model_construct(_fields_set=set(changes), **changes))
                return f"/desk/stays/{stay.id}#act-{act.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, ACT_FIELDS)
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/act_form.html", status=status, **clerk.render_values(desk),
                       stay=stay, patient=patient, act=values, editing=act,
                       label=_label(act, desk.language))


def _normal(name: str, value: Any) -> Any:
    """Codes and modifiers compare as the service stores them (upper case)."""
    if name == "code" and isinstance(value, str):
        return value.upper()
    if name == "modifiers" and isinstance(value, list):
        return [str(m).upper() for m in value]
    return value


@page(Role.clerk)
async def cancel_act(desk: Desk) -> Response:
    """Cancel an act not yet invoiced (a confirmation page, and the button of the table)."""
    stay = await _stay(desk)
    act = await act_service.get_act(desk.session, desk.tenant_id, stay.id,
                                    clerk.path_id(desk, "act_id"))
    status = 200
    if desk.form is not None:
        async def make() -> str:
            await act_service.cancel_act(desk.session, desk.tenant_id, act)
            return f"/desk/stays/{stay.id}#act-{act.id}"

        try:
            # A second click goes where the first went (not "the act was cancelled").
            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, ())
            status = error.status
    patient = await patients.read_patient(desk.session, desk.tenant_id, stay.patient_id)
    return desk.render("desk/clerk/act_cancel.html", status=status, **clerk.render_values(desk),
                       stay=stay, patient=patient, act=act, label=_label(act, desk.language),
                       idem=clerk.fresh_idem(desk))


@page(Role.clerk)
async def suggest_acts(desk: Desk) -> Response:
    """Codes for the typed text, with their label and unit price on the act's day (as the
    catalogue's search does), and for the code typed exactly, what this act would cost on
    this stay: the price, the insurer's and the patient's shares (htmx partial)."""
    stay = await _stay(desk)
    typed = desk.request.query_params.get("code", "")[:20].strip()
    on = clerk.local_day_of(desk.request.query_params.get("performed_at", "")) or _now().date()
    items: list[dict[str, Any]] = []
    quote: dict[str, Any] | None = None
    if typed:
        snapshot = await tariffs.snapshot(desk.session, desk.tenant_id)
        for version in snapshot.search(typed, on, SUGGESTIONS):
            try:
                price = act_price(snapshot, version, on)
            except cat.CatalogueError:
                continue  # valid code, but no key-letter value that day: not offered
            items.append({"code": price.code, "unit_price": price.unit_price,
                          "label": price.label_de if desk.language == "de" else price.label_fr})
        if items and items[0]["code"] == typed.upper():
            quote = await _quote(desk, stay, snapshot, typed.upper(), on)
    return desk.render("desk/clerk/_act_suggestions.html", **clerk.render_values(desk),
                       items=items, typed=typed, on=on, quote=quote)


async def _quote(desk: Desk, stay: Stay, snapshot: cat.TariffSnapshot, code: str,
                 on: date) -> dict[str, Any] | None:
    """The price of one such act on that day for this stay and patient (not recorded: the
    rules about other acts are checked when it is)."""
    try:
        quantity = max(1, min(999, int(desk.request.query_params.get("quantity", "1"))))
    except ValueError:
        quantity = 1
    room_class = stay.room_class
    if stay.version > 1:
        moment = datetime(on.year, on.month, on.day, 12, tzinfo=LUXEMBOURG)
        room_class = service.room_class_at(stay, await StayRepository(
            desk.session, desk.tenant_id).movements(stay.id), moment)
    stay_info, patient_info = await act_service.pricing_context(desk.session, desk.tenant_id,
                                                                stay)
    try:
        line = pricing.price_act(snapshot, stay_info, patient_info, pricing.ActInput(
            line_id="quote", code=code, day=on, quantity=quantity,
            first_class=room_class == "first"))
    except (cat.CatalogueError, ValueError):
        return None
    return {"gross": Decimal(line.gross), "insurer": Decimal(line.insurer),
            "patient": Decimal(line.patient), "quantity": quantity}


def routes() -> list[BaseRoute]:
    both = ["GET", "POST"]
    return [
        Route("/desk/stays", stays_in_house, methods=["GET"]),
        Route("/desk/stays/{stay_id}", stay_page, methods=["GET"]),
        Route("/desk/stays/{stay_id}/edit", edit_stay, methods=both),
        Route("/desk/stays/{stay_id}/transfer", transfer, methods=both),
        Route("/desk/stays/{stay_id}/discharge", discharge, methods=both),
        Route("/desk/stays/{stay_id}/admit", admit_planned, methods=both),
        Route("/desk/stays/{stay_id}/cancel-movement", cancel_movement, methods=both),
        Route("/desk/stays/{stay_id}/acts/new", new_act, methods=both),
        Route("/desk/stays/{stay_id}/acts/suggest", suggest_acts, methods=["GET"]),
        Route("/desk/stays/{stay_id}/acts/{act_id}/edit", edit_act, methods=both),
        Route("/desk/stays/{stay_id}/acts/{act_id}/cancel", cancel_act, methods=both),
    ]

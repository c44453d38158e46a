"""The clerk's patient pages: search as you type, create and edit, the patient's page with
coverages, stays and the admission form, and the live matricule check."""

import re
import uuid
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from pydantic import ValidationError
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.auth.roles import Role
from luxfact.http.pagination import decode_cursor, decode_time_cursor, encode_cursor
from luxfact.kit import problems
from luxfact.kit.errors import Conflict, ValidationFailed
from luxfact.kit.time import LUXEMBOURG
from luxfact.patients import matricule as mat
from luxfact.patients import service
from luxfact.patients.models import Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.schemas import (
    CoverageIn,
    PatientFields,
    PatientIn,
    PatientPatch,
    check_identity,
)
from luxfact.stays import service as stays
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import StayIn
from luxfact.web import clerk
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

SEARCH_PAGE = 20
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
STAYS_PAGE = 20
Q_MAX = 100

IDENTITY = ("matricule", "legacy_matricule", "no_matricule_reason", "family_name",
            "given_name", "birth_date", "sex", "language")
CONTACT = ("street", "postal_code", "city", "country", "phone", "email")
PATIENT_FIELDS = (*IDENTITY, *CONTACT)
EDIT_FIELDS = (*PATIENT_FIELDS, "death_date")
NULLABLE = {"matricule", "legacy_matricule", "no_matricule_reason", "death_date"}
REQUIRED = ("family_name", "given_name", "birth_date", "sex", "language")
COVERAGE_FIELDS = ("kind", "payer", "member_number", "accident_number", "first_class",
                   "valid_from", "valid_to")
ADMIT_FIELDS = ("kind", "admitted_at", "planned", "unit", "room", "bed", "room_class",
                "admitting_doctor", "attending_doctor", "external_id", "childbirth",
                "psychiatric")
ADMIT_CHECKBOXES = ("planned", "childbirth", "psychiatric")


def _today() -> date:
    return datetime.now(LUXEMBOURG).date()


# --- search ---------------------------------------------------------------------------------

async def _search(desk: Desk) -> dict[str, Any]:
    """The patients matching `q` (one page, after `cursor`), as the API's list finds them."""
    q = desk.request.query_params.get("q", "")[:Q_MAX].strip()
    # A birth date as a date field gives it (1985-03-12) is one the service reads (19850312).
    q = " ".join(_ISO_DATE.sub(r"\1\2\3", word) for word in q.split())
    cursor = desk.request.query_params.get("cursor") or None
    if not q:
        return {"q": "", "patients": [], "more_url": "", "more_page": ""}
    after = None
    try:
        position = decode_cursor(cursor, 4)
    except ValidationFailed:
        position = None  # a cursor not of this list: the first page
    if (position and position[0] in (0, 1) and all(isinstance(p, str) for p in position[1:])
            and _is_uuid(position[3])):
        after = tuple(position)
    found = await service.search_patients(desk.session, desk.tenant_id, q=q, birth_date=None,
                                          matricule=None, limit=SEARCH_PAGE + 1,
                                          after=after)  # type: ignore[arg-type]
    more_url = more_page = ""
    if len(found) > SEARCH_PAGE:
        found = found[:SEARCH_PAGE]
        rank, last = found[-1]
        query = urlencode({"q": q, "cursor": encode_cursor(
            [rank, last.family_folded, last.given_folded, str(last.id)])})
        more_url, more_page = f"/desk/patients/search?{query}", f"/desk/patients?{query}"
    return {"q": q, "patients": [p for _, p in found], "more_url": more_url,
            "more_page": more_page}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


@page(Role.clerk)
async def patients(desk: Desk) -> Response:
    """The patient list: one search box, results as you type."""
    return desk.render("desk/clerk/patients.html", **clerk.render_values(desk),
                       **await _search(desk))


@page(Role.clerk)
async def patient_results(desk: Desk) -> Response:
    """The results of the search box (htmx partial)."""
    return desk.render("desk/clerk/_patient_results.html", **clerk.render_values(desk),
                       **await _search(desk))


# --- the matricule, checked as it is typed ---------------------------------------------------

@page(Role.clerk)
async def check_matricule(desk: Desk) -> Response:
    """Valid, or which rule it breaks (htmx partial, in the user's language)."""
    typed = desk.request.query_params.get("matricule", "")[:30].strip()
    ok, message = True, ""
    if typed:
        try:
            number = mat.parse(typed, today=_today())
            birth = _date(desk.request.query_params.get("birth_date", ""))
            if birth is not None:
                check_identity(number.number, None, birth)
            encoded = number.birth_date()
            message = desk._("Valid matricule (born %(day)s).", day=clerk.day(encoded)) \
                if encoded else desk._("Valid matricule.")
        except ValueError as exc:
            ok = False
            message = _matricule_reason(desk, str(exc))
    return desk.render("desk/clerk/_matricule_check.html", ok=ok, message=message)


def _matricule_reason(desk: Desk, reason: str) -> str:
    _, text, values = clerk.record_reason(reason, ())
    if values is not None:
        return desk._(text, **values)
    return clerk.reason_text(desk, reason, "matricule")


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


# --- create and edit -------------------------------------------------------------------------

def _form_page(desk: Desk, values: dict[str, str], *, patient: Patient | None = None,
               status: int = 200, existing_id: str | None = None) -> Response:
    return desk.render(
        "desk/clerk/patient_form.html", status=status, **clerk.render_values(desk),
        values=values, patient=patient, existing_id=existing_id,
        sexes=clerk.options(desk, clerk.SEXES, N_("Choose…")),
        reasons=clerk.options(desk, clerk.NO_MATRICULE, N_("The patient has a matricule")),
        patient_languages=list(clerk.PATIENT_LANGUAGES.items()))


def _record_errors(data: dict[str, Any]) -> list[dict[str, str]]:
    """The reasons of the record-wide checks (contact fields, matricule against birth date):
    pydantic makes them only once every field is valid, and the desk shows every reason at
    once. A field wrong in itself is left to the schema."""
    found: list[dict[str, str]] = []
    try:
        PatientFields.model_validate({k: v for k, v in data.items() if k in CONTACT and v})
    except ValidationError as exc:
        found += problems.field_errors(exc)
    try:
        number = mat.parse(data["matricule"], today=_today()).number \
            if data.get("matricule") else None
        birth = date.fromisoformat(data["birth_date"]) if data.get("birth_date") else None
    except ValueError:
        return found
    if birth is not None:
        try:
            check_identity(number, data.get("no_matricule_reason") or None, birth)
        except ValueError as exc:
            found.append({"field": "body", "reason": str(exc)})
    return found


def _typed(values: dict[str, str], name: str) -> str:
    value = values.get(name, "").strip()
    return value.upper() if name == "country" else value


@page(Role.clerk)
async def new_patient(desk: Desk) -> Response:
    defaults = dict.fromkeys(PATIENT_FIELDS, "") | {"country": "LU", "language": "fr"}
    values = clerk.page_values(desk, defaults) | {"idem": clerk.fresh_idem(desk)}
    if desk.form is None:
        return _form_page(desk, values)
    # Empty fields are not given: the schema says which are required, and defaults the rest.
    data = {name: _typed(values, name) for name in PATIENT_FIELDS if _typed(values, name)}
    try:
        checked = clerk.validated(PatientIn, data, _record_errors(data))

        async def make() -> str:
            created = await service.create_patient(desk.session, desk.tenant_id, checked)
            return f"/desk/patients/{created.id}"

        return await desk.once(make)
    except (ValidationFailed, Conflict) as error:
        clerk.report(desk, error, PATIENT_FIELDS)
        return _form_page(desk, values, status=error.status,
                          existing_id=error.extra.get("existing_id"))


def _patient_values(patient: Patient) -> dict[str, str]:
    values = {name: getattr(patient, name) for name in EDIT_FIELDS}
    return {name: "" if value is None else str(value) for name, value in values.items()}


@page(Role.clerk)
async def edit_patient(desk: Desk) -> Response:
    patient = await service.read_patient(desk.session, desk.tenant_id,
                                         clerk.path_id(desk, "patient_id"))
    current = _patient_values(patient) | {"version": str(patient.version)}
    values = clerk.page_values(desk, current) | {"idem": clerk.fresh_idem(desk)}
    if desk.form is None:
        return _form_page(desk, values, patient=patient)
    try:
        missing = [{"field": name, "reason": "Field required"} for name in REQUIRED
                   if not _typed(values, name)]
        data: dict[str, Any] = {}
        for name in EDIT_FIELDS:
            typed = _typed(values, name)
            if typed or name in NULLABLE:
                data[name] = typed or None
            elif name not in REQUIRED:
                data[name] = ""
        checked = clerk.validated(PatientPatch, data, missing + _record_errors(data))
        stale = values["version"] != str(patient.version)
        # Only what changed is sent, as a client of the API would: the audit trail names it.
        changes = {name: value for name, value in checked.model_dump(exclude_unset=True).items()
                   if getattr(patient, name) != value}

        async def make() -> str:
            if stale:
                raise Conflict("The patient changed meanwhile: reload and retry.")
            if changes:
                await service.update_patient(
                    desk.session, desk.tenant_id, patient,
                    PatientPatch.model_construct(_fields_set=set(changes), **changes))
            return f"/desk/patients/{patient.id}"

        # A second submit of the same form goes where the first went (not "changed
        # meanwhile").
        return await desk.once(make)
    except (ValidationFailed, Conflict) as error:
        clerk.report(desk, error, EDIT_FIELDS)
        return _form_page(desk, values, patient=patient, status=error.status)


# --- the patient's page -----------------------------------------------------------------------

def _coverage_defaults() -> dict[str, str]:
    return dict.fromkeys(COVERAGE_FIELDS, "") | {"kind": "statutory", "payer": "CNS",
                                                 "valid_from": _today().isoformat()}


def _admit_defaults() -> dict[str, str]:
    return dict.fromkeys(ADMIT_FIELDS, "") | {"kind": "inpatient",
                                              "admitted_at": clerk.now_input(),
                                              "room_class": "second"}


def _admit_options(desk: Desk) -> dict[str, Any]:
    return {"kinds": clerk.options(desk, clerk.STAY_KINDS),
            "room_classes": clerk.options(desk, clerk.ROOM_CLASSES)}


@page(Role.clerk)
async def patient_page(desk: Desk) -> Response:
    patient = await service.read_patient(desk.session, desk.tenant_id,
                                         clerk.path_id(desk, "patient_id"))
    coverages = await PatientRepository(desk.session, desk.tenant_id).coverages(patient.id)
    try:
        after = decode_time_cursor(desk.request.query_params.get("stays") or None)
    except ValidationFailed:
        after = None
    found = await StayRepository(desk.session, desk.tenant_id).page(
        limit=STAYS_PAGE + 1, patient_id=patient.id, state=None, after=after)
    older = ""
    if len(found) > STAYS_PAGE:
        found = found[:STAYS_PAGE]
        last = found[-1]
        older = f"/desk/patients/{patient.id}?" + urlencode({"stays": encode_cursor(
            [last.admitted_at.isoformat(), str(last.id)])}) + "#stays"
    return desk.render(
        "desk/clerk/patient.html", **clerk.render_values(desk), patient=patient,
        coverages=coverages, stays=found, older_stays=older, today=_today(),
        coverage=_coverage_defaults() | {"idem": str(uuid.uuid4())},
        coverage_kinds=clerk.options(desk, clerk.COVERAGE_KINDS),
        admit=_admit_defaults() | {"idem": str(uuid.uuid4())}, **_admit_options(desk))


# --- coverages ------------------------------------------------------------------------------

@page(Role.clerk)
async def new_coverage(desk: Desk) -> Response:
    patient = await service.read_patient(desk.session, desk.tenant_id,
                                         clerk.path_id(desk, "patient_id"))
    values = clerk.page_values(desk, _coverage_defaults()) | {"idem": clerk.fresh_idem(desk)}
    values["first_class"] = "on" if clerk.checked(desk, "first_class") else ""
    status = 200
    if desk.form is not None:
        data: dict[str, Any] = {name: values[name].strip() for name in COVERAGE_FIELDS
                                if values[name].strip() and name != "first_class"}
        data["first_class"] = bool(values["first_class"])
        try:
            checked = clerk.validated(CoverageIn, data)

            async def make() -> str:
                await service.add_coverage(desk.session, desk.tenant_id, patient, checked)
                return f"/desk/patients/{patient.id}#coverages"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, COVERAGE_FIELDS)
            status = error.status
    return desk.render("desk/clerk/coverage_new.html", status=status,
                       **clerk.render_values(desk), patient=patient, coverage=values,
                       coverage_kinds=clerk.options(desk, clerk.COVERAGE_KINDS))


# --- admission --------------------------------------------------------------------------------

@page(Role.clerk)
async def admit(desk: Desk) -> Response:
    """Open a stay for the patient (admit now, or plan an admission)."""
    patient = await service.read_patient(desk.session, desk.tenant_id,
                                         clerk.path_id(desk, "patient_id"))
    values = clerk.page_values(desk, _admit_defaults()) | {"idem": clerk.fresh_idem(desk)}
    for name in ADMIT_CHECKBOXES:
        values[name] = "on" if clerk.checked(desk, name) else ""
    status = 200
    if desk.form is not None:
        data: dict[str, Any] = {"patient_id": str(patient.id)}
        for name in ADMIT_FIELDS:
            typed = values[name].strip()
            if name in ADMIT_CHECKBOXES:
                data[name] = bool(typed)
            elif typed:
                data[name] = clerk.aware(typed) if name == "admitted_at" else typed
        try:
            checked = clerk.validated(StayIn, data)

            async def make() -> str:
                stay = await stays.create_stay(desk.session, desk.tenant_id, checked)
                return f"/desk/stays/{stay.id}"

            return await desk.once(make)
        except (ValidationFailed, Conflict) as error:
            clerk.report(desk, error, ADMIT_FIELDS)
            status = error.status
    return desk.render("desk/clerk/admit.html", status=status, **clerk.render_values(desk),
                       patient=patient, admit=values, **_admit_options(desk))


def routes() -> list[BaseRoute]:
    return [
        Route("/desk/patients", patients, methods=["GET"]),
        Route("/desk/patients/search", patient_results, methods=["GET"]),  # the partial
        Route("/desk/patients/check-matricule", check_matricule, methods=["GET"]),
        Route("/desk/patients/new", new_patient, methods=["GET", "POST"]),
        Route("/desk/patients/{patient_id}", patient_page, methods=["GET"]),
        Route("/desk/patients/{patient_id}/edit", edit_patient, methods=["GET", "POST"]),
        Route("/desk/patients/{patient_id}/coverages/new", new_coverage,
              methods=["GET", "POST"]),
        Route("/desk/patients/{patient_id}/stays/new", admit, methods=["GET", "POST"]),
    ]


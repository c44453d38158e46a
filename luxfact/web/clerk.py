"""The admission desk's pages (role `clerk`): patients, their coverages, stays, movements and
acts. The pages themselves are in `clerk_patients` and `clerk_stays`; this module gathers
their routes and holds what both share: labels, dates and amounts as the desk shows them,
and the service's errors turned into messages next to the form fields they concern.

Forms post to the URL of the page that shows them (a standalone page per form, the same form
also embedded in the patient's or the stay's page): a form sent after the session expired
then comes back filled, at that URL, once the user has logged in again (`desk.value`).
"""

import re
import uuid
from collections.abc import Collection, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.routing import BaseRoute

from luxfact.kit import problems
from luxfact.kit.errors import LuxfactError, NotFound, ValidationFailed
from luxfact.kit.money import cents_str
from luxfact.kit.time import LUXEMBOURG
from luxfact.web.desk import Desk
from luxfact.web.i18n import N_

M = TypeVar("M", bound=BaseModel)


def routes() -> list[BaseRoute]:
    # Imported here: both page modules import the helpers below.
    from luxfact.web import clerk_patients, clerk_stays

    return [*clerk_patients.routes(), *clerk_stays.routes()]


# --- labels (English, translated where shown) ---------------------------------------------

STAY_KINDS = {"inpatient": N_("Inpatient"), "day_hospital": N_("Day hospital"),
              "outpatient": N_("Outpatient"), "emergency": N_("Emergency")}
STAY_STATES = {"planned": N_("planned"), "admitted": N_("admitted"),
               "discharged": N_("discharged"), "cancelled": N_("cancelled"),
               "closed": N_("closed")}
ACT_STATES = {"recorded": N_("recorded"), "cancelled": N_("cancelled"),
              "invoiced": N_("invoiced")}
MOVEMENTS = {"admit": N_("Admission"), "transfer": N_("Transfer"),
             "discharge": N_("Discharge"), "cancel_admit": N_("Admission cancelled"),
             "cancel_transfer": N_("Transfer cancelled"),
             "cancel_discharge": N_("Discharge cancelled")}
# The movement a cancellation undoes, in a sentence.
MOVEMENT_NOUNS = {"admit": N_("admission"), "transfer": N_("transfer"),
                  "discharge": N_("discharge")}
ROOM_CLASSES = {"second": N_("Second class"), "first": N_("First class")}
SEXES = {"F": N_("Female"), "M": N_("Male"), "X": N_("Other or undetermined")}
NO_MATRICULE = {"foreign": N_("Foreign patient"), "unidentified": N_("Not identified yet"),
                "newborn": N_("Newborn"), "other": N_("Other reason")}
COVERAGE_KINDS = {"statutory": N_("Statutory (CNS)"), "other_fund": N_("Other fund"),
                  "accident": N_("Work accident"), "foreign": N_("Foreign insurer"),
                  "complementary": N_("Complementary insurer"),
                  "social_tiers_payant": N_("Social tiers payant")}
PATIENT_LANGUAGES = {"fr": "Français", "de": "Deutsch", "en": "English"}
LABELS = {"kind": STAY_KINDS, "state": STAY_STATES, "act_state": ACT_STATES,
          "movement": MOVEMENTS, "room_class": ROOM_CLASSES, "sex": SEXES,
          "no_matricule": NO_MATRICULE, "coverage": COVERAGE_KINDS}


def options(desk: Desk, labels: Mapping[str, str], blank: str | None = None
            ) -> list[tuple[str, str]]:
    """(value, translated text) for the `select` macro, with a first empty choice if
    `blank` is given."""
    found = [("", desk._(blank))] if blank is not None else []
    return found + [(value, desk._(text)) for value, text in labels.items()]


# --- dates, times and amounts as the desk shows and reads them ------------------------------

def local(moment: datetime | None) -> str:
    """A moment in Luxembourg time: `02.03.2026 08:00`."""
    return moment.astimezone(LUXEMBOURG).strftime("%d.%m.%Y %H:%M") if moment else ""


def day(value: date | None) -> str:
    return value.strftime("%d.%m.%Y") if value else ""


def local_input(moment: datetime | None) -> str:
    """The value of a `datetime-local` input: Luxembourg time without a zone."""
    return moment.astimezone(LUXEMBOURG).strftime("%Y-%m-%dT%H:%M") if moment else ""


def now_input() -> str:
    return datetime.now(LUXEMBOURG).strftime("%Y-%m-%dT%H:%M")


def aware(text: str) -> str:
    """What a `datetime-local` input sends (Luxembourg time, no zone) as the ISO date-time
    with its offset that the API's schemas take. Anything else is left for the schema to
    refuse with its reason."""
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LUXEMBOURG)
    return moment.isoformat()


def local_day_of(text: str) -> date | None:
    """The Luxembourg day of a typed date-time, or None."""
    try:
        moment = datetime.fromisoformat(aware(text))
    except ValueError:
        return None
    return moment.astimezone(LUXEMBOURG).date() if moment.tzinfo else None


def amount(value: int | Decimal | str, language: str) -> str:
    """Cents (an int) or euros (a Decimal or its string) as `19,78 €` (`19.78 €` in English)."""
    text = cents_str(value) if isinstance(value, int) else format(Decimal(value), "f")
    return f"{text.replace('.', ',') if language in ('fr', 'de') else text} €"


def path_id(desk: Desk, name: str) -> uuid.UUID:
    """An id in the path; what is not a UUID cannot exist: the 404 page."""
    try:
        return uuid.UUID(desk.request.path_params[name])
    except ValueError:
        raise NotFound() from None


def checked(desk: Desk, name: str) -> bool:
    return desk.value(name) in ("on", "true", "1")


def page_values(desk: Desk, defaults: Mapping[str, str]) -> dict[str, str]:
    """A form's values: as posted, or restored after a new login, or the defaults."""
    return {name: desk.value(name, default) for name, default in defaults.items()}


def fresh_idem(desk: Desk) -> str:
    """The form's idempotency key: the one it was sent with (re-shown after an error or a
    new login), or a new one."""
    return desk.value("idem") or str(uuid.uuid4())


def validated(schema: type[M], data: dict[str, Any],
              extra: list[dict[str, str]] | None = None) -> M:
    """The form's data as the API's schema, or ValidationFailed with every field's reason
    (those found before, in `extra`, included)."""
    try:
        model = schema.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(errors=[*(extra or []),
                                       *problems.field_errors(exc)]) from None
    if extra:
        raise ValidationFailed(errors=extra)
    return model


# --- the service's reasons, next to the fields, in the user's language ---------------------

# Reasons of a whole record (pydantic's model validators, check_identity): the field they
# concern.
_RECORD_REASONS = (
    (re.compile(r"give a matricule, or no_matricule_reason .*"), "matricule",
     N_("Give the matricule, or why the patient has none.")),
    (re.compile(r"the matricule encodes another birth date \((?P<digits>\d+)\)"), "matricule",
     N_("The matricule encodes another birth date (%(digits)s).")),
    (re.compile(r"valid_to is before valid_from"), "valid_to",
     N_("The end is before the start.")),
)
_FIELD_PREFIX = re.compile(r"^(?P<field>[a-z_]+): (?P<reason>.+)$", re.DOTALL)

# Reasons with values in them: the English pattern, and its text to translate.
_PATTERNS = tuple((re.compile(pattern), text) for pattern, text in (
    (r"a matricule has 13 digits, not (?P<count>\d+)",
     N_("a matricule has 13 digits, not %(count)s")),
    (r"birth year (?P<year>\d+) is not plausible", N_("birth year %(year)s is not plausible")),
    (r"month (?P<month>\d+) does not exist \(00 means unknown\)",
     N_("month %(month)s does not exist (00 means unknown)")),
    (r"day (?P<day>\d+) does not exist in (?P<month>[\d-]+)",
     N_("day %(day)s does not exist in %(month)s")),
    (r"The stay is (?P<state>\w+): only a planned stay can be admitted\.",
     N_("The stay is %(state)s: only a planned stay can be admitted.")),
    (r"The stay is (?P<state>\w+): only an admitted patient can be transferred\.",
     N_("The stay is %(state)s: only an admitted patient can be transferred.")),
    (r"The stay is (?P<state>\w+): only an admitted patient can be discharged\.",
     N_("The stay is %(state)s: only an admitted patient can be discharged.")),
    (r"The stay is (?P<state>\w+): acts are recorded on admitted or discharged stays\.",
     N_("The stay is %(state)s: acts are recorded on admitted or discharged stays.")),
    (r"Only the latest movement can be cancelled; this (?P<noun>\w+) was followed by "
     r"others: cancel those first\.",
     N_("Only the latest movement can be cancelled; this %(noun)s was followed by others: "
        "cancel those first.")),
    (r"Act (?P<code>\S+) at (?P<at>\S+) was priced in the room class before this change: "
     r"correct or cancel it first\.",
     N_("Act %(code)s of %(at)s was priced in the room class before this change: correct "
        "or cancel it first.")),
    (r"Participation up to (?P<until>\S+) is invoiced already: a discharge on (?P<on>\S+) "
     r"would make that invoice wrong\. Credit it first\.",
     N_("The participation up to %(until)s is invoiced already: a discharge on %(on)s would "
        "make that invoice wrong. Credit it first.")),
    (r"The patient is already covered by (?P<payer>.+) from (?P<start>\S+) to (?P<end>.+): "
     r"end that coverage first\.",
     N_("The patient is already covered by %(payer)s from %(start)s to %(end)s: end that "
        "coverage first.")),
    (r"A stay with visit number (?P<number>\S+) exists already\.",
     N_("A stay with visit number %(number)s exists already.")),
    (r"The act is on invoice \S+: credit the invoice to correct it\.",
     N_("The act is on an invoice: credit the invoice to correct it.")),
    (r"This record was merged into patient \S+: change that one\.",
     N_("This record was merged into another patient: change that one.")),
    (r"merged into patient \S+", N_("merged into another patient")),
    (r"unknown act code '(?P<code>[^']*)'", N_("unknown act code %(code)s")),
    (r"(?P<code>\S+) is not valid on (?P<on>\S+); its versions: (?P<versions>.*)",
     N_("%(code)s is not valid on %(on)s (its versions: %(versions)s)")),
    (r"no value of key letter '(?P<letter>[^']*)' in force on (?P<on>\S+)",
     N_("no value of key letter %(letter)s on %(on)s")),
    (r"(?:unknown_modifier: )?unknown modifier '(?P<code>[^']*)'",
     N_("unknown modifier %(code)s")),
    (r"modifier_not_applicable: modifier (?P<modifier>\S+) does not apply to (?P<code>\S+)",
     N_("modifier %(modifier)s does not apply to %(code)s")),
    (r"non_cumulable: (?P<code>\S+) cannot be cumulated with (?P<other>\S+) \(line [^)]*\) "
     r"on (?P<on>\S+)", N_("%(code)s cannot be cumulated with %(other)s on %(on)s")),
    (r"max_per_(?:day|stay): at most (?P<count>\S+) of (?P<code>\S+) .*",
     N_("at most %(count)s of %(code)s: the limit is reached")),
    (r"outside_stay: act on (?P<on>\S+), outside the stay (?P<span>\S+)",
     N_("the act (%(on)s) is outside the stay (%(span)s)")),
    (r"stay_kinds: (?P<code>\S+) is billed on .* stays only, not on an? (?P<kind>\w+) stay",
     N_("%(code)s is not billed on this kind of stay")),
    (r"specialties: (?P<code>\S+) may be billed by (?P<allowed>.+) only, not by specialty "
     r"(?P<given>.*)", N_("%(code)s may be billed by %(allowed)s only")),
))
# Values in those reasons that are words of the desk (a state, a movement).
_WORDS: dict[str, dict[str, str]] = {"state": STAY_STATES, "noun": MOVEMENT_NOUNS}
# A field's own wording for "does not match the pattern".
_PATTERN_REASONS = {
    "admitting_doctor": N_("an 8-digit provider code, not starting with 0"),
    "attending_doctor": N_("an 8-digit provider code, not starting with 0"),
    "performer": N_("an 8-digit provider code, not starting with 0"),
    "accident_number": N_("U or L and 9 digits"),
    "country": N_("two capital letters (LU, FR, DE, BE…)"),
    "specialty": N_("small letters and _ only (internal_medicine)"),
    "code": N_("letters, digits, dot or dash"),
    "unit": N_("letters, digits, space, dot, dash or slash"),
    "room": N_("letters, digits, space, dot, dash or slash"),
    "bed": N_("letters, digits, space, dot, dash or slash"),
    "external_id": N_("letters, digits, dot, dash or slash"),
}
# The common reasons of the services and of the schemas (exact texts), so that the
# translation test asks for them.
REASONS = (
    N_("Field required"), N_("must not be empty"),
    N_("contains characters a name does not have"), N_("is in the future"),
    N_("is not plausible"), N_("expected a date as YYYY-MM-DD"),
    N_("expected a date-time as YYYY-MM-DDTHH:MM:SS with a time zone"),
    N_("not a telephone number"), N_("not an e-mail address"), N_("already registered"),
    N_("cannot be null"), N_("before the birth date"), N_("no such patient"),
    N_("before the patient's birth date"), N_("after the patient's death"),
    N_("already used"), N_("before the last movement"),
    N_("a transfer moves somewhere: give unit, room, bed or room_class"),
    N_("before the admission"), N_("no effective movement with this id"),
    N_("before an act of the stay"), N_("outside the stay (admission to discharge)"),
    N_("in the future"), N_("cannot be removed"), N_("overlaps another coverage"),
    N_("a matricule has digits only"),
    N_("this is the old 11-digit number: ask for the 13-digit one (the old one is accepted "
       "for search only)"),
    N_("the birth date it encodes is in the future"),
    N_("check digit 12 (Luhn) is wrong: a digit was mistyped"),
    N_("check digit 13 (Verhoeff) is wrong: a digit was mistyped"),
    N_("not a valid 11-digit number of the old form (mod-11 check digit)"),
    N_("an accident coverage needs the work-accident number ([UL] and 9 digits)"),
    N_("an attestation has an end date"), N_("an attestation is valid 6 months at most"),
    N_("The stay was cancelled: nothing more can happen on it."),
    N_("The stay is closed (fully billed): credit its invoices first."),
    N_("The act was cancelled."), N_("The act changed meanwhile: reload and retry."),
    N_("The patient changed meanwhile: reload and retry."),
    N_("A patient with this matricule exists already."),
    N_("Another patient has this matricule."), N_("The act is outside the stay."),
    N_("The discharge is before the admission."),
    N_("This stay is invoiced: credit its invoices before cancelling the admission."),
    N_("Validation failed"), N_("Conflict"),
)


def reason_text(desk: Desk, reason: str, field: str = "") -> str:
    """A reason of the service or of a schema (English), in the user's language."""
    if reason.startswith("String should match pattern") and field in _PATTERN_REASONS:
        return desk._(_PATTERN_REASONS[field])
    translated = desk.translate_reason(reason)
    if translated != reason:
        return translated
    for pattern, text in _PATTERNS:
        found = pattern.fullmatch(reason)
        if found:
            values = {name: desk._(_WORDS[name][value]) if value in _WORDS.get(name, {})
                      else value for name, value in found.groupdict().items()}
            return desk._(text, **values)
    return reason


def record_reason(reason: str, fields: Collection[str]
                   ) -> tuple[str, str, dict[str, str] | None]:
    """The field a record-wide reason concerns (or `_form`), the reason, and the values of
    the desk's own text for it (None: the reason is the service's)."""
    for pattern, field, text in _RECORD_REASONS:
        found = pattern.fullmatch(reason)
        if found:
            return field, text, found.groupdict()
    prefixed = _FIELD_PREFIX.match(reason)
    if prefixed and prefixed["field"] in fields:
        return prefixed["field"], prefixed["reason"], None
    return "_form", reason, None


def report(desk: Desk, error: LuxfactError, fields: Collection[str]) -> dict[str, str]:
    """The error's reasons next to the form's fields (`desk.errors`, `_form` for the rest),
    translated: what the template shows."""
    items: list[dict[str, str]] = []
    for item in error.errors:
        name = str(item.get("field", "")).removeprefix("body.")
        reason = str(item.get("reason", ""))
        values: dict[str, str] | None = None
        if name in ("", "body"):
            name, reason, values = record_reason(reason, fields)
        elif name not in fields:
            head = name.split(".")[0]  # modifiers.0 -> modifiers
            name = head if head in fields else "_form"
        text = desk._(reason, **values) if values is not None else \
            reason_text(desk, reason, name)
        items.append({"field": name, "reason": text})
    if not error.errors or error.status == 409:
        # A conflict says what happened in its detail; its field reasons say where.
        items.append({"field": "_form", "reason": reason_text(desk, error.detail)})
    return desk.field_errors(ValidationFailed(errors=items))


def render_values(desk: Desk) -> dict[str, Any]:
    """What every clerk template is given besides its own values."""
    return {"labels": LABELS, "local": local, "day": day,
            "amount": lambda value: amount(value, desk.language),
            "can_change": desk.user.role == "clerk"}

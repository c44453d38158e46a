"""HL7 v2 messages applied through the same services as the REST API. Never commits.

`receive` runs in the caller's transaction (the request's, or the MLLP listener's): it logs
the message under its (sending facility, control id), applies it inside a savepoint, and
stores the ACK. A message refused (AE) leaves nothing of itself but its log row: the savepoint
is rolled back. A second delivery of a control id inserts nothing and replays the first ACK.

Each event maps onto the API's use cases, with the API's input schemas (`PatientIn`,
`StayIn`, `MovementIn`, `ActIn`, `CoverageIn`) validating what the message says:

    A01 admit, A04 register, A05 pre-admit    patient found by matricule (else created),
                                              coverages (IN1), stay created (PV1-19 is its
                                              external id); A01/A04 admit a pre-admitted stay
    A02 transfer, A03 discharge               a movement of the stay
    A11, A12, A13                             cancel the stay's latest admit, transfer,
                                              discharge (cancelling an admission cancels its
                                              recorded acts)
    A06, A07                                  the stay's kind changes (in/outpatient); its
                                              acts not yet invoiced are priced again
    A08                                       the patient's data, coverages, the stay's doctors
    A40                                       the duplicate (MRG) merged into the patient (PID)
    DFT^P03                                   each FT1 an act, checked and priced
"""

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.db.engine import Database
from luxfact.db.errors import lost_race
from luxfact.hl7 import ack as acks
from luxfact.hl7 import parse
from luxfact.hl7.ack import Outcome
from luxfact.hl7.models import HL7Message
from luxfact.hl7.parse import Event, Location, Parsed, Refused
from luxfact.hl7.repository import HL7Repository
from luxfact.kit import context
from luxfact.kit.errors import Conflict, LuxfactError
from luxfact.kit.problems import reason as clean_reason
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.patients import service as patients
from luxfact.patients.merge import merge_patients
from luxfact.patients.models import Patient
from luxfact.patients.repository import PatientRepository
from luxfact.patients.schemas import CoverageIn, PatientIn, PatientPatch
from luxfact.stays import acts as act_service
from luxfact.stays import service as stays
from luxfact.stays.models import Stay
from luxfact.stays.repository import StayRepository
from luxfact.stays.schemas import PROVIDER, ActIn, MovementIn, StayIn, StayPatch

M = TypeVar("M", bound=BaseModel)

# Attempts at a message whose writes collide with a concurrent message's (two admissions of
# one new patient at once: the second sees the first's patient on its next attempt).
ATTEMPTS = 3


class Transient(Exception):
    """The message could not be applied for a reason that is not its own (a concurrent
    change kept winning): nothing is kept, the sender should deliver it again."""


@dataclass
class Touched:
    patients: dict[str, None] = field(default_factory=dict)
    stays: dict[str, None] = field(default_factory=dict)
    acts: dict[str, None] = field(default_factory=dict)

    def patient(self, patient_id: uuid.UUID) -> None:
        self.patients[str(patient_id)] = None

    def stay(self, stay_id: uuid.UUID) -> None:
        self.stays[str(stay_id)] = None

    def act(self, act_id: uuid.UUID) -> None:
        self.acts[str(act_id)] = None

    def columns(self) -> dict[str, list[str]]:
        return {"patient_ids": list(self.patients), "stay_ids": list(self.stays),
                "act_ids": list(self.acts)}


@dataclass(frozen=True)
class Received:
    """What the sender gets back."""

    ack: str
    code: str
    charset: str
    message_id: uuid.UUID | None
    duplicate: bool = False

    def encoded(self) -> bytes:
        return self.ack.encode(self.charset, errors="replace")


def _now() -> datetime:
    return utcnow()


def _ack_id(message_id: uuid.UUID) -> str:
    return "LFX" + message_id.hex[:17].upper()


async def receive(session: AsyncSession, tenant_id: uuid.UUID, raw: bytes, *,
                  channel: str, parsed: Parsed | None = None,
                  rejection: parse.Rejected | None = None, size: int | None = None
                  ) -> Received:
    """Log, apply and answer one message, in the caller's transaction.

    `parsed`: the message read already (the listener reads it to find its hospital).
    `rejection`: the caller already knows the message cannot be processed (over the size
    limit, bad framing): it is logged and answered AR, nothing parsed.
    """
    header = rejection.header if rejection else parsed.header if parsed else None
    if rejection is None and parsed is None:
        try:
            parsed = parse.read(raw)
            header = parsed.header
        except parse.Rejected as exc:
            rejection, header = exc, exc.header
    repo = HL7Repository(session, tenant_id)
    message_id = uuid.uuid4()
    now = _now()
    row = _log_row(message_id, header, channel, raw, size, now)
    if rejection is not None and (rejection.transport or rejection.header_from_raw):
        # Refused for how it came (too large, badly framed), not for what it says, or with a
        # header the library could not read: its control id stays free for a good delivery.
        row["control_id"] = None
    charset = header.charset if header else "utf-8"
    if row["control_id"]:
        if not await repo.claim(row):
            existing = await repo.by_key(row["sending_facility"], row["control_id"])
            assert existing is not None
            if parse.same_message(existing.raw, raw):
                return Received(existing.ack, existing.ack_code, charset, existing.id,
                                duplicate=True)
            return await _reused_control_id(repo, row, header, existing, charset)
    else:
        await repo.insert(row)
    if rejection is not None:
        outcome, touched = _rejected(rejection), Touched()
    else:
        assert parsed is not None
        try:
            outcome, touched = await apply(session, tenant_id, parsed)
        except Transient as exc:
            # Not the message's fault: nothing of it is kept, so a new delivery is applied.
            await repo.delete(message_id)
            text = acks.build(header, Outcome(acks.REJECT, f"{exc}: deliver it again",
                                              parse.INTERNAL_ERROR),
                              _ack_id(message_id), now.astimezone(LUXEMBOURG))
            return Received(text, acks.REJECT, charset, None)
    text = acks.build(header, outcome, _ack_id(message_id), now.astimezone(LUXEMBOURG))
    await repo.finish(message_id, {"status": outcome.status, "ack_code": outcome.code,
                                   "reason": outcome.reason[:1000], "ack": text,
                                   "processed_at": _now(), **touched.columns()})
    # No audit event of its own: the log row is the message's record, and what it changed
    # is audited by the services, as the sender ("hl7:<facility>" or the API key).
    return Received(text, outcome.code, charset, message_id)


async def _reused_control_id(repo: HL7Repository, row: dict[str, Any],
                             header: parse.Header | None, existing: HL7Message,
                             charset: str) -> Received:
    """Another message under a control id already used: not a redelivery (the first ACK
    would say it was applied), nor applied (its id would not identify it). Kept in the log
    without the control id, which stays the first message's, and answered AE."""
    when = existing.received_at.astimezone(LUXEMBOURG).strftime("%Y-%m-%d %H:%M")
    outcome = Outcome(acks.ERROR, f"MSH-10: control id {row['control_id']} was used by "
                      f"another message received {when}: this one is not applied; give "
                      "each message its own control id", parse.DUPLICATE_KEY,
                      Location("MSH", 10))
    row = {**row, "control_id": None}
    await repo.insert(row)
    text = acks.build(header, outcome, _ack_id(row["id"]), row["received_at"].astimezone(
        LUXEMBOURG))
    await repo.finish(row["id"], {"status": outcome.status, "ack_code": outcome.code,
                                  "reason": outcome.reason[:1000], "ack": text,
                                  "processed_at": _now(), **Touched().columns()})
    return Received(text, outcome.code, charset, row["id"])


def _rejected(exc: parse.Rejected) -> Outcome:
    return Outcome(acks.REJECT, exc.reason, exc.code, exc.location)


# Messages whose arrival is what a refused message of their visit was waiting for.
_REGISTRATIONS = ("A01", "A04", "A05")
# Messages that write a patient's data (registrations update a known patient too): replayed
# after a later change of that patient, they would undo it with older data.
_PATIENT_WRITERS = ("A01", "A04", "A05", "A08", "A40")


async def _applied_since(session: AsyncSession, tenant_id: uuid.UUID,
                         message: HL7Message, parsed: Parsed) -> list[Any]:
    """The messages applied since this one was received that touched its visit or, when it
    writes patient data, its patient: their history has moved on. Left out: the
    registrations it may have been waiting for (its visit's, and the one that registered
    its patient after it came; a later registration of that patient, for another visit,
    updated its data, and counts)."""
    event = _event(parsed)
    if isinstance(event, Outcome):
        return []
    stays_, patients_ = set(), set()
    if event.visit is not None and event.visit.visit_number:
        stay = await StayRepository(session, tenant_id).by_external_id(
            event.visit.visit_number)
        if stay is not None:
            stays_.add(str(stay.id))
            if event.trigger in _PATIENT_WRITERS:
                patients_.add(str(stay.patient_id))
    run = Apply(session, tenant_id, event, Touched())
    if event.trigger in _PATIENT_WRITERS:
        for named in (event.patient, event.merge):
            if named is not None and (named.identity.matricule
                                      or named.identity.legacy_matricule):
                found = await run.find_patient(named.identity)
                if found is not None:
                    patients_.add(str(found.id))
    if not stays_ and not patients_:
        return []
    # Registered after this message came: by the registration it was waiting for.
    awaited = {p for p in patients_ if (patient := await run.patients.get(uuid.UUID(p)))
               is not None and patient.created_at > message.received_at}
    later = await HL7Repository(session, tenant_id).accepted_since(message.received_at)
    since = []
    for row in later:
        if row.id == message.id:
            continue
        registration = row.message_type.rpartition("^")[2] in _REGISTRATIONS
        of_visit = bool(stays_ & {str(i) for i in row.stay_ids})
        touched = patients_ & {str(i) for i in row.patient_ids}
        if registration and (of_visit or touched & awaited):
            awaited -= touched  # what it waited for; a later registration of them counts
            continue
        if of_visit or touched:
            since.append(row)
    return since


async def replay(session: AsyncSession, tenant_id: uuid.UUID,
                 message_id: uuid.UUID, *, force: bool = False) -> tuple[HL7Message, bool]:
    """Apply a refused message again (its data fixed meanwhile); one applied already is left
    as it is. Returns the message and whether it was applied again.

    Refused (unless `force`) when other messages of its visit were applied since it came:
    replayed now it would be applied after them, out of order (an old A03 undoing a later
    A13), or twice (its charges delivered again under another control id)."""
    from luxfact.kit.errors import NotFound

    repo = HL7Repository(session, tenant_id)
    message = await repo.get(message_id, lock=True)
    if message is None:
        raise NotFound("No such message.")
    if message.status == "accepted":
        return message, False
    if message.size != len(message.raw):
        raise Conflict("Only the beginning of this message was kept (it was over the size "
                       "limit): it cannot be replayed. Have the sender deliver it again.")
    if message.control_id is None:
        raise Conflict("This message has no control id (or came badly framed): replayed, it "
                       "could later be applied twice. Have the sender deliver it again.")
    header: parse.Header | None = None
    try:
        parsed = parse.read(message.raw)
        header = parsed.header
        since = [] if force else await _applied_since(session, tenant_id, message, parsed)
        if since:
            names = ", ".join(f"{row.message_type} {row.control_id}" for row in since[:10])
            raise Conflict(
                f"Messages of this visit or patient were applied since this one was refused "
                f"({names}"
                f"{', …' if len(since) > 10 else ''}): replayed now, it would come after them "
                "out of order, or twice if one of them delivered it again. Check them, then "
                "replay with force=true if it must still be applied.",
                applied_since=[str(row.id) for row in since])
        outcome, touched = await apply(session, tenant_id, parsed)
    except parse.Rejected as exc:
        header = exc.header
        outcome, touched = _rejected(exc), Touched()
    except Transient:
        raise Conflict("The message conflicts with concurrent changes: replay it again.") \
            from None
    now = _now()
    text = acks.build(header, outcome, _ack_id(message.id), now.astimezone(LUXEMBOURG))
    await repo.update(message.id, {"status": outcome.status, "ack_code": outcome.code,
                                   "reason": outcome.reason[:1000], "ack": text,
                                   "processed_at": now, "attempts": message.attempts + 1,
                                   **touched.columns()})
    await record(session, "hl7.replay", "hl7_message", message.id,
                 {"type": message.message_type, "ack": outcome.code}, tenant_id=tenant_id)
    updated = await repo.get(message.id)
    assert updated is not None
    return updated, True


async def receive_alone(db: Database, tenant_id: uuid.UUID, raw: bytes, *, channel: str,
                        parsed: Parsed | None = None,
                        rejection: parse.Rejected | None = None,
                        size: int | None = None) -> Received:
    """`receive` for a caller with no transaction of its own (the MLLP listener), in
    transactions it opens.

    A message is first applied with no savepoint, and logged with its ACK at the end, in one
    statement: three round trips fewer than `receive` (the savepoint, its release, the log
    row's update), on the path nearly every message takes. Anything else (a refusal, a
    conflict with a concurrent change, a control id delivered before) rolls that attempt
    back, and `receive` then handles the message in a new transaction as it always does:
    a refused message is applied twice (once to learn that it is refused), which is rare,
    and its ACK and log are those of `receive`, whatever the path."""
    if parsed is not None and rejection is None:
        try:
            async with db.transaction() as session:
                received = await _receive_applied(session, tenant_id, raw, parsed, channel,
                                                  size)
                if received is None:
                    raise _Undo
                return received
        except (_Undo, IntegrityError):
            pass  # rolled back: nothing of that attempt is left
        except DBAPIError as exc:
            # A deadlock with a concurrent message: a duplicate delivery whose first attempt
            # failed takes the claim first and the message's locks after, where this
            # attempt took them the other way round. Rolled back, handled as any other.
            if not lost_race(exc):
                raise
    for attempt in range(ATTEMPTS):
        try:
            async with db.transaction() as session:
                return await receive(session, tenant_id, raw, channel=channel,
                                     parsed=parsed, rejection=rejection, size=size)
        except DBAPIError as exc:
            if not lost_race(exc) or attempt + 1 == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


class _Undo(Exception):
    """Leaves the transaction so that it rolls back."""


async def _receive_applied(session: AsyncSession, tenant_id: uuid.UUID, raw: bytes,
                           parsed: Parsed, channel: str, size: int | None
                           ) -> Received | None:
    """The message applied and logged, AA; None when it is not applied (refused, or its
    control id taken), whatever it did then to be rolled back."""
    header = parsed.header
    if not header.control_id:
        return None
    event = _event(parsed)
    if isinstance(event, Outcome):
        return None
    now = _now()
    touched = Touched()
    try:
        await HANDLERS[event.trigger](Apply(session, tenant_id, event, touched))
    except (Refused, LuxfactError):
        return None
    message_id = uuid.uuid4()
    text = acks.build(header, Outcome(acks.ACCEPT), _ack_id(message_id),
                      now.astimezone(LUXEMBOURG))
    row = _log_row(message_id, header, channel, raw, size, now)
    row.update(status="accepted", ack_code=acks.ACCEPT, ack=text, processed_at=_now(),
               **touched.columns())
    if not await HL7Repository(session, tenant_id).claim(row):
        return None  # delivered before (or meanwhile): `receive` answers with its ACK
    return Received(text, acks.ACCEPT, header.charset, message_id)


def _log_row(message_id: uuid.UUID, header: parse.Header | None, channel: str, raw: bytes,
             size: int | None, now: datetime) -> dict[str, Any]:
    """A message's log row, as refused until its outcome is known."""
    return {
        "id": message_id, "channel": channel,
        "sending_application": header.sending_application if header else "",
        "sending_facility": header.sending_facility if header else "",
        "control_id": (header.control_id or None) if header else None,
        "message_type": header.type_code[:20] if header else "",
        "version": header.version[:10] if header else "",
        "status": "rejected", "ack_code": acks.REJECT, "reason": "", "raw": raw,
        "size": size if size is not None else len(raw), "ack": "", "patient_ids": [],
        "stay_ids": [], "act_ids": [], "attempts": 1, "received_at": now, "processed_at": now,
    }


def _event(parsed: Parsed) -> Event | Outcome:
    """What the message means, or why it cannot be applied."""
    today = datetime.now(LUXEMBOURG).date()
    try:
        return parse.interpret(parsed, today)
    except Refused as exc:
        return _refused(exc)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError,
            ArithmeticError) as exc:
        # A structure the mapping did not foresee: the message's problem, not a crash.
        return Outcome(acks.ERROR, f"the message's segments cannot be read "
                       f"({type(exc).__name__})", parse.DATA_TYPE)


async def apply(session: AsyncSession, tenant_id: uuid.UUID,
                parsed: Parsed) -> tuple[Outcome, Touched]:
    """The message applied inside a savepoint: all of it (AA), or nothing of it (AE)."""
    event = _event(parsed)
    if isinstance(event, Outcome):
        return event, Touched()
    handler = HANDLERS[event.trigger]
    for attempt in range(ATTEMPTS):
        touched = Touched()
        try:
            async with session.begin_nested():
                await handler(Apply(session, tenant_id, event, touched))
        except Refused as exc:
            return _refused(exc), Touched()
        except LuxfactError as exc:
            return _from_error(exc), Touched()
        except IntegrityError:
            if attempt + 1 == ATTEMPTS:
                raise Transient("the message conflicts with concurrent changes") from None
            continue
        return Outcome(acks.ACCEPT), touched
    raise AssertionError("unreachable")


def _refused(exc: Refused) -> Outcome:
    return Outcome(acks.ERROR, exc.reason, exc.code, exc.location)


def _from_error(exc: LuxfactError) -> Outcome:
    """A service's refusal as an AE; field errors named by their HL7 field."""
    where = getattr(exc, "hl7_location", None)
    details = [f"{SERVICE_FIELDS.get(str(e.get('field')), e.get('field'))}: {e.get('reason')}"
               for e in exc.errors if e.get("field") and e.get("reason")]
    text = exc.detail
    if details and exc.detail in (exc.title, "Validation failed"):
        text = "; ".join(details)
    elif details:
        text = f"{exc.detail} ({'; '.join(details)})"
    code = parse.UNKNOWN_KEY if exc.status == 404 else parse.INTERNAL_ERROR
    return Outcome(acks.ERROR, text, code, where)


# --- applying the events ---------------------------------------------------------------------

# Where each input field comes from, to name it in a refusal.
PATIENT_FIELDS = {"matricule": "PID-3", "legacy_matricule": "PID-3",
                  "no_matricule_reason": "PID-3", "family_name": "PID-5.1",
                  "given_name": "PID-5.2", "birth_date": "PID-7", "sex": "PID-8",
                  "street": "PID-11.1", "city": "PID-11.3", "postal_code": "PID-11.5",
                  "country": "PID-11.6", "phone": "PID-13", "language": "PID-15",
                  "death_date": "PID-29",
                  "body": "PID"}
STAY_FIELDS = {"patient_id": "PID-3", "kind": "PV1-2", "admitted_at": "PV1-44",
               "unit": "PV1-3.1", "room": "PV1-3.2", "bed": "PV1-3.3", "room_class": "PV2-2",
               "admitting_doctor": "PV1-17", "attending_doctor": "PV1-7",
               "external_id": "PV1-19", "at": "EVN-6", "cancels": "PV1-19", "body": "PV1"}
COVERAGE_FIELDS = {"kind": "IN1-15", "payer": "IN1-3", "member_number": "IN1-36",
                   "accident_number": "IN1-36", "valid_from": "IN1-12", "valid_to": "IN1-13",
                   "body": "IN1"}
ACT_FIELDS = {"code": "FT1-7", "performed_at": "FT1-4", "performer": "FT1-20",
              "specialty": "FT1-13", "quantity": "FT1-10", "modifiers": "FT1-26",
              "body": "FT1"}
# The fields the services name in their refusals, by where they come from in a message.
SERVICE_FIELDS = {**PATIENT_FIELDS, **STAY_FIELDS, **ACT_FIELDS, "body": "message",
                  "valid_from": "IN1-12", "valid_to": "IN1-13", "coverage": "IN1",
                  "duplicate_id": "MRG-1", "kind": "PV1-2"}
_PROVIDER = re.compile(PROVIDER)
REASONS = {"string_pattern_mismatch": "contains characters or a form it may not have"}


def _location(text: str, occurrence: int) -> Location:
    segment, _, rest = text.partition("-")
    number, _, component = rest.partition(".")
    return Location(segment, int(number) if number else None,
                    int(component) if component else None, occurrence)


_NAMED_REASON = re.compile(r"^(?P<field>[a-z_]+): (?P<reason>.+)$", re.DOTALL)


def validate(schema: type[M], values: dict[str, Any], fields: dict[str, str],
             occurrence: int = 1) -> M:
    """The schema the API validates with; its complaints named by HL7 field."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        problems = []
        first: Location | None = None
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]) if err["loc"] else "body"
            message = clean_reason(err["msg"])
            # A check of the whole record that names its field ("phone: not a …").
            named = _NAMED_REASON.match(message) if name == "body" else None
            if named and named["field"] in fields:
                name, message = named["field"], named["reason"]
            where = fields.get(name, fields.get("body", "MSH"))
            if occurrence > 1:
                where = where.replace("-", f"({occurrence})-", 1)
            if name in ("admitting_doctor", "attending_doctor", "performer") and \
                    err["type"] == "string_pattern_mismatch":
                text = "not an 8-digit provider code"
            elif err["type"] == "missing":
                text = "missing"
            else:
                text = REASONS.get(err["type"], message)
            problems.append(f"{where}: {text}")
            first = first or _location(fields.get(name, "MSH"), occurrence)
        code = parse.REQUIRED_MISSING if all("missing" in p for p in problems) else \
            parse.DATA_TYPE
        raise Refused("; ".join(problems), first, code) from None


@dataclass
class Apply:
    session: AsyncSession
    tenant_id: uuid.UUID
    event: Event
    touched: Touched
    created: bool = False  # the patient was registered by this message

    @property
    def patients(self) -> PatientRepository:
        return PatientRepository(self.session, self.tenant_id)

    @property
    def stays(self) -> StayRepository:
        return StayRepository(self.session, self.tenant_id)

    # -- patients --

    async def find_patient(self, identity: parse.Identity, *, follow: bool = True
                           ) -> Patient | None:
        patient = None
        if identity.matricule:
            patient = await self.patients.by_matricule(identity.matricule)
        if patient is None and identity.legacy_matricule:
            patient = await HL7Repository(self.session, self.tenant_id).patient_by_legacy(
                identity.legacy_matricule)
        hops = 0
        while follow and patient is not None and patient.merged_into and hops < 10:
            patient = await self.patients.get(patient.merged_into)
            hops += 1
        return patient

    async def ensure_patient(self) -> Patient:
        """The message's patient: found by matricule (its data updated), or registered."""
        data = self.event.patient
        assert data is not None
        patient = await self.find_patient(data.identity)
        self.created = patient is None
        if patient is None:
            values = dict(data.values)
            # A new record has no death date (as through the API): set after, by an update.
            death_date = values.pop("death_date", None)
            identity = data.identity
            if identity.matricule:
                values["matricule"] = identity.matricule
            else:
                values["no_matricule_reason"] = "other"
                if identity.legacy_matricule:
                    values["legacy_matricule"] = identity.legacy_matricule
            patient_in = validate(PatientIn, values, PATIENT_FIELDS)
            # Looked up by this matricule a moment ago (find_patient), and not found.
            patient = await patients.create_patient(
                self.session, self.tenant_id, patient_in,
                matricule_free=bool(identity.matricule))
            if death_date is not None:
                patch = validate(PatientPatch, {"death_date": death_date}, PATIENT_FIELDS)
                patient = await patients.update_patient(self.session, self.tenant_id,
                                                        patient, patch)
        else:
            patient = await self.update_patient(patient)
        self.touched.patient(patient.id)
        return patient

    async def update_patient(self, patient: Patient) -> Patient:
        data = self.event.patient
        assert data is not None
        values = dict(data.values)
        if data.identity.matricule and not patient.matricule:
            values["matricule"] = data.identity.matricule  # found by the old number
        patch = validate(PatientPatch, values, PATIENT_FIELDS)
        changes = {name: value for name, value in patch.model_dump(exclude_unset=True).items()
                   if getattr(patient, name) != value}
        if not changes:
            return patient
        return await patients.update_patient(self.session, self.tenant_id, patient,
                                             PatientPatch.model_validate(changes))

    async def add_coverages(self, patient: Patient, default_from: datetime) -> None:
        if not self.event.coverages:
            return
        # A patient registered by this very message has none yet.
        existing = [] if self.created else await self.patients.coverages(patient.id)
        for coverage in self.event.coverages:
            values = {"valid_from": default_from.astimezone(LUXEMBOURG).date(),
                      **coverage.values}
            data = validate(CoverageIn, values, COVERAGE_FIELDS, coverage.occurrence)
            if any(c.kind == data.kind and c.payer.upper() == data.payer.upper()
                   and (c.valid_to is None or data.valid_from <= c.valid_to)
                   and (data.valid_to is None or c.valid_from <= data.valid_to)
                   for c in existing):
                continue  # covered already: a message repeats what the patient has
            added = await patients.add_coverage(self.session, self.tenant_id, patient, data,
                                                registered=existing if self.created else None)
            existing.append(added)

    # -- stays --

    def visit(self) -> parse.VisitData:
        visit = self.event.visit
        if visit is None or not visit.visit_number:
            raise Refused("PV1-19: the visit number is missing: it is how the stay is found",
                          Location("PV1", 19), parse.REQUIRED_MISSING)
        return visit

    async def stay(self) -> Stay:
        """The stay of the message's visit number, its patient checked against PID-3; its
        row locked (every message that calls this changes the stay), so that `move` need not
        read it again."""
        visit = self.visit()
        found = await HL7Repository(self.session, self.tenant_id).stay_by_visit(
            visit.visit_number, lock=True)
        if found is None:
            raise _no_stay(visit)
        stay, matricule, legacy = found
        self.check_patient(stay, matricule, legacy)
        self.touched.stay(stay.id)
        return stay

    async def stay_for_acts(self) -> list[Row]:
        """`stay()` read as `record_act` reads it first (`lock_for_acts`: the stay locked, with
        what pricing needs of its patient), once for all of a message's charges: one round
        trip instead of two."""
        visit = self.visit()
        rows = await self.stays.lock_for_act_by_visit(visit.visit_number)
        if not rows:
            raise _no_stay(visit)
        stay = rows[0]
        self.check_patient(stay, stay.matricule, stay.legacy_matricule)
        self.touched.stay(stay.id)
        return rows

    def check_patient(self, stay: Stay | Row, matricule: str | None, legacy: str | None) -> None:
        """PID-3, when it names someone, names the patient of the stay."""
        data = self.event.patient
        if data is None:
            return
        identity = data.identity
        if ((identity.matricule and matricule and matricule != identity.matricule)
                or (identity.legacy_matricule and legacy
                    and legacy != identity.legacy_matricule)):
            raise Refused(f"PID-3: the patient is not the one of visit "
                          f"{stay.external_id}", Location("PID", 3), parse.UNKNOWN_KEY)

    async def move(self, stay: Stay, values: dict[str, Any], *, locked: bool = False
                   ) -> Stay:
        """`locked`: `stay` is as this transaction last wrote or read it, its row locked
        (`stay()`), and is not read again."""
        data = validate(MovementIn, values, STAY_FIELDS)
        moved, _ = await stays.add_movement(self.session, self.tenant_id, stay.id, data,
                                            locked=stay if locked else None)
        return moved

    async def latest(self, stay: Stay, kind: str) -> uuid.UUID:
        """The latest effective movement of a kind (what a cancellation undoes)."""
        events = stays.effective_events(await self.stays.movements(stay.id))
        found = [e for e in events if e.type == kind]
        if not found:
            raise Refused(f"visit {stay.external_id} has no {kind} to cancel",
                          Location("PV1", 19), parse.UNKNOWN_KEY)
        return found[-1].id  # type: ignore[return-value]


def _no_stay(visit: parse.VisitData) -> Refused:
    return Refused(f"PV1-19: no stay with visit number {visit.visit_number} (was its "
                   "admission received?)", Location("PV1", 19), parse.UNKNOWN_KEY)


async def _admit(run: Apply) -> None:
    """A01 admit, A04 register (outpatient, emergency), A05 pre-admit."""
    event, trigger = run.event, run.event.trigger
    visit = run.visit()
    planned = trigger == "A05"
    admitted_at = visit.admitted_at or (visit.expected_admit_at if planned else None) or \
        event.occurred_at
    existing = await run.stays.by_external_id(visit.visit_number)
    if existing is not None and not (existing.state == "planned" and not planned):
        raise Refused(f"PV1-19: visit {visit.visit_number} exists already "
                      f"({existing.state})", Location("PV1", 19), parse.DUPLICATE_KEY)
    patient = await run.ensure_patient()
    await run.add_coverages(patient, admitted_at)
    if existing is not None:  # a pre-admission (A05) now admitted
        if existing.patient_id != patient.id:
            raise Refused(f"PID-3: the patient is not the one of visit "
                          f"{visit.visit_number}", Location("PID", 3), parse.UNKNOWN_KEY)
        run.touched.stay(existing.id)
        await run.move(existing, _place({"type": "admit", "at": admitted_at}, visit))
        return
    default_kind = "outpatient" if trigger == "A04" else "inpatient"
    values = _place({
        "patient_id": patient.id, "kind": visit.kind or default_kind,
        "admitted_at": admitted_at, "planned": planned,
        "attending_doctor": visit.attending_doctor, "admitting_doctor": visit.admitting_doctor,
        "external_id": visit.visit_number, "childbirth": visit.childbirth,
        "psychiatric": visit.psychiatric}, visit)
    values.setdefault("room_class", "second")
    # The visit number was looked up above, in this transaction, and not found.
    stay = await stays.create_stay(run.session, run.tenant_id,
                                   validate(StayIn, values, STAY_FIELDS), patient,
                                   external_id_free=True)
    run.touched.stay(stay.id)


def _place(values: dict[str, Any], visit: parse.VisitData) -> dict[str, Any]:
    for name in ("unit", "room", "bed"):
        if getattr(visit, name):
            values[name] = getattr(visit, name)
    if visit.room_class:
        values["room_class"] = visit.room_class
    return values


async def _transfer(run: Apply) -> None:
    stay = await run.stay()
    visit = run.visit()
    await run.move(stay, _place({"type": "transfer", "at": run.event.occurred_at}, visit),
                   locked=True)


async def _discharge(run: Apply) -> None:
    stay = await run.stay()
    at = run.visit().discharged_at or run.event.occurred_at
    await run.move(stay, {"type": "discharge", "at": at}, locked=True)


def _cancel(kind: str) -> Callable[[Apply], Awaitable[None]]:
    async def cancel(run: Apply) -> None:
        stay = await run.stay()
        if stay.state == "cancelled":
            raise Refused(f"visit {stay.external_id} was cancelled already",
                          Location("PV1", 19), parse.UNKNOWN_KEY)
        target = await run.latest(stay, kind)
        cancelled_acts = {a.id for a in await run.stays.acts(stay.id)
                          if a.state == "recorded"} if kind == "admit" else set()
        await run.move(stay, {"type": f"cancel_{kind}", "at": run.event.occurred_at,
                              "cancels": target}, locked=True)
        for act_id in sorted(cancelled_acts):
            run.touched.act(act_id)

    cancel.__name__ = f"_cancel_{kind}"
    return cancel


async def _change_kind(run: Apply) -> None:
    """A06 outpatient to inpatient, A07 inpatient to outpatient: the stay's kind changes and
    its acts not yet invoiced are priced again under it (as the API's act correction does)."""
    stay = await run.stay()
    visit = run.visit()
    trigger = run.event.trigger
    wanted = ("inpatient",) if trigger == "A06" else ("outpatient", "emergency")
    kind = visit.kind or wanted[0]
    if kind not in wanted:
        raise Refused(f"PV1-2: {trigger} changes the stay to "
                      f"{' or '.join(wanted)}, not {kind}", Location("PV1", 2),
                      parse.TABLE_VALUE)
    # The API's PATCH: acts not yet invoiced priced again under the new kind, refused once
    # any part of the stay is invoiced. `stay()` locked it.
    stay, repriced = await stays.change_stay(run.session, run.tenant_id, stay,
                                             StayPatch(kind=kind))
    for act_id in repriced:
        run.touched.act(act_id)
    if visit.located and stay.state == "admitted" and (
            (visit.unit, visit.room, visit.bed) != (stay.unit, stay.room, stay.bed)):
        # Locked by `stay()`, and read again above after any change of its own.
        await run.move(stay, _place({"type": "transfer", "at": run.event.occurred_at}, visit),
                       locked=True)


async def _update(run: Apply) -> None:
    """A08: the patient's data and coverages, and the doctors of the visit when known."""
    data = run.event.patient
    assert data is not None
    visit = run.event.visit
    identity = data.identity
    named = identity.matricule or identity.legacy_matricule
    stay = None
    if visit is not None and visit.visit_number:
        found = await HL7Repository(run.session, run.tenant_id).stay_by_visit(
            visit.visit_number)
        if found is None:
            raise Refused(f"PV1-19: no visit {visit.visit_number}", Location("PV1", 19),
                          parse.UNKNOWN_KEY)
        stay = found[0]
        run.check_patient(*found)
    # An update, as the API's PATCH: of a patient already known, never a registration
    # (A01, A04, A05 register). The visit's patient, when the message names a visit: a
    # matricule sent for a patient registered without one is added to that record.
    if stay is not None:
        patient = await run.patients.get(stay.patient_id)
        assert patient is not None
        other = await run.find_patient(identity) if named else None
        if other is not None and other.id != patient.id:
            raise Refused(f"PID-3: this matricule is another patient record than the one "
                          f"of visit {stay.external_id}: merge them first (A40)",
                          Location("PID", 3), parse.DUPLICATE_KEY)
    elif named:
        found_patient = await run.find_patient(identity)
        if found_patient is None:
            raise Refused("PID-3: no patient with this matricule: an A08 updates a known "
                          "patient (A01, A04 or A05 register one)", Location("PID", 3),
                          parse.UNKNOWN_KEY)
        patient = found_patient
    else:
        raise Refused("PID-3: no matricule (and no known visit) to find the patient by",
                      Location("PID", 3), parse.REQUIRED_MISSING)
    patient = await run.update_patient(patient)
    run.touched.patient(patient.id)
    await run.add_coverages(patient, stay.admitted_at if stay else run.event.occurred_at)
    if stay is None or visit is None or stay.state in ("cancelled", "closed"):
        return
    changes: dict[str, Any] = {}
    for name, hl7_field in (("attending_doctor", "PV1-7"), ("admitting_doctor", "PV1-17")):
        value = getattr(visit, name)
        if value and value != getattr(stay, name):
            if not _PROVIDER.match(value):
                raise Refused(f"{hl7_field}: not an 8-digit provider code",
                              _location(hl7_field, 1), parse.DATA_TYPE)
            changes[name] = value
    if changes:  # the API's PATCH
        await stays.change_stay(run.session, run.tenant_id, stay, StayPatch(**changes))
        run.touched.stay(stay.id)


async def _merge(run: Apply) -> None:
    """A40: the duplicate named by MRG-1 (matricule) or MRG-5 (its visit) merged into the
    patient of PID-3."""
    data, merge = run.event.patient, run.event.merge
    assert data is not None and merge is not None
    if not (data.identity.matricule or data.identity.legacy_matricule):
        raise Refused("PID-3: the surviving patient's matricule is missing",
                      Location("PID", 3), parse.REQUIRED_MISSING)
    survivor = await run.find_patient(data.identity)
    if survivor is None:
        raise Refused("PID-3: no patient with this matricule", Location("PID", 3),
                      parse.UNKNOWN_KEY)
    duplicate = await run.find_patient(merge.identity, follow=False) \
        if (merge.identity.matricule or merge.identity.legacy_matricule) else None
    by_number = duplicate is not None
    if duplicate is None and merge.visit_number:
        stay = await run.stays.by_external_id(merge.visit_number)
        if stay is not None:
            duplicate = await run.patients.get(stay.patient_id)
    if duplicate is None:
        raise Refused("MRG-1/MRG-5: the patient to merge is unknown", Location("MRG", 1),
                      parse.UNKNOWN_KEY)
    if duplicate.id == survivor.id and by_number:
        # MRG-1 names the survivor's own record: as the API says, a patient is not merged
        # into itself. (A visit of MRG-5 already on the survivor is a merge done before:
        # nothing to do.)
        raise Refused("MRG-1: the patient to merge is the surviving patient itself",
                      Location("MRG", 1), parse.DATA_TYPE)
    run.touched.patient(survivor.id)
    if duplicate.id == survivor.id or duplicate.merged_into == survivor.id:
        return  # merged already: nothing more to do
    run.touched.patient(duplicate.id)
    await merge_patients(run.session, run.tenant_id, survivor.id, duplicate.id)


async def _charges(run: Apply) -> None:
    """DFT^P03: each FT1 recorded as an act of the visit's stay, checked and priced."""
    locked = await run.stay_for_acts()
    stay_id = locked[0].id
    for charge in run.event.charges:
        data = validate(ActIn, charge.values, ACT_FIELDS, charge.occurrence)
        try:
            act = await act_service.record_act(run.session, run.tenant_id, stay_id, data,
                                               locked=locked)
        except LuxfactError as exc:
            if charge.occurrence > 1 or len(run.event.charges) > 1:
                exc.detail = f"FT1 #{charge.occurrence}: {exc.detail}"
            exc.hl7_location = Location("FT1", 7, None, charge.occurrence)  # type: ignore[attr-defined]
            raise
        run.touched.act(act.id)


HANDLERS: dict[str, Callable[[Apply], Awaitable[None]]] = {
    "A01": _admit, "A04": _admit, "A05": _admit,
    "A02": _transfer, "A03": _discharge,
    "A06": _change_kind, "A07": _change_kind,
    "A08": _update,
    "A11": _cancel("admit"), "A12": _cancel("transfer"), "A13": _cancel("discharge"),
    "A40": _merge, "P03": _charges,
}


def actor_for(facility: str) -> str:
    return f"hl7:{facility or '?'}"[:60]


def set_actor(facility: str) -> None:
    context.current().actor = actor_for(facility)

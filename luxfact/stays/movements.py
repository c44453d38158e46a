"""The movement rules of a stay, pure: what each event does and how it is undone.

A stay's state and location are a function of its effective movements (those not cancelled):
`replay` computes them, so a cancellation reverses exactly what its event did by taking the
event out and replaying the rest.
"""

from dataclasses import dataclass, replace
from datetime import datetime

from luxfact.kit.errors import Conflict, ValidationFailed

CANCELS = {"cancel_admit": "admit", "cancel_transfer": "transfer",
           "cancel_discharge": "discharge"}
TYPES = ("admit", "transfer", "discharge", *CANCELS)


@dataclass(frozen=True)
class Event:
    id: object
    type: str
    at: datetime
    unit: str = ""
    room: str = ""
    bed: str = ""
    room_class: str = ""


@dataclass(frozen=True)
class Position:
    state: str  # planned, admitted, discharged, cancelled
    admitted_at: datetime | None = None
    discharged_at: datetime | None = None
    unit: str = ""
    room: str = ""
    bed: str = ""
    room_class: str = "second"


def replay(start: Position, events: list[Event]) -> Position:
    """The position after the effective events, in order."""
    position = start
    for event in events:
        position = _apply(position, event)
    return position


def _apply(position: Position, event: Event) -> Position:
    # A place is unit > room > bed: moving to another unit leaves the old room and bed
    # behind (they are the old unit's), and another room the old bed, unless given anew.
    # The room class is the patient's choice and stays until changed.
    moved: dict[str, str] = {}
    if event.unit:
        moved = {"unit": event.unit, "room": event.room, "bed": event.bed}
    elif event.room:
        moved = {"room": event.room, "bed": event.bed}
    elif event.bed:
        moved = {"bed": event.bed}
    if event.room_class:
        moved["room_class"] = event.room_class
    if event.type == "admit":
        return replace(position, state="admitted", admitted_at=event.at, **moved)
    if event.type == "transfer":
        return replace(position, **moved)
    if event.type == "discharge":
        return replace(position, state="discharged", discharged_at=event.at)
    raise ValueError(event.type)


def check_new(position: Position, last: Event | None, event: Event) -> None:
    """Refuse an event that makes no sense after the stay's effective history."""
    if position.state == "cancelled":
        raise Conflict("The stay was cancelled: nothing more can happen on it.")
    if last is not None and event.at < last.at:
        raise ValidationFailed(
            f"A {event.type} cannot happen before the stay's last movement ({last.type} at "
            f"{last.at.isoformat()}).", errors=[{"field": "at", "reason": "before the last "
                                                 "movement"}])
    if event.type == "admit" and position.state != "planned":
        raise Conflict(f"The stay is {position.state}: only a planned stay can be admitted.")
    if event.type == "transfer":
        if position.state != "admitted":
            raise Conflict(f"The stay is {position.state}: only an admitted patient can be "
                           "transferred.")
        if not any((event.unit, event.room, event.bed, event.room_class)):
            raise ValidationFailed(errors=[{"field": "unit",
                                            "reason": "a transfer moves somewhere: give unit, "
                                            "room, bed or room_class"}])
    if event.type == "discharge":
        if position.state != "admitted":
            raise Conflict(f"The stay is {position.state}: only an admitted patient can be "
                           "discharged.")
        if position.admitted_at and event.at < position.admitted_at:
            raise ValidationFailed("The discharge is before the admission.",
                                   errors=[{"field": "at", "reason": "before the admission"}])


def check_cancel(kind: str, target: Event | None, last: Event | None) -> None:
    """A cancellation undoes the stay's latest effective movement, of the matching type."""
    wanted = CANCELS[kind]
    if target is None:
        raise ValidationFailed(errors=[{"field": "cancels",
                                        "reason": "no effective movement with this id"}])
    if target.type != wanted:
        raise ValidationFailed(errors=[{"field": "cancels",
                                        "reason": f"{kind} cancels an {wanted}, not a "
                                        f"{target.type}"}])
    if last is None or last.id != target.id:
        raise Conflict(f"Only the latest movement can be cancelled; this {wanted} was "
                       "followed by others: cancel those first.")

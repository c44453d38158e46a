"""HL7 v2 test messages, built segment by segment."""

import uuid

from tests.identities import new_matricule as new_matricule  # re-exported for the HL7 tests

CR = "\r"


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:12].upper()


def msh(message_type: str, control_id: str, *, facility: str = "NORDHIS",
        version: str = "2.5", at: str = "20260302080000", charset: str = "",
        structure: str = "") -> str:
    kind, _, event = message_type.partition("^")
    structure = structure or ("ADT_A01" if kind == "ADT" else "DFT_P03")
    fields = ["MSH", "^~\\&", "HIS", facility, "LUXFACT", "LUX", at, "",
              f"{kind}^{event}^{structure}", control_id, "P", version]
    if charset:
        fields += [""] * 5 + [charset]
    return "|".join(fields)


def pid(matricule: str | None = None, *, family: str = "Muller", given: str = "Anne",
        birth: str = "19800101", sex: str = "F", address: str = "",
        identifiers: str | None = None) -> str:
    ids = identifiers if identifiers is not None else (
        f"{matricule}^^^CNS^NN~HIS{uuid.uuid4().hex[:6]}^^^HIS^MR" if matricule else
        f"HIS{uuid.uuid4().hex[:6]}^^^HIS^MR")
    return f"PID|1||{ids}||{family}^{given}||{birth}|{sex}|||{address}"


def segment(name: str, values: dict[int, str]) -> str:
    """A segment from its fields by HL7 position."""
    fields = [name] + [""] * max(values)
    for position, value in values.items():
        fields[position] = value
    return "|".join(fields)


def pv1(visit: str, *, patient_class: str = "I", location: str = "MED^204^A",
        attending: str = "", admitting: str = "", admit: str = "", discharge: str = "",
        service: str = "") -> str:
    return segment("PV1", {1: "1", 2: patient_class, 3: location, 7: attending,
                           10: service, 17: admitting, 19: visit, 44: admit, 45: discharge})


def evn(event: str, at: str) -> str:
    return f"EVN|{event}|{at}|||||{at}"


def in1(payer: str = "CNS", *, plan_type: str = "", valid_from: str = "20200101",
        valid_to: str = "", policy: str = "") -> str:
    return segment("IN1", {1: "1", 3: payer, 4: payer, 12: valid_from, 13: valid_to,
                           15: plan_type, 36: policy})


def ft1(code: str, at: str, *, quantity: str = "1", performer: str = "",
        seq: int = 1, transaction: str = "CG", department: str = "") -> str:
    return segment("FT1", {1: str(seq), 4: at, 6: transaction, 7: f"{code}^^LUXNOM",
                           10: quantity, 13: department, 20: performer})


def mrg(matricule: str = "", visit: str = "") -> str:
    ids = f"{matricule}^^^CNS^NN" if matricule else ""
    return f"MRG|{ids}||||{visit}"


def message(*segments: str, separator: str = CR) -> bytes:
    return (separator.join(segments) + separator).encode("utf-8")


def admit(control: str, matricule: str | None, visit: str, *, event: str = "A01",
          patient_class: str = "I", at: str = "20260302080000", coverage: bool = True,
          **pv1_fields: str) -> bytes:
    segments = [msh(f"ADT^{event}", control), evn(event, at),
                pid(matricule), pv1(visit, patient_class=patient_class, admit=at,
                                    **pv1_fields)]
    if coverage:
        segments.append(in1())
    return message(*segments)


def adt(event: str, control: str, matricule: str | None, visit: str, at: str,
        **pv1_fields: str) -> bytes:
    return message(msh(f"ADT^{event}", control), evn(event, at), pid(matricule),
                   pv1(visit, **pv1_fields))


def dft(control: str, matricule: str | None, visit: str, *charges: tuple[str, str]) -> bytes:
    lines = [ft1(code, at, seq=n) for n, (code, at) in enumerate(charges, 1)]
    return message(msh("DFT^P03", control), evn("P03", "20260302120000"), pid(matricule),
                   pv1(visit), *lines)

"""Each HL7 event applied through the domain services, the result read through the REST API."""

import httpx
import pytest

from luxfact.auth.roles import Role
from tests.conftest import Hospital, Hospitals
from tests.hl7 import messages as m
from tests.hl7.helpers import (
    accepted,
    acts,
    code,
    messages,
    patient,
    refused,
    send,
    stay,
    stays_of,
)

pytestmark = pytest.mark.usefixtures("catalogue")

ADMITTED = "20260302080000"


async def test_a01_registers_the_patient_and_admits(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    matricule = m.new_matricule("19800101")
    raw = m.message(
        m.msh("ADT^A01", "A01-1"), m.evn("A01", ADMITTED),
        m.pid(matricule, family="M\\XC3BC\\ller", given="Anne", birth="19800101", sex="F",
              address="12 rue \\T\\ place^^Ettelbruck^^L-9080^LUX"),
        m.pv1("V-100", location="MED2^204^A", attending="12345678^Dr^House",
              admitting="23456789^Dr^Grey", admit=ADMITTED),
        m.in1("CNS", policy="M-1"))
    ack = await accepted(client, a, raw)
    assert ack.split("\r")[1] == "MSA|AA|A01-1"
    found = await patient(client, a, matricule)
    assert (found["family_name"], found["given_name"], found["birth_date"], found["sex"]) == \
        ("Müller", "Anne", "1980-01-01", "F")
    assert (found["street"], found["city"], found["postal_code"], found["country"]) == \
        ("12 rue & place", "Ettelbruck", "L-9080", "LU")
    admitted = await stay(client, a, matricule, "V-100")
    assert admitted["state"] == "admitted" and admitted["kind"] == "inpatient"
    assert (admitted["unit"], admitted["room"], admitted["bed"]) == ("MED2", "204", "A")
    assert admitted["admitted_at"] == "2026-03-02T07:00:00Z"  # 08:00 in Luxembourg
    assert admitted["attending_doctor"] == "12345678"
    assert admitted["admitting_doctor"] == "23456789"
    assert [mv["type"] for mv in admitted["movements"]] == ["admit"]
    assert admitted["coverage_gaps"] == []
    coverages = (await client.get(f"/api/v1/patients/{found['id']}/coverages",
                                  headers=a.auth(Role.clerk))).json()["items"]
    assert [(c["kind"], c["payer"], c["member_number"]) for c in coverages] == \
        [("statutory", "CNS", "M-1")]
    # The same audit trail as the API: the integration key created and admitted.
    events = (await client.get(f"/api/v1/audit-events?object_id={admitted['id']}",
                               headers=a.auth(Role.admin))).json()["items"]
    assert {e["action"] for e in events} >= {"stay.admit"}
    assert all(e["actor"].startswith("key:") for e in events)
    logged = await messages(client, a)
    assert logged[0]["patient_ids"] == [found["id"]]
    assert logged[0]["stay_ids"] == [admitted["id"]]

    # A second admission of the same patient finds them by matricule: no new record.
    await accepted(client, a, m.admit("A01-2", matricule, "V-101", at="20260310080000"))
    assert len(await stays_of(client, a, found["id"])) == 2


async def test_a02_a03_and_their_cancellations(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    await accepted(client, a, m.adt("A02", "C2", matricule, "V1", "20260303090000",
                                    location="CHIR^12^B"))
    moved = await stay(client, a, matricule, "V1")
    assert (moved["unit"], moved["room"], moved["bed"]) == ("CHIR", "12", "B")
    assert moved["movements"][-1]["at"] == "2026-03-03T08:00:00Z"
    await accepted(client, a, m.adt("A03", "C3", matricule, "V1", "20260305110000",
                                    discharge="20260305110000"))
    discharged = await stay(client, a, matricule, "V1")
    assert discharged["state"] == "discharged"
    assert discharged["discharged_at"] == "2026-03-05T10:00:00Z"
    # A13 cancels the discharge, A12 the transfer, A11 the admission: each reverses
    # exactly its event.
    await accepted(client, a, m.adt("A13", "C4", matricule, "V1", "20260305120000"))
    back = await stay(client, a, matricule, "V1")
    assert back["state"] == "admitted" and back["discharged_at"] is None
    await accepted(client, a, m.adt("A12", "C5", matricule, "V1", "20260305121000"))
    back = await stay(client, a, matricule, "V1")
    assert (back["unit"], back["room"], back["bed"]) == ("MED", "204", "A")
    await accepted(client, a, m.adt("A11", "C6", matricule, "V1", "20260305122000"))
    cancelled = await stay(client, a, matricule, "V1")
    assert cancelled["state"] == "cancelled"
    assert [mv["type"] for mv in cancelled["movements"]] == [
        "admit", "transfer", "discharge", "cancel_discharge", "cancel_transfer",
        "cancel_admit"]


async def test_a11_cancels_the_charges_of_the_admission(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    await accepted(client, a, m.dft("C2", matricule, "V1", ("N101", "20260302100000")))
    await accepted(client, a, m.adt("A11", "C3", matricule, "V1", "20260302120000"))
    cancelled = await stay(client, a, matricule, "V1")
    assert [x["state"] for x in await acts(client, a, cancelled["id"])] == ["cancelled"]
    assert (await messages(client, a))[0]["act_ids"] != []


@pytest.mark.parametrize(("event", "patient_class", "kind"), [
    ("A04", "O", "outpatient"), ("A04", "E", "emergency"), ("A01", "E", "emergency"),
    ("A01", "B", "inpatient"),
])
async def test_a04_and_patient_classes(
    client: httpx.AsyncClient, hospitals: Hospitals, event: str, patient_class: str,
    kind: str
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1", event=event,
                                      patient_class=patient_class))
    registered = await stay(client, a, matricule, "V1")
    assert registered["kind"] == kind and registered["state"] == "admitted"
    assert registered["childbirth"] is (patient_class == "B")


async def test_a05_pre_admits_then_a01_admits(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    raw = m.message(m.msh("ADT^A05", "C1"), m.evn("A05", "20260301100000"), m.pid(matricule),
                    m.pv1("V1", patient_class="P", admit="20260302080000"), m.in1())
    await accepted(client, a, raw)
    planned = await stay(client, a, matricule, "V1")
    assert planned["state"] == "planned" and planned["movements"] == []
    # A second pre-admission of the same visit is refused.
    again = await refused(client, a, m.message(
        m.msh("ADT^A05", "C1b"), m.pid(matricule), m.pv1("V1", patient_class="P")))
    assert "exists already" in again
    await accepted(client, a, m.admit("C2", matricule, "V1", at="20260302090000",
                                      location="MED^1^1"))
    admitted = await stay(client, a, matricule, "V1")
    assert admitted["state"] == "admitted" and admitted["id"] == planned["id"]
    assert admitted["admitted_at"] == "2026-03-02T08:00:00Z" and admitted["room"] == "1"
    # The visit is admitted: another A01 for it is a duplicate visit.
    assert "exists already" in await refused(client, a, m.admit("C3", matricule, "V1"))
    # A11 cancels the admission, not the pre-admission: the visit is planned again.
    await accepted(client, a, m.adt("A11", "C4", matricule, "V1", "20260302100000"))
    assert (await stay(client, a, matricule, "V1"))["state"] == "planned"


async def test_a06_a07_change_the_kind_and_price_the_acts_again(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1", event="A04", patient_class="O"))
    await accepted(client, a, m.dft("C2", matricule, "V1", ("C1", "20260302100000")))
    before = await stay(client, a, matricule, "V1")
    [outpatient_act] = await acts(client, a, before["id"])
    await accepted(client, a, m.adt("A06", "C3", matricule, "V1", "20260302120000",
                                    patient_class="I", location="MED^7^A"))
    after = await stay(client, a, matricule, "V1")
    assert after["kind"] == "inpatient" and after["room"] == "7"
    [inpatient_act] = await acts(client, a, after["id"])
    assert inpatient_act["version"] == outpatient_act["version"] + 1
    assert (inpatient_act["insurer"], inpatient_act["patient"]) != \
        (outpatient_act["insurer"], outpatient_act["patient"])
    # A06 to an outpatient class makes no sense: refused, nothing changed.
    assert "PV1-2" in await refused(client, a, m.adt("A06", "C4", matricule, "V1",
                                                      "20260302130000", patient_class="O"))
    await accepted(client, a, m.adt("A07", "C5", matricule, "V1", "20260302140000",
                                    patient_class="O"))
    back = await stay(client, a, matricule, "V1")
    assert back["kind"] == "outpatient"
    [again] = await acts(client, a, back["id"])
    assert (again["insurer"], again["patient"]) == \
        (outpatient_act["insurer"], outpatient_act["patient"])


async def test_a08_updates_the_patient_and_the_doctors(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    before = await patient(client, a, matricule)
    raw = m.message(m.msh("ADT^A08", "C2"), m.evn("A08", "20260302100000"),
                    m.pid(matricule, family="Muller-Weber", given="Anne Marie",
                          address="3 rue Neuve^^Diekirch^^L-9200^LU"),
                    m.pv1("V1", attending="34567890"))
    await accepted(client, a, raw)
    after = await patient(client, a, matricule)
    assert after["id"] == before["id"] and after["version"] == before["version"] + 1
    assert (after["family_name"], after["given_name"], after["city"]) == \
        ("Muller-Weber", "Anne Marie", "Diekirch")
    assert (await stay(client, a, matricule, "V1"))["attending_doctor"] == "34567890"
    # The same A08 again changes nothing.
    await accepted(client, a, raw.replace(b"|C2|", b"|C3|"))
    assert (await patient(client, a, matricule))["version"] == after["version"]
    # A doctor that is no provider code is refused with its field.
    bad = m.message(m.msh("ADT^A08", "C4"), m.pid(matricule), m.pv1("V1", attending="DRX"))
    assert "PV1-7: not an 8-digit provider code" in await refused(client, a, bad)


async def test_a08_updates_a_known_patient_and_never_registers_one(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule("19800101")
    # Admitted before the matricule was known: A08 brings it, on the visit's own record.
    await accepted(client, a, m.admit("C1", None, "V1"))
    [anonymous_id] = (await messages(client, a))[0]["patient_ids"]
    await accepted(client, a, m.message(m.msh("ADT^A08", "C2"), m.evn("A08", "20260302100000"),
                                        m.pid(matricule), m.pv1("V1")))
    known = await patient(client, a, matricule)
    assert known["id"] == anonymous_id and known["no_matricule_reason"] is None
    # Nothing registered by an A08: an unknown matricule, an unknown visit are refused.
    stranger = m.new_matricule("19700101")
    why = await refused(client, a, m.message(m.msh("ADT^A08", "C3"), m.pid(stranger)))
    assert "no patient with this matricule" in why
    assert (await client.get("/api/v1/patients", params={"matricule": stranger},
                             headers=a.auth(Role.clerk))).json()["items"] == []
    why = await refused(client, a, m.message(m.msh("ADT^A08", "C4"), m.pid(matricule),
                                             m.pv1("NOSUCHVISIT")))
    assert "PV1-19: no visit NOSUCHVISIT" in why
    # A visit of a record without matricule, and the matricule of another record: two
    # records of one person, which a merge (A40) joins; an A08 does not pick one.
    await accepted(client, a, m.admit("C5", None, "V2"))
    why = await refused(client, a, m.message(m.msh("ADT^A08", "C6"), m.pid(matricule),
                                             m.pv1("V2")))
    assert "another patient record" in why and "A40" in why
    assert (await stay(client, a, matricule, "V1"))["patient_id"] == known["id"]


async def test_a40_merges_the_duplicate(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    # Registered first without a matricule (visit V1), then with it (visit V2).
    await accepted(client, a, m.admit("C1", None, "V1"))
    await accepted(client, a, m.admit("C2", matricule, "V2", at="20260303080000"))
    survivor = await patient(client, a, matricule)
    [first] = [x for x in await messages(client, a) if x["control_id"] == "C1"]
    duplicate_id = first["patient_ids"][0]
    assert duplicate_id != survivor["id"]
    raw = m.message(m.msh("ADT^A40", "C3", structure="ADT_A39"), m.evn("A40", "20260304"),
                    m.pid(matricule), m.mrg(visit="V1"))
    await accepted(client, a, raw)
    duplicate = (await client.get(f"/api/v1/patients/{duplicate_id}",
                                  headers=a.auth(Role.clerk))).json()
    assert duplicate["merged_into"] == survivor["id"]
    assert {s["external_id"] for s in await stays_of(client, a, survivor["id"])} == \
        {"V1", "V2"}
    # Delivered again under a new control id: merged already, nothing to do.
    await accepted(client, a, raw.replace(b"|C3|", b"|C4|"))
    unknown = m.message(m.msh("ADT^A40", "C5"), m.pid(matricule), m.mrg(visit="NOPE"))
    assert "MRG" in await refused(client, a, unknown)
    # MRG-1 naming the survivor itself: refused, as the API refuses it.
    itself = m.message(m.msh("ADT^A40", "C6"), m.pid(matricule), m.mrg(matricule))
    assert "MRG-1: the patient to merge is the surviving patient itself" in \
        await refused(client, a, itself)


async def test_dft_records_priced_acts(client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    raw = m.message(m.msh("DFT^P03", "C2"), m.evn("P03", "20260302120000"), m.pid(matricule),
                    m.pv1("V1"), m.ft1("N101", "20260302100000", quantity="2"),
                    m.ft1("C1", "20260302110000", performer="12345678^House^G", seq=2))
    await accepted(client, a, raw)
    admitted = await stay(client, a, matricule, "V1")
    recorded = await acts(client, a, admitted["id"])
    assert [(x["code"], x["quantity"], x["performer"]) for x in recorded] == \
        [("N101", 2, None), ("C1", 1, "12345678")]
    assert recorded[0]["performed_at"] == "2026-03-02T09:00:00Z"
    # Priced as any act: the same price as the API gives the same act.
    via_api = await client.post(f"/api/v1/stays/{admitted['id']}/acts", json={
        "code": "N101", "quantity": 2, "performed_at": "2026-03-02T10:30:00+01:00"},
        headers=a.auth(Role.clerk))
    assert via_api.status_code == 201
    assert recorded[0]["gross"] == via_api.json()["gross"] and recorded[0]["gross"] != "0.00"
    assert recorded[0]["tariff_version"] == via_api.json()["tariff_version"]
    logged = (await messages(client, a))[0]
    assert logged["act_ids"] == [x["id"] for x in recorded]


async def test_a_charge_restricted_to_specialties_names_its_department(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """F20 may be billed by some specialties only: FT1-13 says the performer's, and the
    charge is priced as the same act through the API."""
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("SP1", matricule, "V1"))

    def charge(control: str, department: str) -> bytes:
        return m.message(m.msh("DFT^P03", control), m.evn("P03", "20260302120000"),
                         m.pid(matricule), m.pv1("V1"),
                         m.ft1("F20", "20260302100000", performer="12345678",
                               department=department))

    for n, department in enumerate(("", "300^Cardiologie", "CARD-1")):
        why = await refused(client, a, charge(f"SP2-{n}", department))
        assert "not by specialty unknown" in why, department
    # The sender's own department codes are left aside on a code without restriction.
    plain = m.message(m.msh("DFT^P03", "SP6"), m.evn("P03", "20260302120000"),
                      m.pid(matricule), m.pv1("V1"),
                      m.ft1("N101", "20260302100000", department="300^Cardiologie"))
    await accepted(client, a, plain)
    why = await refused(client, a, charge("SP3", "SURGERY^Chirurgie"))
    assert "not by specialty surgery" in why and "FT1-13" in why
    await accepted(client, a, charge("SP4", "INTERNAL_MEDICINE^Médecine interne"))
    admitted = await stay(client, a, matricule, "V1")
    [recorded] = [x for x in await acts(client, a, admitted["id"]) if x["code"] == "F20"]
    assert recorded["specialty"] == "internal_medicine"
    # The same act through the API, on the same patient's other stay (one F20 per stay).
    await accepted(client, a, m.admit("SP5", matricule, "V2", at="20260310080000"))
    other = await stay(client, a, matricule, "V2")
    through_api = await client.post(f"/api/v1/stays/{other['id']}/acts", json={
        "code": "F20", "performed_at": "2026-03-10T10:00:00+01:00", "performer": "12345678",
        "specialty": "internal_medicine"}, headers=a.auth(Role.clerk))
    assert through_api.status_code == 201, through_api.text
    assert (through_api.json()["gross"], through_api.json()["patient"]) == \
        (recorded["gross"], recorded["patient"])


async def test_a_patient_registered_with_a_death_date_keeps_it(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """PID-29 on the message that registers the patient (an emergency ending in death)."""
    a = hospitals.a

    def registration(control: str, matricule: str, death: str, visit: str) -> bytes:
        died = m.pid(matricule) + "|" * 18 + death  # PID-29
        return m.message(m.msh("ADT^A04", control), m.evn("A04", "20260302080000"), died,
                         m.pv1(visit, patient_class="E", admit="20260302080000"), m.in1())

    matricule = m.new_matricule()
    await accepted(client, a, registration("D1", matricule, "20260302", "V1"))
    assert (await patient(client, a, matricule))["death_date"] == "2026-03-02"
    other = m.new_matricule()
    why = await refused(client, a, registration("D2", other, "19700101", "V2"))
    assert "PID-29" in why and "before the birth date" in why
    assert (await client.get("/api/v1/patients", params={"matricule": other},
                             headers=a.auth(Role.clerk))).json()["items"] == []


async def test_the_phone_comes_from_pid_13(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a

    def registration(control: str, matricule: str, phone: str, visit: str) -> bytes:
        with_phone = m.pid(matricule, address="1 rue Haute^^Esch^^L-4001^LU") + "||" + phone
        return m.message(m.msh("ADT^A04", control), m.evn("A04", "20260302080000"),
                         with_phone, m.pv1(visit, patient_class="O"), m.in1())

    for n, (phone, stored) in enumerate((("+352 621 123 456", "+352 621 123 456"),
                                         ("^PRN^PH^^352^621^123456", "+352 621 123456"),
                                         ("^PRN^CP^^^^^^^^^621123456", "621123456"))):
        matricule = m.new_matricule()
        await accepted(client, a, registration(f"PH{n}", matricule, phone, f"V{n}"))
        assert (await patient(client, a, matricule))["phone"] == stored
    why = await refused(client, a, registration("PH9", m.new_matricule(), "call me", "V9"))
    assert why.startswith("PID-13")


async def test_a_charge_with_an_unknown_code_applies_nothing(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    raw = m.message(m.msh("DFT^P03", "C2"), m.pid(matricule), m.pv1("V1"),
                    m.ft1("N101", "20260302100000"), m.ft1("ZZ999", "20260302110000", seq=2))
    why = await refused(client, a, raw)
    assert "FT1 #2" in why and "ZZ999" in why
    admitted = await stay(client, a, matricule, "V1")
    assert await acts(client, a, admitted["id"]) == []  # not even the first, valid charge


async def test_invalid_matricule_is_refused_and_nothing_created(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    valid = m.new_matricule()
    wrong = valid[:-1] + str((int(valid[-1]) + 1) % 10)  # the Verhoeff digit made wrong
    raw = m.message(m.msh("ADT^A01", "C1"), m.pid(wrong, family="Zyxwvut"), m.pv1("V1"))
    ack = await send(client, a, raw)
    assert code(ack) == "AE" and "PID-3: not a valid matricule" in ack
    assert wrong not in ack
    found = (await client.get("/api/v1/patients?q=Zyxwvut",
                              headers=a.auth(Role.clerk))).json()["items"]
    assert found == []


async def test_missing_required_patient_data_names_the_field(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    raw = m.message(m.msh("ADT^A01", "C1"), m.pid(m.new_matricule(), family=""), m.pv1("V1"))
    assert "PID-5.1: missing" in await refused(client, hospitals.a, raw)


@pytest.mark.parametrize("event", ["A03", "A02", "A12", "A13", "A06"])
async def test_events_before_the_admission_are_refused(
    client: httpx.AsyncClient, hospitals: Hospitals, event: str
) -> None:
    matricule = m.new_matricule()
    why = await refused(client, hospitals.a, m.adt(event, "C1", matricule, "NEVER",
                                                    "20260302100000"))
    assert "PV1-19: no stay with visit number NEVER" in why


async def test_a11_for_an_admission_that_never_existed(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    why = await refused(client, a, m.adt("A11", "C1", matricule, "GHOST", "20260302100000"))
    assert "GHOST" in why
    # A pre-admitted visit was never admitted either: nothing to cancel.
    await accepted(client, a, m.message(m.msh("ADT^A05", "C2"), m.pid(matricule),
                                        m.pv1("V1", patient_class="P",
                                              admit="20260310080000")))
    assert "no admit to cancel" in await refused(
        client, a, m.adt("A11", "C3", matricule, "V1", "20260302100000"))


async def test_a03_before_a01_then_in_order(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    discharge = m.adt("A03", "C1", matricule, "V1", "20260305110000")
    assert "no stay" in await refused(client, a, discharge)
    await accepted(client, a, m.admit("C2", matricule, "V1"))
    # Delivered again with the same control id: the first answer, not applied.
    assert "no stay" in await refused(client, a, discharge)
    assert (await stay(client, a, matricule, "V1"))["state"] == "admitted"


async def _discharged_and_billed(client: httpx.AsyncClient, hospital: Hospital,
                                 matricule: str, bill: dict) -> list[dict]:
    """Visit V1 admitted on 2 March, a charge, discharged on the 5th, then billed: the
    invoices made."""
    await accepted(client, hospital, m.admit("C1", matricule, "V1"))
    await accepted(client, hospital, m.dft("C2", matricule, "V1",
                                           ("N101", "20260302100000")))
    await accepted(client, hospital, m.adt("A03", "C3", matricule, "V1", "20260305110000",
                                           discharge="20260305110000"))
    discharged = await stay(client, hospital, matricule, "V1")
    made = await client.post(f"/api/v1/stays/{discharged['id']}/invoices", json=bill,
                             headers=hospital.auth(Role.billing))
    assert made.status_code == 201, made.text
    return made.json()["invoices"]


async def test_a13_after_invoicing_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await _discharged_and_billed(client, a, matricule, {"kind": "final"})
    why = await refused(client, a, m.adt("A13", "C4", matricule, "V1", "20260306090000"))
    assert "closed" in why
    assert (await stay(client, a, matricule, "V1"))["state"] == "closed"


async def test_a13_after_an_interim_invoice_leaves_the_invoice_right(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """An interim invoice bills the acts recorded and the days before its end, which stay
    true when the discharge is undone: the A13 is taken, the invoice kept as it was, and a
    discharge is refused again on a day it billed (that would make it charge days out)."""
    a, matricule = hospitals.a, m.new_matricule()
    invoices = await _discharged_and_billed(client, a, matricule,
                                            {"kind": "interim", "until": "2026-03-05"})
    await accepted(client, a, m.adt("A13", "C4", matricule, "V1", "20260306090000"))
    assert (await stay(client, a, matricule, "V1"))["state"] == "admitted"
    for invoice in invoices:
        again = await client.get(f"/api/v1/invoices/{invoice['id']}",
                                 headers=a.auth(Role.billing))
        assert again.status_code == 200, again.text
        assert (again.json()["number"], again.json()["total"], again.json()["lines"]) == \
            (invoice["number"], invoice["total"], invoice["lines"])
    billed_to = max(line["last_day"] for invoice in invoices for line in invoice["lines"]
                    if line["code"] == "PARTICIPATION")
    assert billed_to == "2026-03-04"  # the day before the discharge undone
    why = await refused(client, a, m.adt("A03", "C5", matricule, "V1", "20260304120000",
                                         discharge="20260304120000"))
    assert "invoiced" in why and billed_to in why
    await accepted(client, a, m.adt("A03", "C6", matricule, "V1", "20260308110000",
                                    discharge="20260308110000"))


async def test_a_stay_billed_for_its_days_keeps_its_admission_and_kind(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """An interim invoice of participation days alone: A11 would cancel a billed admission,
    A07 make outpatient a stay whose inpatient days are billed. Both refused, nothing done."""
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    admitted = await stay(client, a, matricule, "V1")
    bill = await client.post(f"/api/v1/stays/{admitted['id']}/invoices",
                             json={"kind": "interim", "until": "2026-03-03"},
                             headers=a.auth(Role.billing))
    assert bill.status_code == 201, bill.text
    assert [line["code"] for line in bill.json()["invoices"][0]["lines"]] == ["PARTICIPATION"]
    for why in (await refused(client, a, m.adt("A07", "C2", matricule, "V1", "20260304090000",
                                               patient_class="O")),
                await refused(client, a, m.adt("A11", "C3", matricule, "V1",
                                               "20260304090000"))):
        assert "invoiced" in why and "credit" in why
    after = await stay(client, a, matricule, "V1")
    assert (after["state"], after["kind"], after["version"]) == \
        ("admitted", "inpatient", admitted["version"])


async def test_dft_for_a_cancelled_stay_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a, matricule = hospitals.a, m.new_matricule()
    await accepted(client, a, m.admit("C1", matricule, "V1"))
    await accepted(client, a, m.adt("A11", "C2", matricule, "V1", "20260302090000"))
    why = await refused(client, a, m.dft("C3", matricule, "V1", ("N101", "20260302100000")))
    assert "cancelled" in why


async def test_a_visit_of_another_patient_is_refused(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    a = hospitals.a
    first = m.new_matricule()
    second = next(x for x in iter(m.new_matricule, None) if x != first)
    await accepted(client, a, m.admit("C1", first, "V1"))
    await accepted(client, a, m.admit("C2", second, "V2"))
    why = await refused(client, a, m.dft("C3", second, "V1", ("N101", "20260302100000")))
    assert "PID-3: the patient is not the one of visit V1" in why


async def test_another_hospitals_visits_do_not_exist(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    matricule = m.new_matricule()
    await accepted(client, hospitals.a, m.admit("C1", matricule, "V1"))
    why = await refused(client, hospitals.b, m.adt("A03", "C2", matricule, "V1",
                                                   "20260305110000"))
    assert "no stay" in why
    # The same control id at the other hospital is its own message.
    await accepted(client, hospitals.b, m.admit("C1", matricule, "V1"))


async def test_a_refused_admission_leaves_no_patient_behind(
    client: httpx.AsyncClient, hospitals: Hospitals
) -> None:
    """The patient is registered before the stay; the stay is refused: neither remains."""
    a, matricule = hospitals.a, m.new_matricule()
    raw = m.message(m.msh("ADT^A01", "C1"), m.pid(matricule), m.pv1("V1", attending="DR-X"),
                    m.in1())
    assert "PV1-7: not an 8-digit provider code" in await refused(client, a, raw)
    found = (await client.get(f"/api/v1/patients?matricule={matricule}",
                              headers=a.auth(Role.clerk))).json()["items"]
    assert found == []
    logged = (await messages(client, a))[0]
    assert logged["status"] == "error" and logged["patient_ids"] == []

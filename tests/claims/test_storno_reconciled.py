"""A storno in a later return reopens a reconciled batch, until its line is resolved again."""

from decimal import Decimal

import httpx
import pytest
from lxml import etree

from luxfact.auth.roles import Role
from luxfact.claims import xml
from luxfact.claims.simulate import simulate_return
from tests.claims.test_returns import answer_with_rejections, post_return, sent_batch
from tests.conftest import Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")
C = {"c": xml.CLAIM_NS}
R = {"r": xml.RETURN_NS}


def cents(amount: str) -> int:
    """An API amount ("19.30") as integer cents, refusing anything finer than a cent."""
    value = Decimal(amount) * 100
    assert value == value.to_integral_value(), amount
    return int(value)


def answer_all_paid(claim: bytes) -> bytes:
    """A simulated return that pays every line in full (the seed is searched for)."""
    for seed in range(200):
        answer = simulate_return(claim, seed=seed)
        if not any(line.anomalies for line in xml.parse_return(answer).lines):
            return answer
    raise AssertionError("no seed pays every line")


def _leaf(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{xml.RETURN_NS}}}{name}")
    element.text = text
    return element


def _amounts(parent: etree._Element, count: int, gross: Decimal, net: Decimal) -> None:
    for name, text in (("nombre", str(count)), ("devise", "EUR"),
                       ("montantBrut", f"{gross:.2f}"), ("montantNet", f"{net:.2f}")):
        _leaf(parent, name, text)


def with_storno(answer: bytes, earlier_claim: bytes, earlier_answer: bytes, invoice: str,
                line: str) -> bytes:
    """`answer` (a later batch's return) with a `stornos` block taking back line `line` of
    invoice `invoice`, paid by `earlier_answer` to the claim file `earlier_claim`, as
    return-1.0.xsd writes it; the return's balance is lessened by what is taken back."""
    root = etree.fromstring(answer)
    claimed = xml.validate_document(earlier_claim, xml.CLAIM_XSD).getroot().xpath(
        "c:facture[c:referenceFacture=$n]", namespaces=C, n=invoice)[0]
    paid = xml.parse_return(earlier_answer)
    paid_invoice = next(i for i in paid.invoices if i.reference == invoice)
    paid_line = next(x for x in paid_invoice.lines if x.reference == line)

    stornos = etree.SubElement(root, f"{{{xml.RETURN_NS}}}stornos")
    _amounts(_leaf(stornos, "paiementStornos", ""), 1, paid_line.gross, paid_line.net)
    facture = _leaf(stornos, "facture", "")
    _leaf(facture, "referenceFichierFacturation", paid.file_reference)
    _leaf(facture, "referenceFacture", invoice)
    _leaf(facture, "identifiantFactureOrganisme", paid_invoice.insurer_id)
    _leaf(facture, "identifiantPersonneProtegee",
          claimed.findtext("c:identifiantPersonneProtegee", None, C))
    asked = claimed.find("c:demandeFacture", C)
    _leaf(facture, "montantBrutDemande", asked.findtext("c:montantBrut", None, C))
    _leaf(facture, "montantNetDemande", asked.findtext("c:montantNet", None, C))
    _leaf(facture, "deviseDemandee", "EUR")
    _leaf(facture, "montantBrutPaye", f"{paid_line.gross:.2f}")
    _leaf(facture, "montantNetPaye", f"{paid_line.net:.2f}")
    _leaf(facture, "devisePayee", "EUR")
    prestation = _leaf(facture, "prestation", "")
    _leaf(prestation, "referencePrestation", line)
    _leaf(prestation, "identifiantPrestationOrganisme", paid_line.insurer_id)
    _leaf(prestation, "codeActePaye", paid_line.paid_code)
    _amounts(_leaf(prestation, "paiementPrestation", ""), paid_line.count, paid_line.gross,
             paid_line.net)
    anomaly = _leaf(prestation, "anomaliePrestation", "")
    _leaf(anomaly, "type", "REJET")
    _leaf(anomaly, "code", "DOUBLON")
    _leaf(anomaly, "motif", "Déjà payée.")

    balance = root.find("r:entete/r:paiementGroupeTraitement", R)
    for name, taken in (("montantBrut", paid_line.gross), ("montantNet", paid_line.net)):
        element = balance.find(f"r:{name}", R)
        element.text = f"{Decimal(element.text) - taken:.2f}"
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    parsed = xml.parse_return(data)  # valid against return-1.0.xsd
    assert (parsed.storno_count, len(parsed.stornos)) == (1, 1)
    assert parsed.balance_net == parsed.paid_net - paid_line.net
    return data


async def test_a_storno_reopens_a_reconciled_batch_until_the_line_is_resolved(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    headers = hospitals.a.auth(Role.billing)
    admin = hospitals.a.auth(Role.admin)

    async def figures(batch: dict) -> dict:
        return (await client.get(f"/api/v1/claim-batches/{batch['id']}/reconciliation",
                                 headers=headers)).json()

    async def state(batch: dict) -> str:
        return (await client.get(f"/api/v1/claim-batches/{batch['id']}",
                                 headers=headers)).json()["state"]

    async def worklist(status: str) -> list[dict]:
        return (await client.get(f"/api/v1/claim-lines?status={status}&limit=100",
                                 headers=headers)).json()["items"]

    async def actions(object_id: str) -> list[str]:
        return [e["action"] for e in (await client.get(
            f"/api/v1/audit-events?object_id={object_id}&limit=100",
            headers=admin)).json()["items"]]

    # 1. A batch answered with every line paid is reconciled by the import itself.
    batch, claim = await sent_batch(client, hospitals.a, 2)
    batch = (await client.get(f"/api/v1/claim-batches/{batch['id']}", headers=headers)).json()
    answer = answer_all_paid(claim)
    imported = await post_return(client, hospitals.a, batch, answer)
    assert imported.status_code == 200, imported.text
    assert imported.json()["state"] == "reconciled"
    before = await figures(batch)
    total = batch["net"]
    assert before["state"] == "reconciled"
    assert before["claimed"] == before["paid"] == {
        "count": 4, "claimed": total, "paid": total}
    assert cents(total) == sum(cents(f"{line.net:.2f}")
                               for line in xml.parse_return(answer).lines) > 0
    for name in ("partly_paid", "rejected", "reversed", "written_off", "credited",
                 "outstanding"):
        assert before[name] == {"count": 0, "claimed": "0.00", "paid": "0.00"}, name
    assert before["by_anomaly"] == []
    assert (await actions(batch["id"])).count("claim_batch.reconciled") == 1
    paid = await worklist("paid")
    assert len(paid) == 4
    target = paid[0]
    amount = cents(target["claimed"])
    assert amount > 0 and target["paid"] == target["claimed"]
    fhir_url = f"/api/v1/invoices/{target['invoice_id']}/fhir"

    def claim_response(bundle: dict) -> dict:
        return next(e["resource"] for e in bundle["entry"]
                    if e["resource"]["resourceType"] == "ClaimResponse")

    assert claim_response((await client.get(fhir_url, headers=headers)).json())[
        "outcome"] == "complete"

    # 2. The return of a later batch takes that line back (a storno).
    later, later_claim = await sent_batch(client, hospitals.a, 2)
    later = (await client.get(f"/api/v1/claim-batches/{later['id']}", headers=headers)).json()
    assert later["id"] != batch["id"]
    stornoed = with_storno(answer_with_rejections(later_claim), claim, answer,
                           target["invoice_number"], str(target["line"]))
    applied = await post_return(client, hospitals.a, later, stornoed)
    assert applied.status_code == 200, applied.text
    assert applied.json()["state"] == "answered"  # the later batch has rejected lines

    # 3. The earlier batch is answered again; the line is reversed and waits for a decision.
    assert await state(batch) == "answered"
    after = await figures(batch)
    assert after["state"] == "answered"
    assert after["claimed"]["count"] == 4
    assert cents(after["claimed"]["claimed"]) == cents(total)
    assert cents(after["claimed"]["paid"]) == cents(total) - amount
    assert after["paid"]["count"] == 3
    assert cents(after["paid"]["claimed"]) == cents(after["paid"]["paid"]) == \
        cents(total) - amount
    assert after["reversed"]["count"] == 1
    assert (cents(after["reversed"]["claimed"]), cents(after["reversed"]["paid"])) == (
        amount, 0)
    for name in ("partly_paid", "rejected", "written_off", "credited", "outstanding"):
        assert after[name]["count"] == 0, name
    assert [(f["code"], f["count"], cents(f["claimed"]), cents(f["paid"]))
            for f in after["by_anomaly"]] == [("DOUBLON", 1, amount, 0)]
    # The storno belongs to the batch that claimed the line, not to the one answered now.
    later_figures = await figures(later)
    assert later_figures["reversed"]["count"] == 0
    assert later_figures["claimed"]["count"] == later["line_count"] == 4

    reversed_lines = await worklist("reversed")
    assert [(i["invoice_id"], i["line"]) for i in reversed_lines] == [
        (target["invoice_id"], target["line"])]
    [line] = reversed_lines
    assert (line["status"], cents(line["claimed"]), line["paid"]) == ("reversed", amount,
                                                                      "0.00")
    assert [(a["type"], a["code"]) for a in line["anomalies"]] == [("REJET", "DOUBLON")]
    assert (target["invoice_id"], target["line"]) not in {
        (i["invoice_id"], i["line"]) for i in await worklist("paid")}
    response = claim_response((await client.get(fhir_url, headers=headers)).json())
    assert response["outcome"] == "partial"
    [item] = [i for i in response["item"] if i["itemSequence"] == target["line"]]
    assert [a["amount"]["value"] for a in item["adjudication"]] == [amount / 100, 0]

    trail = await actions(batch["id"])
    assert (trail.count("claim_batch.reconciled"), trail.count("claim_batch.answered")) == (
        1, 1)
    assert trail.index("claim_batch.answered") < trail.index("claim_batch.reconciled")
    assert "claim_batch.return" in await actions(later["id"])

    # The same file again changes nothing: the storno is not applied twice.
    again = await post_return(client, hospitals.a, later, stornoed)
    assert again.status_code == 200
    assert again.json()["version"] == applied.json()["version"]
    assert await figures(batch) == after
    assert (await actions(batch["id"])).count("claim_batch.answered") == 1

    # 4. The reversed line written off: the batch is reconciled again, the amount stays lost.
    off = f"/api/v1/claim-lines/{target['invoice_id']}/{target['line']}/write-off"
    assert (await client.post(off, json={"reason": "Doublon confirmé"},
                              headers=headers)).status_code == 204
    assert await state(batch) == "reconciled"
    resolved = await figures(batch)
    assert resolved["state"] == "reconciled"
    assert resolved["reversed"]["count"] == 0
    assert resolved["written_off"]["count"] == 1
    assert (cents(resolved["written_off"]["claimed"]),
            cents(resolved["written_off"]["paid"])) == (amount, 0)
    assert resolved["claimed"] == after["claimed"] and resolved["paid"] == after["paid"]
    assert await worklist("reversed") == []
    assert (await actions(batch["id"])).count("claim_batch.reconciled") == 2
    events = (await client.get(f"/api/v1/audit-events?object_id={target['invoice_id']}",
                               headers=admin)).json()["items"]
    assert [(e["details"]["line"], cents(e["details"]["lost"])) for e in events
            if e["action"] == "claim_line.write_off"] == [(target["line"], amount)]

    # Importing the storno once more does not take the written-off line back again.
    assert (await post_return(client, hospitals.a, later, stornoed)).json()["version"] == \
        applied.json()["version"]
    assert await state(batch) == "reconciled"
    assert await figures(batch) == resolved

"""A return is checked against itself and against what was paid before it is applied."""

from decimal import Decimal

import httpx
import pytest
from lxml import etree

from luxfact.auth.roles import Role
from luxfact.claims import xml
from luxfact.claims.returns import _status, totals_problems
from tests.claims.test_returns import answer_with_rejections, post_return, sent_batch
from tests.claims.test_storno_reconciled import answer_all_paid, with_storno
from tests.conftest import Hospitals

pytestmark = pytest.mark.usefixtures("catalogue")
R = {"r": xml.RETURN_NS}


def test_a_free_act_is_paid_unless_the_insurer_says_rejet() -> None:
    assert _status(0, 0, []) == "paid"
    assert _status(0, 0, [{"type": "INFORMATION", "code": "AUTRE", "motif": ""}]) == "paid"
    assert _status(0, 0, [{"type": "REJET", "code": "ACTE_INCONNU", "motif": ""}]) == "rejected"
    assert _status(1930, 0, []) == "rejected"
    assert _status(1930, 1000, []) == "partly_paid"
    assert _status(1930, 1930, []) == "paid"


def _tampered(answer: bytes, path: str, delta: str) -> bytes:
    """The return with one amount changed by `delta`, everything else as sent."""
    root = etree.fromstring(answer)
    element = root.xpath(path, namespaces=R)[0]
    element.text = f"{Decimal(element.text) + Decimal(delta):.2f}"
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


async def test_totals_that_do_not_add_up_refuse_the_return_whole(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 2)
    answer = answer_with_rejections(claim)
    assert totals_problems(xml.parse_return(answer)) == []
    for path, where in (
            ("r:fichierFacturation/r:facture[1]/r:montantNet", "invoice "),
            ("r:fichierFacturation/r:montantBrut", "fichierFacturation"),
            ("r:entete/r:paiementGroupeTraitement/r:montantNet", "paiementGroupeTraitement")):
        bad = _tampered(answer, path, "0.01")
        refused = await post_return(client, hospitals.a, batch, bad)
        assert refused.status_code == 422, refused.text
        assert "do not add up" in refused.json()["detail"]
        assert any(where in e["reason"] for e in refused.json()["errors"]), refused.json()
    state = (await client.get(f"/api/v1/claim-batches/{batch['id']}",
                              headers=hospitals.a.auth(Role.billing))).json()["state"]
    assert state == "sent"  # nothing applied
    assert (await post_return(client, hospitals.a, batch, answer)).status_code == 200


async def test_a_retried_upload_of_an_applied_return_is_a_no_op_once_reconciled(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    batch, claim = await sent_batch(client, hospitals.a, 1)
    answer = answer_all_paid(claim)
    first = await post_return(client, hospitals.a, batch, answer)
    assert first.status_code == 200 and first.json()["state"] == "reconciled"
    again = await post_return(client, hospitals.a, batch, answer)
    assert again.status_code == 200, again.text  # was 409 once the batch was reconciled
    assert again.json()["version"] == first.json()["version"]


async def test_a_storno_must_take_back_a_payment_once_and_exactly(
        client: httpx.AsyncClient, hospitals: Hospitals) -> None:
    earlier, earlier_claim = await sent_batch(client, hospitals.a, 1)
    earlier_answer = answer_all_paid(earlier_claim)
    assert (await post_return(client, hospitals.a, earlier, earlier_answer)).status_code == 200
    first_line = xml.parse_return(earlier_answer).invoices[0].lines[0]
    invoice, line = first_line.invoice_reference, first_line.reference

    later, later_claim = await sent_batch(client, hospitals.a, 1)
    storno = with_storno(answer_all_paid(later_claim), earlier_claim, earlier_answer,
                         invoice, line)
    # Taking back more than was paid: refused whole, the later batch stays unanswered.
    wrong = _tampered(_tampered(_tampered(
        storno, "r:stornos/r:facture/r:prestation/r:paiementPrestation/r:montantNet", "1.00"),
        "r:stornos/r:paiementStornos/r:montantNet", "1.00"),
        "r:entete/r:paiementGroupeTraitement/r:montantNet", "-1.00")
    if b"montantNetPaye" in wrong:
        wrong = _tampered(wrong, "r:stornos/r:facture/r:montantNetPaye", "1.00")
    refused = await post_return(client, hospitals.a, later, wrong)
    assert refused.status_code == 422, refused.text
    assert any("was paid" in e["reason"] for e in refused.json()["errors"])
    # The right amount: applied.
    assert (await post_return(client, hospitals.a, later, storno)).status_code == 200

    # The same line taken back again by a third return: refused, the line is reversed.
    third, third_claim = await sent_batch(client, hospitals.a, 1)
    again = with_storno(answer_all_paid(third_claim), earlier_claim, earlier_answer,
                        invoice, line)
    refused = await post_return(client, hospitals.a, third, again)
    assert refused.status_code == 422, refused.text
    assert any("reversed, not paid" in e["reason"] for e in refused.json()["errors"])

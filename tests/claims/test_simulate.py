"""The simulated insurer (luxfact/claims/simulate.py): its returns validate, answer every
claimed line once, never pay more than asked, add up, and are reproducible per seed."""

from collections import Counter
from copy import deepcopy
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree

from luxfact.claims import xml
from luxfact.claims.simulate import REDUCTION, REJECTIONS, simulate_return

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "invoices" / "samples" / "claim-1.0-example.xml"
C = {"c": xml.CLAIM_NS}
SEEDS = (0, 1, 7, 42, 2023)


def _parser(**options: bool) -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, **options)


def _claimed(claim: bytes) -> dict[tuple[str, str], tuple[str, int, Decimal, Decimal]]:
    """(invoice, line) -> (code, count, gross, net) as claimed."""
    root = etree.fromstring(claim, _parser())
    lines = {}
    for facture in root.iterfind("c:facture", C):
        invoice = facture.findtext("c:referenceFacture", None, C)
        for prestation in facture.iterfind("c:prestation", C):
            demande = prestation.find("c:demandePrestation", C)
            lines[invoice, prestation.findtext("c:referencePrestation", None, C)] = (
                prestation.findtext("c:acte/c:codeTarif", None, C),
                int(demande.findtext("c:nombre", None, C)),
                Decimal(demande.findtext("c:montantBrut", None, C)),
                Decimal(demande.findtext("c:montantNet", None, C)),
            )
    return lines


def _big_claim(invoices: int = 50) -> bytes:
    """The sample's invoices copied under new numbers, with the header's totals redone."""
    root = etree.fromstring(SAMPLE.read_bytes(), _parser(remove_blank_text=True))
    originals = root.findall("c:facture", C)
    for facture in originals:
        root.remove(facture)
    for number in range(invoices):
        facture = deepcopy(originals[number % len(originals)])
        facture.find("c:referenceFacture", C).text = f"NORD-2023-{number + 1:06d}"
        root.append(facture)
    factures = root.findall("c:facture", C)
    demande = root.find("c:entete/c:demandeDecompte", C)
    demande.find("c:nombre", C).text = str(len(factures))
    for name in ("montantBrut", "montantNet"):
        total = sum(Decimal(f.findtext(f"c:demandeFacture/c:{name}", None, C))
                    for f in factures)
        demande.find(f"c:{name}", C).text = f"{total:.2f}"
    demande.find("c:nombrePrestations", C).text = str(
        sum(len(f.findall("c:prestation", C)) for f in factures))
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    xml.validate_document(data, xml.CLAIM_XSD)
    return data


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def big() -> bytes:
    return _big_claim()


def _check(claim: bytes, out: bytes) -> xml.ReturnFile:
    """Everything a hospital checks on import; returns the parsed return."""
    xml.validate_document(out, xml.RETURN_XSD)
    answer = xml.parse_return(out)
    claimed = _claimed(claim)
    root = etree.fromstring(claim, _parser())
    assert answer.file_reference == root.findtext("c:entete/c:referenceFichierFacturation",
                                                  None, C)
    assert answer.provider_code == root.findtext("c:entete/c:identifiantFacturier", None, C)
    # Every claimed line answered exactly once, nothing else.
    answered = [(line.invoice_reference, line.reference) for line in answer.lines]
    assert len(answered) == len(set(answered)) == len(claimed)
    assert set(answered) == set(claimed)
    assert [invoice.reference for invoice in answer.invoices] == [
        f.findtext("c:referenceFacture", None, C) for f in root.iterfind("c:facture", C)]
    for line in answer.lines:
        code, count, gross, net = claimed[line.invoice_reference, line.reference]
        assert line.paid_code == code
        assert Decimal("0.00") <= line.net <= net
        assert line.net <= line.gross <= gross
        assert line.count <= count
        types = [anomaly.type for anomaly in line.anomalies]
        if line.net == net and line.gross == gross and line.count == count:
            assert types == []
        elif line.net == 0:
            assert types == ["REJET"] and line.count == 0 and line.gross == 0
            assert line.anomalies[0].motif
        else:
            assert types == ["REDUCTION"]
            assert line.net == (net * Decimal("0.8")).quantize(Decimal("0.01"),
                                                               rounding="ROUND_DOWN")
    # Totals: lines -> invoice -> file -> balance (no stornos).
    for invoice in answer.invoices:
        assert invoice.gross == sum(line.gross for line in invoice.lines)
        assert invoice.net == sum(line.net for line in invoice.lines)
    assert answer.paid_gross == sum(invoice.gross for invoice in answer.invoices)
    assert answer.paid_net == sum(invoice.net for invoice in answer.invoices)
    assert answer.stornos == () and answer.storno_count == 0
    assert answer.balance_count == len(answer.invoices)
    assert (answer.balance_gross, answer.balance_net) == (answer.paid_gross, answer.paid_net)
    assert answer.received_on <= answer.sent_on
    # Insurer ids: unique.
    ids = [line.insurer_id for line in answer.lines]
    assert len(set(ids)) == len(ids)
    assert len({invoice.insurer_id for invoice in answer.invoices}) == len(answer.invoices)
    return answer


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_return_is_valid_complete_and_adds_up(sample: bytes, seed: int) -> None:
    _check(sample, simulate_return(sample, seed=seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_big_return_is_valid_complete_and_adds_up(big: bytes, seed: int) -> None:
    _check(big, simulate_return(big, seed=seed))


def test_same_seed_same_bytes(sample: bytes, big: bytes) -> None:
    for claim in (sample, big):
        assert simulate_return(claim, seed=3) == simulate_return(claim, seed=3)
    assert simulate_return(big, seed=3) != simulate_return(big, seed=4)


def test_ids_depend_on_references_only(big: bytes) -> None:
    one = xml.parse_return(simulate_return(big, seed=1))
    two = xml.parse_return(simulate_return(big, seed=2))
    assert one.return_id == two.return_id and one.insurer_file_id == two.insurer_file_id
    assert [line.insurer_id for line in one.lines] == [line.insurer_id for line in two.lines]
    assert one.return_id.startswith("GT-")
    assert all(invoice.insurer_id.startswith("UTA-") for invoice in one.invoices)


def test_many_lines_have_every_outcome(big: bytes) -> None:
    claimed = _claimed(big)
    for seed in SEEDS:
        answer = xml.parse_return(simulate_return(big, seed=seed))
        outcomes = Counter()
        for line in answer.lines:
            net = claimed[line.invoice_reference, line.reference][3]
            outcomes["paid" if line.net == net else "rejected" if line.net == 0
                     else "partly"] += 1
        assert outcomes["paid"] > outcomes["partly"] > 0, (seed, outcomes)
        assert outcomes["paid"] > outcomes["rejected"] > 0, (seed, outcomes)
        assert sum(outcomes.values()) == len(claimed) == 75


def test_sent_on(sample: bytes) -> None:
    answer = xml.parse_return(simulate_return(sample, sent_on=date(2023, 12, 12)))
    assert answer.sent_on == date(2023, 12, 12)
    assert answer.received_on == date(2023, 11, 6)
    default = xml.parse_return(simulate_return(sample))
    assert default.sent_on == date(2023, 12, 3)
    same_day = xml.parse_return(simulate_return(sample, sent_on=date(2023, 11, 3)))
    assert same_day.received_on == date(2023, 11, 3)
    with pytest.raises(ValueError):
        simulate_return(sample, sent_on=date(2023, 11, 2))


def test_anomaly_codes_are_in_the_schema() -> None:
    tree = etree.parse(str(xml.SCHEMAS / xml.RETURN_XSD), _parser())
    xs = {"xs": "http://www.w3.org/2001/XMLSchema"}
    codes = set(tree.xpath("//xs:simpleType[@name='T_CodeAnomalie']//xs:enumeration/@value",
                           namespaces=xs))
    assert codes and {code for code, _ in REJECTIONS} | {REDUCTION[0]} <= codes


def test_invalid_claim_is_refused(sample: bytes) -> None:
    with pytest.raises(xml.InvalidDocument):
        simulate_return(sample.replace(b"<nombre>2</nombre>", b"<nombre>x</nombre>", 1))
    with pytest.raises(xml.UnsafeXml):
        simulate_return(b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')

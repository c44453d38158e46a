"""The claim-file and return-file schemas: they load, the samples pass, and each kind of bad
value is refused with a message that names the element at fault."""

import re
from collections.abc import Callable
from copy import deepcopy
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "invoices" / "schemas"
SAMPLES = REPO / "invoices" / "samples"
CLAIM_NS = "urn:luxfact:claims:1.0"
RETURN_NS = "urn:luxfact:claims:return:1.0"


def _parser() -> etree.XMLParser:
    # The hardened parser the product uses for files it did not write itself.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@cache
def _schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name), _parser()))


@cache
def _sample(name: str) -> etree._ElementTree:
    return etree.parse(str(SAMPLES / name), _parser())


def claim_schema() -> etree.XMLSchema:
    return _schema("claim-1.0.xsd")


def return_schema() -> etree.XMLSchema:
    return _schema("return-1.0.xsd")


def claim() -> etree._Element:
    """A fresh copy of the claim sample, free to mutate."""
    return deepcopy(_sample("claim-1.0-example.xml").getroot())


def answer() -> etree._Element:
    """A fresh copy of the return sample, free to mutate."""
    return deepcopy(_sample("return-1.0-example.xml").getroot())


def one(root: etree._Element, path: str) -> etree._Element:
    """The first element at `path`, written with the prefix `x` for the document's namespace."""
    found = root.xpath(path, namespaces={"x": etree.QName(root).namespace})
    assert found, path
    return found[0]


def refusal(schema: etree.XMLSchema, root: etree._Element | etree._ElementTree) -> str:
    """The schema's messages for a document it must refuse."""
    assert not schema.validate(root), "the mutated document was accepted"
    return "\n".join(error.message for error in schema.error_log)


def names(message: str, namespace: str, element: str) -> bool:
    """Whether the message names that element (and not merely a longer name starting so)."""
    return re.search(rf"\{{{re.escape(namespace)}\}}{element}\b", message) is not None


# --------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", ["claim-1.0.xsd", "return-1.0.xsd"])
def test_schema_parses_as_xml_schema(name: str) -> None:
    schema = _schema(name)
    assert isinstance(schema, etree.XMLSchema)
    version = etree.parse(str(SCHEMAS / name), _parser()).getroot().get("version")
    assert version == "1.0"


def test_claim_sample_is_valid() -> None:
    schema = claim_schema()
    assert schema.validate(claim()), schema.error_log


def test_return_sample_is_valid() -> None:
    schema = return_schema()
    assert schema.validate(answer()), schema.error_log


def _cents(elements: list[etree._Element]) -> int:
    return sum(int(e.text.replace(".", "")) for e in elements)


def test_samples_add_up() -> None:
    """The samples' control totals match their lines (the schema cannot check sums)."""
    root = claim()
    ns = {"x": CLAIM_NS}
    invoices = root.xpath("x:facture", namespaces=ns)
    lines = root.xpath("x:facture/x:prestation", namespaces=ns)
    assert int(one(root, "x:entete/x:demandeDecompte/x:nombre").text) == len(invoices) == 2
    assert int(one(root, "x:entete/x:demandeDecompte/x:nombrePrestations").text) == len(lines)
    assert len(lines) == 3
    for field in ("montantBrut", "montantNet"):
        lines_total = _cents(root.xpath(
            f"x:facture/x:prestation/x:demandePrestation/x:{field}", namespaces=ns))
        invoices_total = _cents(root.xpath(f"x:facture/x:demandeFacture/x:{field}",
                                           namespaces=ns))
        file_total = _cents([one(root, f"x:entete/x:demandeDecompte/x:{field}")])
        assert file_total == invoices_total == lines_total


def test_return_sample_answers_the_claim_sample_and_adds_up() -> None:
    """Every invoice and line of the claim answered once; totals as docs/claims-format.md
    states them."""
    c, r = {"x": CLAIM_NS}, {"x": RETURN_NS}
    claimed = claim()
    returned = answer()
    assert (one(returned, "x:fichierFacturation/x:referenceFichierFacturation").text
            == one(claimed, "x:entete/x:referenceFichierFacturation").text)
    lines = [(e.getparent().getparent().findtext(f"{{{CLAIM_NS}}}referenceFacture"), e.text)
             for e in claimed.xpath("x:facture/x:prestation/x:referencePrestation",
                                    namespaces=c)]
    answered = [(e.getparent().getparent().findtext(f"{{{RETURN_NS}}}referenceFacture"), e.text)
                for e in returned.xpath(
                    "x:fichierFacturation/x:facture/x:prestation/x:referencePrestation",
                    namespaces=r)]
    assert sorted(answered) == sorted(lines)

    for field in ("montantBrut", "montantNet"):
        paid = _cents(returned.xpath(
            f"x:fichierFacturation/x:facture/x:prestation/x:paiementPrestation/x:{field}",
            namespaces=r))
        assert _cents(returned.xpath(f"x:fichierFacturation/x:{field}", namespaces=r)) == paid
        for invoice in returned.xpath("x:fichierFacturation/x:facture", namespaces=r):
            assert _cents(invoice.xpath(f"x:{field}", namespaces=r)) == _cents(invoice.xpath(
                f"x:prestation/x:paiementPrestation/x:{field}", namespaces=r))
        reversed_ = _cents(returned.xpath(
            f"x:stornos/x:facture/x:prestation/x:paiementPrestation/x:{field}", namespaces=r))
        assert _cents(returned.xpath(f"x:stornos/x:paiementStornos/x:{field}",
                                     namespaces=r)) == reversed_
        balance = one(returned, f"x:entete/x:paiementGroupeTraitement/x:{field}").text
        assert int(balance.replace(".", "")) == paid - reversed_


def test_one_invoice_validates_on_its_own() -> None:
    """`facture` is a global element, so a writer can validate a large file invoice by
    invoice instead of loading it whole."""
    schema = claim_schema()
    invoice = one(claim(), "x:facture")
    assert schema.validate(etree.ElementTree(deepcopy(invoice))), schema.error_log
    one(invoice, "x:identifiantPersonneProtegee").text = "199009301235"
    message = refusal(schema, etree.ElementTree(deepcopy(invoice)))
    assert names(message, CLAIM_NS, "identifiantPersonneProtegee"), message


# ------------------------------------------------------------------------- claim mutations

Mutation = Callable[[etree._Element], None]


def _set(path: str, value: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        one(root, path).text = value
    return mutate


def _drop(path: str) -> Mutation:
    def mutate(root: etree._Element) -> None:
        element = one(root, path)
        element.getparent().remove(element)
    return mutate


def _duplicate_invoice_reference(root: etree._Element) -> None:
    second = root.xpath("x:facture", namespaces={"x": CLAIM_NS})[1]
    one(second, "x:referenceFacture").text = one(root, "x:facture/x:referenceFacture").text


def _duplicate_line_reference(root: etree._Element) -> None:
    _set("x:facture/x:prestation[2]/x:referencePrestation", "1")(root)


def _discharge_without_time(root: etree._Element) -> None:
    _drop("x:facture/x:sejour/x:periodeSejour/x:heureFin")(root)


CLAIM_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "matricule of 12 digits": (
        _set("x:facture/x:identifiantPersonneProtegee", "199009301235"),
        "identifiantPersonneProtegee"),
    "matricule of 14 digits": (
        _set("x:facture/x:identifiantPersonneProtegee", "19900930123580"),
        "identifiantPersonneProtegee"),
    "billing provider code starting with 0": (
        _set("x:entete/x:identifiantFacturier", "09000017"), "identifiantFacturier"),
    "performing provider code starting with 0": (
        _set("x:facture[2]/x:prestation/x:identifiantExecutant", "00000017"),
        "identifiantExecutant"),
    "amount with 3 decimals": (
        _set("x:facture/x:prestation/x:demandePrestation/x:montantBrut", "38.605"),
        "montantBrut"),
    "amount with 3 decimals, the last 0": (
        _set("x:facture/x:demandeFacture/x:montantNet", "80.220"), "montantNet"),
    "amount with 1 decimal": (
        _set("x:entete/x:demandeDecompte/x:montantBrut", "157.4"), "montantBrut"),
    "negative amount": (
        _set("x:facture/x:prestation/x:demandePrestation/x:montantNet", "-38.60"),
        "montantNet"),
    "missing entete": (_drop("x:entete"), "entete"),
    "unknown typeDecompte": (_set("x:typeDecompte/x:type", "XYZ"), "type"),
    "unknown legal framework": (_set("x:typeDecompte/x:cadreLegal", "ASD"), "cadreLegal"),
    "month 13": (_set("x:entete/x:periodeDecompte/x:mois", "13"), "mois"),
    "currency other than EUR": (
        _set("x:facture/x:demandeFacture/x:devise", "USD"), "devise"),
    "count of 0 on a line": (
        _set("x:facture/x:prestation/x:demandePrestation/x:nombre", "0"), "nombre"),
    "act code in lower case": (
        _set("x:facture/x:prestation/x:acte/x:codeTarif", "n101"), "codeTarif"),
    "unknown stay kind": (_set("x:facture/x:sejour/x:typeSejour", "home"), "typeSejour"),
    "unknown room class": (
        _set("x:facture/x:sejour/x:classeChambre", "third"), "classeChambre"),
    "time with a time zone": (
        _set("x:facture/x:sejour/x:periodeSejour/x:heureDebut", "08:15:00+01:00"),
        "heureDebut"),
    "discharge date without its time": (_discharge_without_time, "heureFin"),
    "missing stay block": (_drop("x:facture/x:sejour"), "sejour"),
    "invoice without lines": (_drop("x:facture[2]/x:prestation"), "prestation"),
    "two invoices with one reference": (_duplicate_invoice_reference, "facture"),
    "two lines with one reference": (_duplicate_line_reference, "prestation"),
}


@pytest.mark.parametrize(("mutation", "element"), CLAIM_MUTATIONS.values(),
                         ids=CLAIM_MUTATIONS.keys())
def test_claim_mutation_is_refused_naming_the_element(mutation: Mutation, element: str) -> None:
    root = claim()
    mutation(root)
    message = refusal(claim_schema(), root)
    assert names(message, CLAIM_NS, element), message


def test_claim_of_another_version_is_refused() -> None:
    root = claim()
    root.set("version", "2.0")
    message = refusal(claim_schema(), root)
    assert "version" in message, message


def test_claim_without_version_is_refused() -> None:
    root = claim()
    del root.attrib["version"]
    message = refusal(claim_schema(), root)
    assert "version" in message, message


def test_claim_in_another_namespace_is_refused() -> None:
    text = etree.tostring(claim()).replace(CLAIM_NS.encode(), b"urn:example:other")
    root = etree.fromstring(text, _parser())
    message = refusal(claim_schema(), root)
    assert "decompteFacturation" in message, message


def test_claim_accepts_optional_parts_left_out() -> None:
    """No performing provider, no unit, no discharge yet (an interim invoice)."""
    root = claim()
    _drop("x:facture[2]/x:prestation/x:identifiantExecutant")(root)
    _drop("x:facture/x:sejour/x:unite")(root)
    _drop("x:facture/x:sejour/x:periodeSejour/x:dateFin")(root)
    _drop("x:facture/x:sejour/x:periodeSejour/x:heureFin")(root)
    schema = claim_schema()
    assert schema.validate(root), schema.error_log


# ------------------------------------------------------------------------ return mutations

RETURN_MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "storno line without its reference": (
        _drop("x:stornos/x:facture/x:prestation/x:referencePrestation"), "referencePrestation"),
    "storno without its invoice reference": (
        _drop("x:stornos/x:facture/x:referenceFacture"), "referenceFacture"),
    "storno without the insurer's line id": (
        _drop("x:stornos/x:facture/x:prestation/x:identifiantPrestationOrganisme"),
        "identifiantPrestationOrganisme"),
    "anomaly with an unknown code": (
        _set("x:fichierFacturation/x:facture/x:prestation/x:anomaliePrestation/x:code",
             "E999"), "code"),
    "anomaly with an unknown type": (
        _set("x:fichierFacturation/x:facture/x:prestation/x:anomaliePrestation/x:type",
             "FATAL"), "type"),
    "unknown return type": (_set("x:typeDecompte/x:type", "FAC"), "type"),
    "answered line without its echoed reference": (
        _drop("x:fichierFacturation/x:facture/x:prestation/x:referencePrestation"),
        "referencePrestation"),
    "missing echoed file reference": (
        _drop("x:fichierFacturation/x:referenceFichierFacturation"),
        "referenceFichierFacturation"),
    "paid amount with 3 decimals": (
        _set("x:fichierFacturation/x:facture/x:prestation/x:paiementPrestation/x:montantNet",
             "38.601"), "montantNet"),
    "negative paid amount": (
        _set("x:fichierFacturation/x:facture/x:prestation/x:paiementPrestation/x:montantBrut",
             "-1.00"), "montantBrut"),
    "negative storno amount": (
        _set("x:stornos/x:paiementStornos/x:montantNet", "-19.30"), "montantNet"),
    "echoed provider code starting with 0": (
        _set("x:fichierFacturation/x:identifiantFacturier", "09000017"),
        "identifiantFacturier"),
    "storno patient of 12 digits": (
        _set("x:stornos/x:facture/x:identifiantPersonneProtegee", "199009301235"),
        "identifiantPersonneProtegee"),
    "one invoice answered twice": (
        _set("x:fichierFacturation/x:facture[2]/x:referenceFacture", "NORD-2023-000101"),
        "facture"),
}


@pytest.mark.parametrize(("mutation", "element"), RETURN_MUTATIONS.values(),
                         ids=RETURN_MUTATIONS.keys())
def test_return_mutation_is_refused_naming_the_element(mutation: Mutation, element: str) -> None:
    root = answer()
    mutation(root)
    message = refusal(return_schema(), root)
    assert names(message, RETURN_NS, element), message


def test_return_balance_may_be_negative() -> None:
    """Only the overall balance is signed: stornos larger than the payments."""
    root = answer()
    _set("x:entete/x:paiementGroupeTraitement/x:montantNet", "-12.40")(root)
    schema = return_schema()
    assert schema.validate(root), schema.error_log


def test_return_without_stornos_is_valid() -> None:
    root = answer()
    _drop("x:stornos")(root)
    schema = return_schema()
    assert schema.validate(root), schema.error_log


def test_claim_is_not_a_return() -> None:
    """Each schema accepts only its own root: a claim offered as a return is refused."""
    message = refusal(return_schema(), claim())
    assert "decompteFacturation" in message, message

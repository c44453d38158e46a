"""A simulated insurer: answers a claim file with a plausible return file.

For demos and tests only (no insurer is called). Given a claim file written by
`luxfact.claims.xml.write_claim` (claim-1.0.xsd), `simulate_return` builds a return valid
against return-1.0.xsd that answers every invoice and every line exactly once, in document
order: about 80 % of the lines paid in full, 10 % paid in part (REDUCTION) and 10 % rejected
(REJET). The same claim and seed always give the same bytes. No stornos.
"""

import hashlib
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

from lxml import etree

from luxfact.claims import xml

PAID_SHARE = 0.80
PARTLY_PAID_SHARE = 0.10          # the rest (about 10 %) is rejected
REDUCTION_RATE = Decimal("0.80")  # a partly paid line gets 80 % of what was asked
RECEPTION_DELAY = timedelta(days=3)   # claim sent -> received by the insurer
ANSWER_DELAY = timedelta(days=30)     # claim sent -> return sent, when `sent_on` is not given

_CENT = Decimal("0.01")
_ZERO = Decimal("0.00")
_C = {"c": xml.CLAIM_NS}

# Line-level rejection reasons: codes of return-1.0.xsd's T_CodeAnomalie with a French motif
# (`{code}` is the act code claimed). Invoice-level codes (PERSONNE_INCONNUE,
# TOTAUX_INCORRECTS) are not used: the simulation rejects lines, never whole invoices.
REJECTIONS: tuple[tuple[str, str], ...] = (
    ("PERSONNE_NON_COUVERTE", "Assuré non couvert à la date de la prestation."),
    ("PRESTATAIRE_NON_AUTORISE", "Le prestataire n'est pas autorisé à facturer l'acte {code}."),
    ("ACTE_INCONNU", "Code {code} inconnu de la nomenclature."),
    ("ACTE_NON_VALABLE_A_LA_DATE", "Code {code} non valable à la date de la prestation."),
    ("COMPLEMENT_INVALIDE", "Complément tarifaire non admis pour l'acte {code}."),
    ("CUMUL_INTERDIT", "Acte {code} non cumulable avec un autre acte du même séjour."),
    ("NOMBRE_DEPASSE", "Nombre maximal d'actes {code} par jour dépassé."),
    ("AGE_NON_AUTORISE", "Âge du patient hors des limites de l'acte {code}."),
    ("PERIODE_INVALIDE", "Date ou heure de la prestation invalide."),
    ("HORS_SEJOUR", "Prestation en dehors de la période du séjour."),
    ("DOUBLON", "Prestation déjà facturée."),
)
REDUCTION = ("MONTANT_INCORRECT", "Montant ramené au tarif conventionnel de l'acte {code}.")


@dataclass(frozen=True, slots=True)
class _Paid:
    count: int
    gross: Decimal
    net: Decimal
    anomaly: tuple[str, str, str] | None  # (type, code, motif)


def simulate_return(claim: bytes, *, seed: int = 0, sent_on: date | None = None) -> bytes:
    """The insurer's return (UTF-8 XML, valid against return-1.0.xsd) answering `claim`.

    `seed` picks the outcomes (random.Random(seed), one draw per line in document order);
    `sent_on` is the return's send date (default: the claim's send date + 30 days). Raises
    the errors of `xml.validate_document` when `claim` is not a valid claim file, ValueError
    when `sent_on` is before the claim was sent."""
    # The hardened parser (no DTD, no entities, no network) and claim-1.0.xsd.
    root = xml.validate_document(claim, xml.CLAIM_XSD).getroot()
    entete = root.find("c:entete", _C)
    file_reference = entete.findtext("c:referenceFichierFacturation", None, _C)
    provider = entete.findtext("c:identifiantFacturier", None, _C)
    claim_sent = date.fromisoformat(entete.findtext("c:dateEnvoi", None, _C).strip())
    if sent_on is None:
        sent_on = claim_sent + ANSWER_DELAY
    if sent_on < claim_sent:
        raise ValueError(f"a return sent on {sent_on} cannot answer a claim sent on "
                         f"{claim_sent}")
    received_on = min(claim_sent + RECEPTION_DELAY, sent_on)
    rng = random.Random(seed)  # noqa: S311 -- a reproducible simulation, not a secret

    out = etree.Element(_r("retourFacturation"), nsmap={None: xml.RETURN_NS})
    out.set("version", xml.VERSION)
    kind = _node(out, "typeDecompte")
    _leaf(kind, "cadreLegal", "AMM")
    _leaf(kind, "layout", "1")
    _leaf(kind, "type", "RETFAC")
    head = _node(out, "entete")
    _leaf(head, "identifiantGroupeTraitementOrganisme",
          "GT-" + _digest("GT", provider, file_reference))
    _leaf(head, "dateEnvoi", sent_on.isoformat())
    balance = _node(head, "paiementGroupeTraitement")

    fichier = _node(out, "fichierFacturation")
    _leaf(fichier, "referenceFichierFacturation", file_reference)
    _leaf(fichier, "identifiantFacturier", provider)
    _leaf(fichier, "identifiantFichierFacturationOrganisme",
          "FF-" + _digest("FF", provider, file_reference))
    _leaf(fichier, "dateEntreeOrganisme", received_on.isoformat())
    file_gross = _leaf(fichier, "montantBrut", "")
    file_net = _leaf(fichier, "montantNet", "")
    _leaf(fichier, "devise", "EUR")

    total_gross = total_net = _ZERO
    invoices = 0
    for facture in root.iterfind("c:facture", _C):
        invoices += 1
        invoice_reference = facture.findtext("c:referenceFacture", None, _C)
        answer = _node(fichier, "facture")
        _leaf(answer, "referenceFacture", invoice_reference)
        _leaf(answer, "identifiantFactureOrganisme",
              "UTA-" + _digest("UTA", provider, file_reference, invoice_reference))
        _leaf(answer, "dateEntreeFacture", received_on.isoformat())
        invoice_gross_leaf = _leaf(answer, "montantBrut", "")
        invoice_net_leaf = _leaf(answer, "montantNet", "")
        _leaf(answer, "devise", "EUR")
        invoice_gross = invoice_net = _ZERO
        for prestation in facture.iterfind("c:prestation", _C):
            line_reference = prestation.findtext("c:referencePrestation", None, _C)
            code = prestation.findtext("c:acte/c:codeTarif", None, _C)
            demande = prestation.find("c:demandePrestation", _C)
            paid = _outcome(rng, code, int(demande.findtext("c:nombre", None, _C).strip()),
                            _decimal(demande, "montantBrut"), _decimal(demande, "montantNet"))
            line = _node(answer, "prestation")
            _leaf(line, "referencePrestation", line_reference)
            _leaf(line, "identifiantPrestationOrganisme",
                  "UTAL-" + _digest("UTAL", provider, file_reference, invoice_reference,
                                    line_reference))
            _leaf(line, "codeActePaye", code)
            _paiement(line, "paiementPrestation", paid.count, paid.gross, paid.net)
            if paid.anomaly is not None:
                anomaly = _node(line, "anomaliePrestation")
                for name, value in zip(("type", "code", "motif"), paid.anomaly, strict=True):
                    _leaf(anomaly, name, value)
            invoice_gross += paid.gross
            invoice_net += paid.net
        invoice_gross_leaf.text = _amount(invoice_gross)
        invoice_net_leaf.text = _amount(invoice_net)
        total_gross += invoice_gross
        total_net += invoice_net
    file_gross.text = _amount(total_gross)
    file_net.text = _amount(total_net)
    # No stornos: the balance is what fichierFacturation pays.
    _paiement(balance, None, invoices, total_gross, total_net)

    data = etree.tostring(out, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    xml.validate_document(data, xml.RETURN_XSD)  # an invalid return here is a bug
    return data


def _outcome(rng: random.Random, code: str, count: int, gross: Decimal,
             net: Decimal) -> _Paid:
    """One line's answer. Exactly two draws per line, whatever the outcome, so that a line's
    outcome depends only on the seed and its position."""
    draw = rng.random()
    reason_code, motif = REJECTIONS[rng.randrange(len(REJECTIONS))]
    if draw < PAID_SHARE:
        return _Paid(count, gross, net, None)
    if draw < PAID_SHARE + PARTLY_PAID_SHARE:
        part_net = (net * REDUCTION_RATE).quantize(_CENT, rounding=ROUND_DOWN)
        if part_net > _ZERO:  # 0.01 asked cannot be partly paid: paid in full instead
            part_gross = (gross * REDUCTION_RATE).quantize(_CENT, rounding=ROUND_DOWN)
            return _Paid(count, max(part_gross, part_net), part_net,
                         ("REDUCTION", REDUCTION[0], REDUCTION[1].format(code=code)))
        return _Paid(count, gross, net, None)
    return _Paid(0, _ZERO, _ZERO, ("REJET", reason_code, motif.format(code=code)))


def _digest(*parts: str) -> str:
    """A short, stable insurer id from the hospital's references (unit separator between
    parts so that ("AB", "C") and ("A", "BC") differ)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12].upper()


def _r(name: str) -> str:
    return f"{{{xml.RETURN_NS}}}{name}"


def _node(parent: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(parent, _r(name))


def _leaf(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, _r(name))
    element.text = text
    return element


def _paiement(parent: etree._Element, name: str | None, count: int, gross: Decimal,
              net: Decimal) -> None:
    block = parent if name is None else _node(parent, name)
    _leaf(block, "nombre", str(count))
    _leaf(block, "devise", "EUR")
    _leaf(block, "montantBrut", _amount(gross))
    _leaf(block, "montantNet", _amount(net))


def _amount(value: Decimal) -> str:
    """Exactly two decimals, never "-0.00"."""
    cents = value.quantize(_CENT)
    return f"{cents if cents else _ZERO:f}"


def _decimal(parent: etree._Element, name: str) -> Decimal:
    return Decimal(parent.findtext(f"c:{name}", None, _C).strip())

"""ISO 11649 structured creditor references ("RF" references) for invoices.

The reference is printed on the invoice and carried in the payment QR code, so a bank
transfer can be matched to its invoice without any patient data travelling with it. It is
derived from the invoice number alone: the same number always gives the same reference.
"""

from stdnum import iso11649
from stdnum.iso7064 import mod_97_10

# ISO 11649 allows 25 characters in all: "RF", two check digits and up to 21 more.
MAX_BODY = 21


def creditor_reference(invoice_number: str) -> str:
    """The RF reference for an invoice number, e.g. "NORD-2026-000042" -> "RF..NORD2026000042".

    Only ASCII letters and digits are kept (the standard allows nothing else), upper-cased.
    A longer number keeps its rightmost 21 characters: the running sequence is at the end
    of our number patterns, and that is the part that tells invoices apart.
    """
    body = "".join(ch for ch in invoice_number.upper() if ch.isascii() and ch.isalnum())
    if not body:
        raise ValueError(f"no letter or digit in invoice number {invoice_number!r}")
    body = body[-MAX_BODY:]
    # The check digits make body + "RF" + digits equal 1 modulo 97 (letters as 10..35).
    check = mod_97_10.calc_check_digits(body + "RF")
    reference = f"RF{check}{body}"
    iso11649.validate(reference)
    return reference


def format_reference(reference: str) -> str:
    """Print form: blocks of four characters, as bank forms and apps show it."""
    compact = iso11649.compact(reference)
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

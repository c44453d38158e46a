"""Money: integer cents at rest, Decimal in computations, decimal strings in JSON."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
# The most an amount column holds (a PostgreSQL integer of cents): 21,474,836.47 €.
MAX_CENTS = 2**31 - 1


def to_cents(amount: Decimal) -> int:
    """Exact cents of an amount already rounded to the cent (anything else is a bug)."""
    quantized = amount.quantize(CENT, ROUND_HALF_UP)
    if quantized != amount:
        raise ValueError(f"{amount} is not rounded to the cent")
    return int(quantized * 100)


def from_cents(cents: int) -> Decimal:
    """`1930` -> `Decimal("19.30")`, always with two decimals (a million times a claim file)."""
    return Decimal(cents).scaleb(-2)


def cents_str(cents: int) -> str:
    """`1930` -> `"19.30"`: what the API shows."""
    return format(from_cents(cents), "f")

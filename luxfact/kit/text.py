"""Text normalisation for storage and for forgiving search."""

import unicodedata


def nfc(text: str) -> str:
    """What is stored: NFC, so the same name typed two ways is the same string."""
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    """What is searched: no accents, no case ("Müller" and "MULLER" fold alike)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.casefold()

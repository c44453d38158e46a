"""The desk's texts in French, German and English (Babel catalogues, no build step).

Every text is written in English in the templates and the code (`_("...")`); each area of
the desk has its own catalogue per language, `locale/<lang>/<area>.po`, read once at start
and merged. English needs none: the text is its own translation. A test extracts every text
and fails when French or German lacks one.
"""

import functools
import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from luxfact.kit.language import DEFAULT, LANGUAGES, negotiate

LOCALE = Path(__file__).resolve().parent / "locale"
NAMES = {"fr": "Français", "de": "Deutsch", "en": "English"}

__all__ = ["DEFAULT", "LANGUAGES", "NAMES", "N_", "negotiate", "translations"]


def N_(text: str) -> str:
    """Mark a text for translation where it is defined; it is translated where shown."""
    return text


@functools.cache  # one per language, for the life of the process
def translations(language: str) -> gettext.NullTranslations:
    if language not in LANGUAGES:
        language = DEFAULT
    merged: gettext.NullTranslations = gettext.NullTranslations()
    for path in sorted((LOCALE / language).glob("*.po")):
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        part = gettext.GNUTranslations(compiled)
        part.add_fallback(merged)
        merged = part
    return merged


def catalog_messages(language: str) -> dict[str, str]:
    """msgid -> msgstr of every catalogue of a language (for the completeness test)."""
    found: dict[str, str] = {}
    for path in sorted((LOCALE / language).glob("*.po")):
        with path.open("rb") as handle:
            for message in read_po(handle, locale=language):
                if message.id:
                    found[str(message.id)] = str(message.string or "")
    return found

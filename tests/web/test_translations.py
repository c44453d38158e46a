"""Every text of the desk has its French and German translation (English is the source).

The texts are extracted the way Babel's `pybabel extract` would: `_()`, `gettext()`,
`translate()` and `N_()` in the code, `_()` and `{% trans %}` in the templates."""

from pathlib import Path

from babel.messages.extract import extract_from_dir

from luxfact.web import i18n

WEB = Path(i18n.__file__).resolve().parent
KEYWORDS = {"_": None, "gettext": None, "translate": None, "N_": None}


def texts() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, _, message, _, _ in extract_from_dir(
            str(WEB), method_map=[("**.py", "python"),
                                  ("templates/desk/**.html", "jinja2.ext:babel_extract")],
            keywords=KEYWORDS, options_map={"templates/desk/**.html": {
                "extensions": "jinja2.ext.i18n", "trimmed": "true"}}):
        if isinstance(message, tuple):
            message = message[0]
        if message:
            found.setdefault(message, filename)
    return found


def test_the_extraction_sees_the_desk() -> None:
    found = texts()
    assert "Log in" in found and "Stays ready to bill" in found  # templates and N_()
    assert "The hospital, e-mail or password is not right." in found  # code


def test_every_text_is_in_french_and_german() -> None:
    found = texts()
    for language in ("fr", "de"):
        catalogue = i18n.catalog_messages(language)
        missing = sorted(f"{where}: {text!r}" for text, where in found.items()
                         if not catalogue.get(text))
        assert not missing, f"{len(missing)} text(s) without {language}:\n" + "\n".join(
            missing[:40])


def test_translations_keep_their_placeholders() -> None:
    import re
    placeholder = re.compile(r"%\(\w+\)s")
    for language in ("fr", "de"):
        for text, translated in i18n.catalog_messages(language).items():
            assert sorted(placeholder.findall(text)) == sorted(
                placeholder.findall(translated)), (language, text)


def test_a_text_has_one_translation_across_the_catalogues() -> None:
    """The catalogues are merged: the same English text translated two ways in two areas
    would show one of them at random (whichever file loads last)."""
    from babel.messages.pofile import read_po

    for language in ("fr", "de"):
        seen: dict[str, tuple[str, str]] = {}
        clashes = []
        for path in sorted((i18n.LOCALE / language).glob("*.po")):
            with path.open("rb") as handle:
                for message in read_po(handle, locale=language):
                    if not message.id or not message.string:
                        continue
                    text, translated = str(message.id), str(message.string)
                    first = seen.setdefault(text, (path.name, translated))
                    if first[1] != translated:
                        clashes.append(f"{text!r}: {first[0]} {first[1]!r} / {path.name} "
                                       f"{translated!r}")
        assert not clashes, f"{language}:\n" + "\n".join(clashes)

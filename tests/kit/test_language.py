"""The user's language from Accept-Language: French unless fr, de or en is preferred."""

import pytest

from luxfact.kit.language import negotiate


@pytest.mark.parametrize(("header", "expected"), [
    (None, "fr"),
    ("", "fr"),
    ("de-LU,de;q=0.9,en;q=0.8", "de"),
    ("en-GB, fr;q=0.5", "en"),
    ("fr;q=0.4, de;q=0.6", "de"),         # the weight decides, not the order
    ("pt-PT, en;q=0.3", "en"),             # Portuguese is not offered: the next one is
    ("pt-PT", "fr"),                       # nothing offered: French
    ("de;q=0, en", "en"),                  # q=0 means "not this one"
    ("de;q=abc, en;q=0.1", "en"),          # a broken weight counts as 0
    ("DE-lu", "de"),                       # case does not matter
    ("*", "fr"),
])
def test_negotiate(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_only_the_languages_offered() -> None:
    assert negotiate("de, en;q=0.5", offered=("en",)) == "en"

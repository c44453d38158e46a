"""The user's language among those the product speaks: French first, German, English."""

LANGUAGES = ("fr", "de", "en")
DEFAULT = "fr"


def negotiate(accept_language: str | None, offered: tuple[str, ...] = LANGUAGES) -> str:
    """The best of `offered` for an Accept-Language header (RFC 9110 §12.5.4), else French.

    Only the primary subtag counts ("de-LU" is German): the product has one text per
    language. A malformed weight counts as 0, so a broken header falls back, never fails."""
    best, best_weight = DEFAULT if DEFAULT in offered else offered[0], 0.0
    for item in (accept_language or "").split(","):
        tag, _, params = item.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in offered and weight > best_weight and 0 < weight <= 1:
            best, best_weight = primary, weight
    return best

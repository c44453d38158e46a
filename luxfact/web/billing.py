"""The billing officer's desk pages: what they share, and their routes.

The pages themselves are in `billing_invoices` (stays ready to bill, invoices, payments,
credit notes, PDFs), `billing_claims` (claim batches, returns, the rejected-lines worklist)
and `billing_dashboard` (three charts drawn by the server). Each calls the services exactly
as the REST handlers do, so the same rules, numbers and audit events apply.
"""

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_decimal
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute

from luxfact.auth.roles import Role
from luxfact.kit.errors import NotFound
from luxfact.kit.money import from_cents
from luxfact.patients.models import Patient
from luxfact.tenancy.models import Tenant
from luxfact.tenancy.service import tenant_by_id
from luxfact.web.desk import Desk

BILLING = (Role.billing,)
PAGE_SIZE = 50
P = Patient.__table__  # type: ignore[attr-defined]
# Babel's locales of the desk's languages (Luxembourg's own conventions).
LOCALES = {"fr": "fr_LU", "de": "de_LU", "en": "en_GB"}


def routes() -> list[BaseRoute]:
    # Imported here: the page modules import the helpers of this one.
    from luxfact.web import billing_claims, billing_dashboard, billing_invoices

    return [*billing_invoices.routes(), *billing_claims.routes(), *billing_dashboard.routes()]


# --------------------------------------------------------------------------- formatting


def locale_of(language: str) -> str:
    return LOCALES.get(language, LOCALES["fr"])


def money(amount: int | str | Decimal | None, language: str) -> str:
    """Euros with two decimals in the user's conventions: integer cents, or a decimal
    string of euros (what the services answer), never a float."""
    if amount is None or amount == "":
        return ""
    if isinstance(amount, bool):
        raise TypeError("not an amount")
    value = from_cents(amount) if isinstance(amount, int) else Decimal(str(amount))
    return format_decimal(value, format="#,##0.00", locale=locale_of(language))


def cents_of(amount: str) -> int:
    """A service's decimal string of euros as integer cents (exact)."""
    return int(Decimal(amount).scaleb(2))


def plain_amount(text: str) -> str:
    """An amount as typed at the desk ("1 234,50", "19.92") in the API's form ("1234.50");
    anything else is left for the schema to refuse."""
    cleaned = "".join(text.split()).replace("\u202f", "").replace("\xa0", "")
    if cleaned.count(",") == 1 and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    return cleaned


class Formats:
    """What every billing template gets to show amounts in the user's language."""

    def __init__(self, language: str) -> None:
        self.language = language

    def money(self, amount: int | str | Decimal | None) -> str:
        return money(amount, self.language)

    def label(self, line: Any) -> str:
        """An invoice line's label in the user's language (French when no German one)."""
        german = getattr(line, "label_de", "")
        return german if self.language == "de" and german else line.label_fr


def render(desk: Desk, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A billing page: `desk.render` with the formats of the user's language (`fmt`)."""
    return desk.render(f"desk/billing/{template}", status, fmt=Formats(desk.language),
                       **values)


def query_string(values: Mapping[str, Any]) -> str:
    """`?a=1&b=2` of the values that are set (a page link keeps the filters)."""
    kept = {name: str(value) for name, value in values.items() if value not in (None, "")}
    return f"?{urlencode(kept)}" if kept else ""


# ----------------------------------------------------------------------------- requests


def path_uuid(desk: Desk, name: str) -> uuid.UUID:
    """An id in the URL; anything that is not one is a page that does not exist."""
    try:
        return uuid.UUID(str(desk.request.path_params[name]))
    except (KeyError, ValueError):
        raise NotFound() from None


def parse_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        return None


async def tenant_of(desk: Desk) -> Tenant:
    tenant = await tenant_by_id(desk.session, desk.tenant_id)
    if tenant is None:
        raise NotFound()
    return tenant


@contextlib.asynccontextmanager
async def attempt(desk: Desk) -> AsyncIterator[None]:
    """A service call that may be refused: what it wrote is undone (a savepoint) before the
    page is shown again with the errors, so nothing half-done is committed with it."""
    async with desk.session.begin_nested():
        yield


def schema_errors(desk: Desk, error: ValidationError, messages: Mapping[str, str],
                  form: str = "_form") -> dict[str, str]:
    """A schema's refusal as errors next to the fields, in the user's language: each field
    has its own plain sentence (pydantic's wording is for programmers)."""
    for item in error.errors():
        name = str(item["loc"][0]) if item.get("loc") else ""
        message = messages.get(name)
        if message is None:
            desk.errors.setdefault(form, desk._("This value is not valid."))
        else:
            desk.errors.setdefault(name, desk._(message))
    return desk.errors


def service_errors(desk: Desk, error: Any, fields: tuple[str, ...],
                   form: str = "_form") -> dict[str, str]:
    """A service's ValidationFailed next to the fields of this form; the rest (and the
    message when it names no field) on the form itself."""
    items = error.errors or []
    for item in items:
        name = str(item.get("field", "")).removeprefix("body.")
        reason = desk.translate_reason(str(item.get("reason", "")))
        desk.errors.setdefault(name if name in fields else form, reason)
    if not items:
        desk.errors.setdefault(form, desk.translate_reason(error.detail))
    return desk.errors


async def patient_names(desk: Desk, patient_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The names of the patients of a page, in one query (never one per row)."""
    if not patient_ids:
        return {}
    rows = await desk.session.execute(
        select(P.c.id, P.c.given_name, P.c.family_name).where(
            P.c.tenant_id == desk.tenant_id, P.c.id.in_(sorted(patient_ids))))
    return {row.id: f"{row.family_name} {row.given_name}".strip() for row in rows.all()}

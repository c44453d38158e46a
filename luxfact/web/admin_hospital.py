"""/desk/admin/hospital: the hospital's settings, read-only, and what to fix in them.

The tenant file `tenants/<slug>.toml` is the source of truth, applied by
`luxfact tenants sync`; the page shows what was applied (as `GET /api/v1/tenant` does,
`luxfact/tenancy/api.py`), its warnings, and the hospital's own price list.
"""

import base64
from pathlib import Path

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from luxfact.auth.roles import Role
from luxfact.kit.errors import NotFound
from luxfact.kit.time import LUXEMBOURG, utcnow
from luxfact.tariffs.repository import TariffRepository
from luxfact.tenancy.repository import TenantRepository
from luxfact.tenancy.service import tenant_warnings
from luxfact.web.admin_kit import when
from luxfact.web.desk import Desk, page
from luxfact.web.i18n import N_

# tenant_warnings' texts (luxfact/tenancy/service.py), so that they are translated.
WARNINGS = (
    N_("No IBAN: invoices are issued, but their PDF carries no bank details and no payment "
       "QR code. Add `iban` (and `bic`) to the tenant file."),
    N_("No logo: documents show the hospital's name only."),
)
LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
LOGO_MAX_BYTES = 512 * 1024


def _example(pattern: str, year: int) -> str:
    try:
        return pattern.format(year=year, seq=1)
    except (ValueError, IndexError, KeyError):
        return ""


def _logo(tenants_dir: Path, name: str | None) -> str:
    """The logo beside the tenant file, as a data: URL (the page allows no other source)."""
    if not name:
        return ""
    try:
        base = tenants_dir.resolve()
        path = (base / name).resolve()
        kind = LOGO_TYPES.get(path.suffix.lower())
        if (kind is None or not path.is_relative_to(base) or not path.is_file()
                or path.stat().st_size > LOGO_MAX_BYTES):
            return ""
        return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"
    except OSError:
        return ""


@page(Role.admin)
async def hospital(desk: Desk) -> Response:
    tenant = await TenantRepository(desk.session).by_id(desk.tenant_id)
    if tenant is None:
        raise NotFound()
    config = tenant.config or {}
    invoices = config.get("invoices") or {}
    today = utcnow().astimezone(LUXEMBOURG).date()
    year = today.year
    prices = sorted(await TariffRepository(desk.session).tenant_prices(desk.tenant_id),
                    key=lambda p: (p.code, p.valid_from))
    label = {"fr": "label_fr", "de": "label_de"}.get(desk.language, "label_en")
    return desk.render(
        "desk/admin/hospital.html", tenant=tenant, config=config, invoices=invoices,
        address=config.get("address") or {}, offered=(config.get("languages") or {}).get(
            "offered", []), facilities=(config.get("integration") or {}).get(
            "hl7_facilities", []),
        invoice_example=_example(tenant.invoice_number_pattern, year),
        credit_example=_example(tenant.credit_note_number_pattern, year),
        warnings=[desk._(w) for w in tenant_warnings(tenant)],
        logo=_logo(desk.request.state.settings.tenants_dir, config.get("logo")),
        prices=[{"code": p.code, "label": getattr(p, label) or p.label_fr,
                 "amount": f"{p.amount_cents / 100:.2f}", "valid_from": p.valid_from,
                 "valid_to": p.valid_to,
                 "current": p.valid_from <= today and (p.valid_to is None or today <= p.valid_to)}
                for p in prices],
        when=when, file_name=f"tenants/{tenant.slug}.toml")


def routes() -> list[BaseRoute]:
    return [Route("/desk/admin/hospital", hospital, methods=["GET"])]

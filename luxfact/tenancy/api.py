"""/api/v1/tenant: the hospital's settings (from its tenant file) and what to fix in them."""

from starlette.responses import Response

from luxfact.auth.roles import Role
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.kit.errors import NotFound
from luxfact.tenancy.repository import TenantRepository
from luxfact.tenancy.schemas import TenantOut
from luxfact.tenancy.service import tenant_warnings


@endpoint(Role.admin, response=TenantOut)
async def get_tenant(ctx: Ctx) -> Response:
    """The hospital's settings and warnings (a missing IBAN, a missing logo)."""
    tenant = await TenantRepository(ctx.session).by_id(ctx.tenant_id)
    if tenant is None:
        raise NotFound()
    fields = {name: getattr(tenant, name) for name in TenantOut.model_fields
              if name != "warnings"}
    return json_response(TenantOut(**fields, warnings=tenant_warnings(tenant)))

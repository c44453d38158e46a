"""The administrator's API for users and API keys of their hospital."""

from starlette.responses import Response

from luxfact.auth import service
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.auth.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    UserIn,
    UserOut,
)
from luxfact.http.endpoint import Ctx, endpoint, json_response
from luxfact.http.pagination import Page, whole


@endpoint(Role.admin, response=Page[ApiKeyOut])
async def list_api_keys(ctx: Ctx) -> Response:
    """The hospital's API keys (never the keys themselves)."""
    return json_response(whole(ApiKeyOut, await AuthRepository(ctx.session,
                                                                ctx.tenant_id).keys()))


@endpoint(Role.admin, body=ApiKeyIn, response=ApiKeyCreated, status=201)
async def create_api_key(ctx: Ctx) -> Response:
    """Create an API key; the key is in this response only."""
    data = await ctx.body(ApiKeyIn)
    api_key, clear = await service.create_api_key(
        ctx.session, ctx.tenant_id, name=data.name, role=data.role,
        created_by=ctx.principal.actor,
    )
    out = ApiKeyCreated(**ApiKeyOut.model_validate(api_key, from_attributes=True).model_dump(),
                        key=clear)
    return json_response(out, 201, headers={"Cache-Control": "no-store"})


@endpoint(Role.admin, response=ApiKeyOut)
async def revoke_api_key(ctx: Ctx) -> Response:
    """Revoke an API key; it stops working at once."""
    api_key = await service.revoke_api_key(ctx.session, ctx.tenant_id, ctx.path_uuid("key_id"))
    return json_response(ApiKeyOut.model_validate(api_key, from_attributes=True))


@endpoint(Role.admin, response=Page[UserOut])
async def list_users(ctx: Ctx) -> Response:
    """The hospital's users."""
    return json_response(whole(UserOut, await AuthRepository(ctx.session,
                                                              ctx.tenant_id).users()))


@endpoint(Role.admin, idempotent=True, body=UserIn, response=UserOut, status=201)
async def create_user(ctx: Ctx) -> Response:
    """Create a user of this hospital."""
    data = await ctx.body(UserIn)
    user = await service.create_user(
        ctx.session, ctx.tenant_id, email=data.email, role=data.role, password=data.password,
        display_name=data.display_name, language=data.language,
    )
    return json_response(UserOut.model_validate(user, from_attributes=True), 201)

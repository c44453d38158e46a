"""How a JSON endpoint is declared: the roles it allows, and one unit of work per request.

    @endpoint(Role.admin)
    async def list_things(ctx: Ctx) -> Response: ...

The wrapper authenticates (401), checks the role (403), sets the tenant on the request
context, opens the transaction (the tenant hook sets it on PostgreSQL), runs the endpoint and
commits, or rolls everything back if anything fails. The declared roles stay on the function
for the permission matrix and the OpenAPI document.
"""

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from luxfact.auth import credentials
from luxfact.auth.roles import Role
from luxfact.auth.service import Principal, authenticate_key
from luxfact.db.engine import Database
from luxfact.http import idempotency
from luxfact.kit import context, problems
from luxfact.kit.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)
from luxfact.tenancy.repository import TenantRepository

_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

M = TypeVar("M", bound=BaseModel)


class NoQuery(BaseModel):
    """The query of an endpoint that declares none: any parameter is refused, since one
    the endpoint does not read (a misspelt filter, `?tenant=...`) must not look obeyed."""

    model_config = ConfigDict(extra="forbid")

_WWW_AUTH = {"WWW-Authenticate": 'Bearer realm="luxfact"'}


@dataclass
class Ctx:
    request: Request
    session: AsyncSession
    principal: Principal

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.principal.tenant_id

    def path_uuid(self, name: str) -> uuid.UUID:
        """A path id; anything that is not a UUID cannot exist, so it is a 404. Only the
        form ids are given in (`uuid.UUID` also reads `urn:uuid:…`, braces and 32 bare
        digits, which would answer a resource whose `id` is not the one asked for)."""
        value = self.request.path_params[name]
        if not _CANONICAL_UUID.fullmatch(value):
            raise NotFound()
        return uuid.UUID(value)

    async def body(self, schema: type[M]) -> M:
        return parse_body(await self.request.body(), self.request.headers, schema)

    def query(self, schema: type[M]) -> M:
        """The query string as `schema`; an endpoint without one accepts no parameters."""
        items = self.request.query_params.multi_items()
        repeated = sorted({name for name, _ in items
                           if sum(1 for other, _ in items if other == name) > 1})
        if repeated:
            # A parameter given twice would silently keep one value: say so instead.
            raise ValidationFailed(errors=[{"field": f"query.{name}",
                                            "reason": "given more than once"}
                                           for name in repeated])
        try:
            return schema.model_validate(dict(items))
        except ValidationError as exc:
            raise ValidationFailed(errors=problems.field_errors(exc, "query.")) from None


def parse_body(raw: bytes, headers: Any, schema: type[M]) -> M:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise UnsupportedMediaType("Send the body as application/json.")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError:
        raise BadRequest("The body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}.") from None
    except RecursionError:
        raise BadRequest("The body is nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise BadRequest(f"The body cannot be read: {exc}.") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(errors=problems.field_errors(exc)) from None


def json_response(data: BaseModel | dict[str, Any] | list[Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    if isinstance(data, BaseModel):
        # pydantic serialises straight to JSON bytes (no intermediate dict).
        return Response(data.model_dump_json(), status_code=status, headers=headers,
                        media_type="application/json")
    return JSONResponse(data, status_code=status, headers=headers)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("Use `Authorization: Bearer <API key>`.", headers=_WWW_AUTH)
    return value.strip()


async def _tenant_slug(request: Request, session: AsyncSession, tenant_id: uuid.UUID) -> str:
    """The tenant's slug for the log line, cached per process (slugs never change)."""
    cache: dict[uuid.UUID, str] = request.state.tenant_slugs
    slug = cache.get(tenant_id)
    if slug is None:
        tenant = await TenantRepository(session).by_id(tenant_id)
        slug = cache[tenant_id] = tenant.slug if tenant else "?"
    return slug


Handler = Callable[[Ctx], Awaitable[Response]]


@dataclass(frozen=True)
class EndpointDoc:
    """What the OpenAPI document says of an endpoint: declared once, next to the handler."""

    roles: frozenset[Role]
    idempotent: bool = False
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    etag: bool = False  # answers with an ETag; a PATCH needs If-Match
    # Other success statuses with the same body, e.g. (200, "Dry run: nothing stored").
    also: tuple[tuple[int, str], ...] = ()
    # A body that is not JSON (a file), by its media type; the handler reads it itself.
    raw_body: str | None = None


def endpoint(
    *roles: Role, idempotent: bool = False, body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
    status: int = 200, etag: bool = False, also: tuple[tuple[int, str], ...] = (),
    raw_body: str | None = None,
    read_first: Callable[[Request], Awaitable[None]] | None = None,
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Declare an endpoint: the roles allowed, whether it honours Idempotency-Key, and the
    schemas of its body, query and response (the OpenAPI document is made from them).

    `read_first` reads a raw body before the transaction opens (keeping what it needs in
    `request.scope`): a slow upload then holds no pooled connection, nor SQLite's only
    write lock."""
    allowed = frozenset(roles)
    doc = EndpointDoc(allowed, idempotent, body, query, response, status, etag, also,
                      raw_body)

    def decorate(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            info = context.current()
            key_text = _bearer(request)
            if key_text is None:
                raise Unauthenticated(headers=_WWW_AUTH)
            parsed = credentials.parse_api_key(key_text)
            if parsed is None:
                raise Unauthenticated("The API key is malformed.", headers=_WWW_AUTH)
            info.tenant_id = parsed[0]
            db: Database = request.state.db
            if read_first is not None:
                await read_first(request)
            key = idempotency.request_key(request) if idempotent else None
            if key is None:
                return await _run(request, db, key, parsed[0], key_text)
            body = await request.body()
            print_ = idempotency.fingerprint(request, body)
            try:
                return await _run(request, db, (key, print_), parsed[0], key_text)
            except IntegrityError:
                # A concurrent attempt with the same key committed first: replay its answer.
                async with db.transaction() as session:
                    principal = await authenticate_key(session, parsed[0], key_text)
                    assert principal is not None
                    replay = await idempotency.stored(session, parsed[0], principal.actor,
                                                      key, print_)
                if replay is None:
                    raise
                return replay

        async def _run(request: Request, db: Database, key: tuple[str, str] | None,
                       tenant_id: uuid.UUID, key_text: str) -> Response:
            info = context.current()
            async with db.transaction() as session:
                principal = await authenticate_key(session, tenant_id, key_text)
                if principal is None:
                    info.tenant_id = None
                    raise Unauthenticated("The API key is unknown or revoked.",
                                          headers=_WWW_AUTH)
                info.actor = principal.actor
                info.tenant_slug = await _tenant_slug(request, session, principal.tenant_id)
                if principal.role not in allowed:
                    # The key's last-used time is still worth keeping: commit, then refuse.
                    await session.commit()
                    raise Forbidden(f"The role {principal.role.value!r} may not do this.")
                if key is not None:
                    replay = await idempotency.stored(session, tenant_id, principal.actor, *key)
                    if replay is not None:
                        return replay
                ctx = Ctx(request, session, principal)
                # The query checked before the endpoint does anything (reads are audited).
                ctx.query(query or NoQuery)
                response = await handler(ctx)
                if key is not None and response.status_code < 400:
                    await idempotency.store(session, tenant_id, principal.actor, *key, response)
                return response

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        run.roles = allowed  # type: ignore[attr-defined]
        run.doc = doc  # type: ignore[attr-defined]
        return run

    return decorate

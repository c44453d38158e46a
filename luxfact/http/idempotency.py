"""`Idempotency-Key` on creating POSTs: a retried request gets the first response, once.

The stored response is written in the same transaction as what the request created, so a
key exists exactly when its effect does. Two concurrent first attempts race on the primary
key; the loser's transaction rolls back and it answers with the winner's stored response.
"""

import hashlib
import uuid

from sqlalchemy import insert, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from luxfact.http.models import IdempotencyRecord
from luxfact.kit.errors import ValidationFailed
from luxfact.kit.time import utcnow

T = IdempotencyRecord.__table__  # type: ignore[attr-defined]
HEADER = "idempotency-key"
REPLAYED = ("etag", "location")


def request_key(request: Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > 200 or not key.isprintable():
        raise ValidationFailed(errors=[{"field": "header.Idempotency-Key",
                                        "reason": "1 to 200 printable characters"}])
    return key


def fingerprint(request: Request, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + request.url.path.encode() + b"\n")
    digest.update(body)
    return digest.hexdigest()


async def stored(session: AsyncSession, tenant_id: uuid.UUID, actor: str, key: str,
                 print_: str) -> Response | None:
    row = (await session.execute(select(T.c.fingerprint, T.c.status, T.c.body, T.c.headers).where(
        T.c.tenant_id == tenant_id, T.c.actor == actor, T.c.key == key))).first()
    if row is None:
        return None
    if row.fingerprint != print_:
        raise ValidationFailed(
            "This Idempotency-Key was used with another request body or path.",
            errors=[{"field": "header.Idempotency-Key",
                     "reason": "already used for a different request"}])
    return Response(row.body, status_code=row.status, media_type="application/json",
                    headers={**row.headers, "Idempotent-Replayed": "true"})


async def store(session: AsyncSession, tenant_id: uuid.UUID, actor: str, key: str,
                print_: str, response: Response) -> None:
    await session.execute(insert(T).values(
        tenant_id=tenant_id, actor=actor, key=key, fingerprint=print_,
        status=response.status_code, body=bytes(response.body).decode(),
        headers={k: v for k, v in response.headers.items() if k in REPLAYED},
        created_at=utcnow()))
